#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_xml::{Element, Limits, StreamEvent, StreamParser};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    // The first byte picks where to split, so chunk boundaries get explored.
    let at = usize::from(split).min(rest.len());
    let (a, b) = rest.split_at(at);

    let mut parser = StreamParser::new(Limits::default());
    let mut events = Vec::new();
    if parser.feed(a, &mut events).is_ok() {
        let _ = parser.feed(b, &mut events);
    }

    let mut default_ns = String::new();
    for event in &events {
        match event {
            StreamEvent::Open(header) => {
                default_ns = header.default_ns.clone().unwrap_or_default();
            }
            StreamEvent::Element(element) => {
                let xml = element.to_xml(&default_ns);
                let reparsed = Element::from_xml(&xml, &default_ns)
                    .unwrap_or_else(|e| panic!("serialized element does not parse: {e}: {xml}"));
                assert_eq!(&reparsed, element, "round trip changed {xml}");
            }
            StreamEvent::Close => {}
        }
    }
});

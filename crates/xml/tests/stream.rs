use starling_xml::{Element, Limits, StreamEvent, StreamHeader, StreamParser, XmlError, STREAM_NS};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='localhost' xml:lang='en'>";

fn feed_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    limits: Limits,
) -> Result<Vec<StreamEvent>, XmlError> {
    let mut parser = StreamParser::new(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut out)?;
    }
    Ok(out)
}

fn parse_whole(doc: &[u8], limits: Limits) -> Result<Vec<StreamEvent>, XmlError> {
    feed_chunks([doc], limits)
}

fn parse_bytewise(doc: &[u8], limits: Limits) -> Result<Vec<StreamEvent>, XmlError> {
    feed_chunks(doc.chunks(1), limits)
}

/// Splits `doc` at pseudo-random points derived from `seed`.
fn parse_random_splits(
    doc: &[u8],
    seed: u64,
    limits: Limits,
) -> Result<Vec<StreamEvent>, XmlError> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut pieces = Vec::new();
    let mut rest = doc;
    while !rest.is_empty() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = ((state >> 33) as usize % 17 + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        pieces.push(a);
        rest = b;
    }
    feed_chunks(pieces, limits)
}

/// Events equal, or errors of the same variant: the message may differ
/// because which check trips first depends on where the input was split.
fn assert_same(
    a: &Result<Vec<StreamEvent>, XmlError>,
    b: &Result<Vec<StreamEvent>, XmlError>,
    how: &str,
) {
    match (a, b) {
        (Err(x), Err(y)) => assert_eq!(
            std::mem::discriminant(x),
            std::mem::discriminant(y),
            "{how}: {x:?} vs {y:?}"
        ),
        _ => assert!(a == b, "{how} differs: {a:?} vs {b:?}"),
    }
}

/// Parses whole, byte by byte and in random splits, asserting all agree.
fn parse_every_way(doc: &[u8], limits: Limits) -> Result<Vec<StreamEvent>, XmlError> {
    let whole = parse_whole(doc, limits);
    assert_same(&whole, &parse_bytewise(doc, limits), "byte-by-byte");
    for seed in 0..8 {
        let split = parse_random_splits(doc, seed, limits);
        assert_same(&whole, &split, &format!("split with seed {seed}"));
    }
    whole
}

fn stream_with(body: &str) -> String {
    format!("{HEADER}{body}")
}

fn error_of(doc: &str) -> XmlError {
    parse_every_way(doc.as_bytes(), Limits::default()).expect_err("document must be rejected")
}

fn elements(events: &[StreamEvent]) -> Vec<&Element> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Element(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn c2s_header() -> StreamHeader {
    StreamHeader {
        name: "stream".into(),
        ns: STREAM_NS.into(),
        default_ns: Some("jabber:client".into()),
        attrs: vec![
            ("to".into(), "localhost".into()),
            ("version".into(), "1.0".into()),
            ("xml:lang".into(), "en".into()),
        ],
    }
}

#[test]
fn c2s_stream_yields_header_stanzas_and_close_at_any_split() {
    let doc = stream_with(
        "\n<message to='juliet@localhost' type='chat' id='m1'>\
         <body>Hello &amp; &lt;welcome&gt; &#x263A;</body>\
         <active xmlns='http://jabber.org/protocol/chatstates'/></message> \n \
         <iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>\
         <presence xml:lang='fr'/>\
         </stream:stream>",
    );
    let events = parse_every_way(doc.as_bytes(), Limits::default()).unwrap();
    let message = Element::new("message", "jabber:client")
        .with_attr("id", "m1")
        .with_attr("to", "juliet@localhost")
        .with_attr("type", "chat")
        .with_child(Element::new("body", "jabber:client").with_text("Hello & <welcome> \u{263A}"))
        .with_child(Element::new(
            "active",
            "http://jabber.org/protocol/chatstates",
        ));
    let iq = Element::new("iq", "jabber:client")
        .with_attr("id", "r1")
        .with_attr("type", "get")
        .with_child(Element::new("query", "jabber:iq:roster"));
    let presence = Element::new("presence", "jabber:client").with_attr("xml:lang", "fr");
    assert_eq!(
        events,
        vec![
            StreamEvent::Open(c2s_header()),
            StreamEvent::Element(message),
            StreamEvent::Element(iq),
            StreamEvent::Element(presence),
            StreamEvent::Close,
        ]
    );
}

#[test]
fn open_is_emitted_as_soon_as_header_tag_completes() {
    let mut parser = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    parser.feed(HEADER.as_bytes(), &mut out).unwrap();
    assert_eq!(out, vec![StreamEvent::Open(c2s_header())]);
    let opened = &out[0];
    if let StreamEvent::Open(h) = opened {
        assert_eq!(h.attr("to"), Some("localhost"));
        assert_eq!(h.attr("from"), None);
    }
}

#[test]
fn stanza_is_emitted_when_complete_not_before() {
    let mut parser = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    parser.feed(HEADER.as_bytes(), &mut out).unwrap();
    out.clear();
    parser
        .feed(b"<presence><show>away</show>", &mut out)
        .unwrap();
    assert!(out.is_empty());
    parser.feed(b"</presence>", &mut out).unwrap();
    assert_eq!(elements(&out).len(), 1);
}

#[test]
fn header_without_default_namespace_has_none() {
    let doc = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='x'>";
    let events = parse_every_way(doc.as_bytes(), Limits::default()).unwrap();
    match &events[..] {
        [StreamEvent::Open(h)] => {
            assert_eq!(h.default_ns, None);
            assert_eq!(h.ns, STREAM_NS);
            assert_eq!(h.name, "stream");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn header_in_wrong_namespace_is_reported_as_is() {
    let doc = "<stream xmlns='jabber:client'>";
    let events = parse_every_way(doc.as_bytes(), Limits::default()).unwrap();
    match &events[..] {
        [StreamEvent::Open(h)] => {
            assert_eq!(
                (h.name.as_str(), h.ns.as_str()),
                ("stream", "jabber:client")
            );
            assert_eq!(h.default_ns.as_deref(), Some("jabber:client"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn reset_accepts_a_new_document_with_xml_declaration() {
    let mut parser = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    parser
        .feed(
            stream_with("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").as_bytes(),
            &mut out,
        )
        .unwrap();
    assert_eq!(out.len(), 2);
    parser.reset();
    out.clear();
    parser
        .feed(stream_with("<iq type='get' id='1'/>").as_bytes(), &mut out)
        .unwrap();
    assert_eq!(out[0], StreamEvent::Open(c2s_header()));
    assert_eq!(
        out[1],
        StreamEvent::Element(
            Element::new("iq", "jabber:client")
                .with_attr("id", "1")
                .with_attr("type", "get")
        )
    );
}

#[test]
fn reset_clears_a_dead_parser() {
    let mut parser = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    assert!(parser.feed(b"<a></b>", &mut out).is_err());
    parser.reset();
    out.clear();
    parser.feed(HEADER.as_bytes(), &mut out).unwrap();
    assert_eq!(out, vec![StreamEvent::Open(c2s_header())]);
}

#[test]
fn parser_stays_dead_after_error() {
    let mut parser = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    parser.feed(HEADER.as_bytes(), &mut out).unwrap();
    let first = parser.feed(b"<a></b>", &mut out).unwrap_err();
    assert!(matches!(first, XmlError::NotWellFormed(_)));
    assert_eq!(parser.feed(b"<presence/>", &mut out), Err(first));
}

#[test]
fn character_references_and_predefined_entities_are_accepted() {
    let doc = stream_with("<m a='&quot;&apos;&#65;'>&amp;&lt;&gt;&quot;&apos;&#66;&#x43;</m>");
    let events = parse_every_way(doc.as_bytes(), Limits::default()).unwrap();
    let m = elements(&events)[0];
    assert_eq!(m.attr("a"), Some("\"'A"));
    assert_eq!(m.text(), "&<>\"'BC");
}

#[test]
fn cdata_section_becomes_text() {
    let doc = stream_with("<m>a<![CDATA[<b>&]]>c</m>");
    let events = parse_every_way(doc.as_bytes(), Limits::default()).unwrap();
    assert_eq!(
        elements(&events)[0],
        &Element::new("m", "jabber:client").with_text("a<b>&c")
    );
}

#[test]
fn namespaced_attributes_use_braced_keys() {
    let doc = stream_with("<m xmlns:x='urn:x' x:a='1' b='2'/>");
    let events = parse_every_way(doc.as_bytes(), Limits::default()).unwrap();
    let m = elements(&events)[0];
    assert_eq!(m.attr("{urn:x}a"), Some("1"));
    assert_eq!(m.attr("b"), Some("2"));
    assert_eq!(m.attrs.len(), 2);
}

#[test]
fn prefixed_elements_resolve_their_namespace() {
    let doc = stream_with("<p:m xmlns:p='urn:p'><p:c/><d/></p:m>");
    let events = parse_every_way(doc.as_bytes(), Limits::default()).unwrap();
    let m = elements(&events)[0];
    assert!(m.is("m", "urn:p"));
    assert!(m.child("c", "urn:p").is_some());
    assert!(m.child("d", "jabber:client").is_some());
}

#[test]
fn stream_level_elements_keep_stream_namespace() {
    let doc = stream_with(
        "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    );
    let events = parse_every_way(doc.as_bytes(), Limits::default()).unwrap();
    let e = elements(&events)[0];
    assert!(e.is("error", STREAM_NS));
    assert!(e
        .child("host-unknown", "urn:ietf:params:xml:ns:xmpp-streams")
        .is_some());
}

// ---- RFC 6120 §11.1 restricted XML ----

fn assert_restricted(doc: &str) {
    match error_of(doc) {
        XmlError::RestrictedXml(_) => {}
        other => panic!("{doc:?}: expected RestrictedXml, got {other:?}"),
    }
}

#[test]
fn doctype_before_root_is_restricted() {
    assert_restricted("<?xml version='1.0'?><!DOCTYPE stream:stream><stream:stream/>");
}

#[test]
fn doctype_without_xml_declaration_is_restricted() {
    assert_restricted("<!DOCTYPE stream:stream [<!ENTITY x 'y'>]><stream:stream/>");
}

#[test]
fn markup_declaration_inside_stream_is_restricted() {
    assert_restricted(&stream_with("<!ENTITY x 'y'>"));
    assert_restricted(&stream_with("<message><!DOCTYPE x></message>"));
}

#[test]
fn processing_instruction_before_root_is_restricted() {
    assert_restricted("<?xml version='1.0'?><?xml-stylesheet href='a'?><stream:stream/>");
    assert_restricted("<?foo bar?><stream:stream/>");
}

#[test]
fn processing_instruction_inside_stream_is_restricted() {
    assert_restricted(&stream_with("<?foo bar?>"));
    assert_restricted(&stream_with("<message><?foo?></message>"));
}

#[test]
fn second_xml_declaration_inside_stream_is_restricted() {
    assert_restricted(&stream_with("<?xml version='1.0'?>"));
}

#[test]
fn comment_before_root_is_restricted() {
    assert_restricted("<?xml version='1.0'?><!-- hi --><stream:stream/>");
}

#[test]
fn comment_between_stanzas_is_restricted() {
    assert_restricted(&stream_with("<!-- hi -->"));
}

#[test]
fn comment_inside_stanza_is_restricted() {
    assert_restricted(&stream_with("<message><!-- hi --></message>"));
}

#[test]
fn undefined_entity_in_text_is_restricted() {
    assert_restricted(&stream_with("<message><body>&foo;</body></message>"));
}

#[test]
fn undefined_entity_in_attribute_is_restricted() {
    assert_restricted(&stream_with("<message to='&nbsp;'/>"));
}

#[test]
fn undefined_entity_in_header_is_restricted() {
    assert_restricted("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='&foo;'>");
}

// ---- not well-formed ----

fn assert_not_well_formed(doc: &[u8]) {
    let err = parse_every_way(doc, Limits::default()).expect_err("document must be rejected");
    match err {
        XmlError::NotWellFormed(_) => {}
        other => panic!(
            "{:?}: expected NotWellFormed, got {other:?}",
            String::from_utf8_lossy(doc)
        ),
    }
}

fn stream_bytes(body: &[u8]) -> Vec<u8> {
    let mut doc = HEADER.as_bytes().to_vec();
    doc.extend_from_slice(body);
    doc
}

#[test]
fn invalid_utf8_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"<message><body>\xff</body></message>"));
    assert_not_well_formed(&stream_bytes(b"<message><body>\xc3\x28</body></message>"));
}

#[test]
fn truncated_utf8_sequence_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"<message><body>\xe2\x98</body></message>"));
}

#[test]
fn mismatched_end_tag_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"<message><body></message></body>"));
}

#[test]
fn mismatched_stream_end_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"</stream:streamx>"));
}

#[test]
fn less_than_in_attribute_value_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"<message to='a<b'/>"));
}

#[test]
fn control_character_in_text_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"<message><body>a\x01b</body></message>"));
}

#[test]
fn control_character_in_attribute_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"<message to='a\x00b'/>"));
}

#[test]
fn character_reference_to_invalid_char_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"<message><body>&#1;</body></message>"));
}

#[test]
fn duplicate_attribute_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"<message to='a' to='b'/>"));
}

#[test]
fn duplicate_attribute_after_namespace_resolution_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(
        b"<message xmlns:a='urn:x' xmlns:b='urn:x' a:t='1' b:t='2'/>",
    ));
}

#[test]
fn junk_before_root_is_not_well_formed() {
    assert_not_well_formed(b"hello<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>");
}

#[test]
fn whitespace_before_xml_declaration_is_not_well_formed() {
    assert_not_well_formed(b" <?xml version='1.0'?><stream:stream/>");
}

#[test]
fn undeclared_prefix_is_not_well_formed() {
    assert_not_well_formed(b"<stream:stream>");
    assert_not_well_formed(&stream_bytes(b"<foo:message/>"));
    assert_not_well_formed(&stream_bytes(b"<message foo:to='x'/>"));
}

#[test]
fn text_between_stanzas_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"<presence/> hello <presence/>"));
}

#[test]
fn junk_after_stream_close_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"</stream:stream><presence/>"));
}

#[test]
fn unsupported_encoding_in_declaration_is_not_well_formed() {
    assert_not_well_formed(b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>");
}

#[test]
fn unsupported_xml_version_is_not_well_formed() {
    assert_not_well_formed(b"<?xml version='1.1'?><stream:stream/>");
}

#[test]
fn malformed_cdata_start_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"<message><![CDAT[x]]></message>"));
}

#[test]
fn unquoted_attribute_is_not_well_formed() {
    assert_not_well_formed(&stream_bytes(b"<message to=a/>"));
}

#[test]
fn whitespace_keepalives_are_ignored() {
    let doc = stream_with(" \n\t \r\n<presence/>   \n</stream:stream>");
    let events = parse_every_way(doc.as_bytes(), Limits::default()).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2], StreamEvent::Close);
}

// ---- limits ----

fn small(max_stanza_bytes: usize) -> Limits {
    Limits {
        max_stanza_bytes,
        ..Limits::default()
    }
}

fn assert_too_large(result: Result<Vec<StreamEvent>, XmlError>) {
    match result {
        Err(XmlError::TooLarge(_)) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn stanza_of_exactly_the_limit_is_accepted_and_one_more_byte_is_not() {
    let stanza = "<message to='a'><body>hello &amp; bye</body><x xmlns='urn:x'/></message>";
    let doc = stream_with(&format!("  \n{stanza}\n  {stanza}"));
    let events = parse_every_way(doc.as_bytes(), small(stanza.len())).unwrap();
    assert_eq!(elements(&events).len(), 2);
    assert_too_large(parse_every_way(doc.as_bytes(), small(stanza.len() - 1)));
}

#[test]
fn self_closing_stanza_of_exactly_the_limit_is_accepted() {
    let stanza = "<presence type='unavailable'/>";
    let doc = stream_with(stanza);
    assert!(parse_every_way(doc.as_bytes(), small(stanza.len())).is_ok());
    assert_too_large(parse_every_way(doc.as_bytes(), small(stanza.len() - 1)));
}

#[test]
fn endless_stanza_fails_once_past_the_limit_without_completing() {
    let limits = Limits::default();
    let mut parser = StreamParser::new(limits);
    let mut out = Vec::new();
    parser
        .feed(stream_with("<message><body>").as_bytes(), &mut out)
        .unwrap();
    let chunk = [b'a'; 4096];
    let mut fed = 0;
    let err = loop {
        match parser.feed(&chunk, &mut out) {
            Ok(()) => fed += chunk.len(),
            Err(e) => break e,
        }
        assert!(fed < 10 * 1024 * 1024, "10 MB accepted without error");
    };
    assert!(matches!(err, XmlError::TooLarge(_)));
    assert!(
        fed <= limits.max_stanza_bytes,
        "failed only after {fed} bytes"
    );
    assert!(fed + chunk.len() > limits.max_stanza_bytes - 16);
}

#[test]
fn endless_attribute_value_fails_as_too_large() {
    let mut doc = stream_with("<message to='").into_bytes();
    doc.extend(std::iter::repeat_n(b'a', 2000));
    assert_too_large(parse_every_way(&doc, small(1000)));
}

#[test]
fn endless_start_tag_with_many_attributes_fails_as_too_large() {
    let mut doc = stream_with("<message").into_bytes();
    for i in 0..200 {
        doc.extend_from_slice(format!(" a{i}='x'").as_bytes());
    }
    assert_too_large(parse_every_way(&doc, small(1000)));
}

#[test]
fn the_longest_possible_jid_fits_in_an_attribute() {
    // RFC 7622 §3.1: localpart, domainpart and resourcepart of 1023 bytes each.
    let part = "a".repeat(1023);
    let jid = format!("{part}@{part}/{part}");
    let doc = stream_with(&format!("<message to='{jid}'/>"));
    let events = parse_every_way(doc.as_bytes(), Limits::default()).unwrap();
    assert_eq!(elements(&events)[0].attr("to"), Some(jid.as_str()));
}

#[test]
fn attribute_value_far_longer_than_any_jid_fails_as_too_large_below_the_stanza_limit() {
    let doc = stream_with(&format!("<message id='{}'/>", "a".repeat(9000)));
    assert_too_large(parse_every_way(doc.as_bytes(), Limits::default()));
}

#[test]
fn text_longer_than_a_token_arrives_whole() {
    let body = "abc ".repeat(25_000);
    let doc = stream_with(&format!("<message><body>{body}</body></message>"));
    let events = parse_whole(doc.as_bytes(), Limits::default()).unwrap();
    let message = elements(&events)[0];
    assert_eq!(message.elements().next().unwrap().text(), body);
}

#[test]
fn endless_element_name_fails_as_too_large() {
    let mut doc = stream_with("<").into_bytes();
    doc.extend(std::iter::repeat_n(b'm', 3000));
    assert_too_large(parse_every_way(&doc, small(1000)));
}

#[test]
fn huge_text_in_one_chunk_fails_as_too_large() {
    let mut doc = stream_with("<message><body>").into_bytes();
    doc.extend(std::iter::repeat_n(b'a', 3 * 1024 * 1024));
    assert_too_large(parse_whole(&doc, Limits::default()));
}

#[test]
fn oversized_stream_header_fails_as_too_large() {
    let mut doc = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='".to_vec();
    doc.extend(std::iter::repeat_n(b'a', 9000));
    doc.extend_from_slice(b"'>");
    assert_too_large(parse_every_way(&doc, Limits::default()));
}

fn nested(depth: usize) -> String {
    let mut s = String::new();
    for _ in 0..depth {
        s.push_str("<a>");
    }
    for _ in 0..depth {
        s.push_str("</a>");
    }
    s
}

#[test]
fn nesting_at_max_depth_is_accepted() {
    let doc = stream_with(&nested(64));
    let events = parse_every_way(doc.as_bytes(), Limits::default()).unwrap();
    assert_eq!(elements(&events).len(), 1);
}

#[test]
fn nesting_beyond_max_depth_is_limit_exceeded() {
    let doc = stream_with(&nested(65));
    let err = parse_every_way(doc.as_bytes(), Limits::default()).unwrap_err();
    assert!(matches!(err, XmlError::LimitExceeded(_)), "{err:?}");
}

fn with_attrs(n: usize) -> String {
    let mut s = String::from("<message");
    for i in 0..n {
        s.push_str(&format!(" a{i}='x'"));
    }
    s.push_str("/>");
    s
}

#[test]
fn max_attributes_is_accepted() {
    let doc = stream_with(&with_attrs(64));
    let events = parse_every_way(doc.as_bytes(), Limits::default()).unwrap();
    assert_eq!(elements(&events)[0].attrs.len(), 64);
}

#[test]
fn too_many_attributes_is_limit_exceeded() {
    let doc = stream_with(&with_attrs(65));
    let err = parse_every_way(doc.as_bytes(), Limits::default()).unwrap_err();
    assert!(matches!(err, XmlError::LimitExceeded(_)), "{err:?}");
}

#[test]
fn too_many_attributes_on_header_is_limit_exceeded() {
    let mut doc = String::from("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'");
    for i in 0..5 {
        doc.push_str(&format!(" a{i}='x'"));
    }
    doc.push('>');
    let limits = Limits {
        max_attributes: 4,
        ..Limits::default()
    };
    let err = parse_every_way(doc.as_bytes(), limits).unwrap_err();
    assert!(matches!(err, XmlError::LimitExceeded(_)), "{err:?}");
}

/// Garbage with no `<` after it must fail at once, not when a `<` finally arrives.
#[test]
fn text_before_root_fails_without_waiting_for_a_tag() {
    for input in [&b"HELLO\r\n\r\n"[..], b"GET / HTTP/1.1\r\n", b"  x"] {
        let mut parser = StreamParser::new(Limits::default());
        let mut out = Vec::new();
        assert!(
            matches!(
                parser.feed(input, &mut out),
                Err(XmlError::NotWellFormed(_))
            ),
            "{input:?}"
        );
    }
}

#[test]
fn text_between_stanzas_fails_without_waiting_for_a_tag() {
    let mut parser = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    parser
        .feed(&stream_bytes(b"<presence/>\n "), &mut out)
        .expect("whitespace is fine");
    assert!(matches!(
        parser.feed(b"junk", &mut out),
        Err(XmlError::NotWellFormed(_))
    ));
}

#[test]
fn split_start_tag_between_stanzas_is_not_mistaken_for_text() {
    let mut parser = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    parser
        .feed(&stream_bytes(b"<presence/> <mess"), &mut out)
        .expect("partial tag");
    parser
        .feed(b"age to='a@b'/>", &mut out)
        .expect("tag completes");
    assert!(matches!(out.last(), Some(StreamEvent::Element(e)) if e.name == "message"));
}

/// Feeds `doc` in `chunks`-sized pieces, releasing the parser's buffers after
/// every piece (it refuses where the stream is inside an element).
fn parse_releasing_after_every_chunk(doc: &[u8], chunk: usize) -> (Vec<StreamEvent>, usize) {
    let mut parser = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    let mut released = 0;
    for piece in doc.chunks(chunk) {
        parser.feed(piece, &mut out).unwrap();
        released += usize::from(parser.release_buffers());
    }
    (out, released)
}

#[test]
fn released_buffers_are_rebuilt_and_parsing_goes_on_unchanged() {
    let doc = stream_with(
        "<message to='a@b' xml:lang='en'><body>one</body></message>  \n \
         <x:iq xmlns:x='jabber:client' type='get' id='1'><q xmlns='urn:q'/></x:iq>\n\
         <presence/><message><body>two</body></message></stream:stream>",
    );
    let expected = parse_whole(doc.as_bytes(), Limits::default()).unwrap();
    for chunk in [1, 2, 7, 40, doc.len()] {
        let (events, released) = parse_releasing_after_every_chunk(doc.as_bytes(), chunk);
        assert_eq!(
            format!("{events:?}"),
            format!("{expected:?}"),
            "chunks of {chunk}"
        );
        assert!(released > 0, "chunks of {chunk}: never released");
    }
    let presence = elements(&expected)[2];
    assert_eq!(presence.ns, "jabber:client");
}

#[test]
fn buffers_are_kept_inside_an_element_and_before_the_header() {
    let mut parser = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    parser
        .feed(b"<?xml version='1.0'?><stream:str", &mut out)
        .unwrap();
    assert!(!parser.release_buffers());
    parser
        .feed(
            b"eam xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><mess",
            &mut out,
        )
        .unwrap();
    assert!(!parser.release_buffers());
    parser.feed(b"age><body>hi</bo", &mut out).unwrap();
    assert!(!parser.release_buffers());
    parser.feed(b"dy></message>", &mut out).unwrap();
    assert!(parser.release_buffers());
    assert!(!parser.release_buffers(), "nothing left to release");
    parser.feed(b"<presence/>", &mut out).unwrap();
    let stanzas = elements(&out);
    assert_eq!(stanzas.len(), 2);
    assert_eq!(stanzas[0].elements().next().unwrap().text(), "hi");
    assert_eq!(stanzas[1].name, "presence");
}

#[test]
fn errors_after_a_release_are_still_reported() {
    let mut parser = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    parser
        .feed(stream_with("<presence/>").as_bytes(), &mut out)
        .unwrap();
    assert!(parser.release_buffers());
    assert!(matches!(
        parser.feed(b"<message></iq>", &mut out),
        Err(XmlError::NotWellFormed(_))
    ));
    let mut parser = StreamParser::new(Limits::default());
    parser
        .feed(stream_with("<presence/>").as_bytes(), &mut out)
        .unwrap();
    assert!(parser.release_buffers());
    assert!(parser.feed(b"garbage", &mut out).is_err());
}

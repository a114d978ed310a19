use starling_xml::{Element, Node, STREAM_NS};

fn roundtrip(e: &Element, parent_ns: &str) {
    let xml = e.to_xml(parent_ns);
    let back = Element::from_xml(&xml, parent_ns).unwrap_or_else(|err| panic!("{xml}: {err}"));
    assert_eq!(&back, e, "round trip of {xml}");
}

fn sample_message() -> Element {
    Element::new("message", "jabber:client")
        .with_attr("from", "romeo@example.net/orchard")
        .with_attr("to", "juliet@example.com")
        .with_attr("type", "chat")
        .with_attr("xml:lang", "en")
        .with_child(Element::new("body", "jabber:client").with_text("Wherefore art thou?"))
        .with_child(
            Element::new("x", "urn:example")
                .with_attr("{urn:attr}flag", "1")
                .with_child(Element::new("inner", "urn:example").with_text("i")),
        )
}

#[test]
fn serialized_message_parses_back_equal() {
    roundtrip(&sample_message(), "jabber:client");
}

#[test]
fn serialized_message_parses_back_equal_under_other_default_namespace() {
    roundtrip(&sample_message(), "jabber:server");
    roundtrip(&sample_message(), "");
}

#[test]
fn special_characters_round_trip() {
    let e = Element::new("m", "jabber:client")
        .with_attr("a", "<&>\"' \t\n\r end")
        .with_text("<&> \"' ]]> \r\n\t \u{1F600}");
    roundtrip(&e, "jabber:client");
}

#[test]
fn text_is_escaped() {
    let e = Element::new("body", "jabber:client").with_text("a<b & c>d \"q\" 'a'");
    assert_eq!(
        e.to_xml("jabber:client"),
        "<body>a&lt;b &amp; c&gt;d \"q\" 'a'</body>"
    );
}

#[test]
fn attribute_values_are_escaped() {
    let e = Element::new("m", "jabber:client").with_attr("a", "<&>\"'");
    assert_eq!(
        e.to_xml("jabber:client"),
        "<m a='&lt;&amp;&gt;&quot;&apos;'/>"
    );
}

#[test]
fn empty_element_is_self_closing() {
    assert_eq!(
        Element::new("presence", "jabber:client").to_xml("jabber:client"),
        "<presence/>"
    );
}

#[test]
fn xmlns_is_emitted_only_when_namespace_changes() {
    let e = Element::new("iq", "jabber:client").with_child(
        Element::new("query", "jabber:iq:roster")
            .with_child(Element::new("item", "jabber:iq:roster").with_attr("jid", "a@b")),
    );
    assert_eq!(
        e.to_xml("jabber:client"),
        "<iq><query xmlns='jabber:iq:roster'><item jid='a@b'/></query></iq>"
    );
    assert_eq!(
        e.to_xml("jabber:server"),
        "<iq xmlns='jabber:client'><query xmlns='jabber:iq:roster'><item jid='a@b'/></query></iq>"
    );
}

#[test]
fn element_without_namespace_undeclares_default() {
    let e = Element::new("a", "jabber:client").with_child(Element::new("b", ""));
    assert_eq!(e.to_xml("jabber:client"), "<a><b xmlns=''/></a>");
    roundtrip(&e, "jabber:client");
}

#[test]
fn stream_namespace_uses_stream_prefix_without_declaration() {
    let features = Element::new("features", STREAM_NS)
        .with_child(
            Element::new("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
                .with_child(Element::new("required", "urn:ietf:params:xml:ns:xmpp-tls")),
        )
        .with_child(Element::new("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
    assert_eq!(
        features.to_xml("jabber:client"),
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
         <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
    );
    roundtrip(&features, "jabber:client");
}

#[test]
fn children_of_stream_element_in_content_namespace_need_no_xmlns() {
    let e = Element::new("error", STREAM_NS).with_child(Element::new("text", "jabber:client"));
    assert_eq!(
        e.to_xml("jabber:client"),
        "<stream:error><text/></stream:error>"
    );
}

#[test]
fn namespaced_attributes_get_generated_prefixes() {
    let e = Element::new("m", "jabber:client")
        .with_attr("{urn:a}x", "1")
        .with_attr("{urn:b}y", "2")
        .with_attr("{urn:a}z", "3");
    assert_eq!(
        e.to_xml("jabber:client"),
        "<m ns0:x='1' ns1:y='2' ns0:z='3' xmlns:ns0='urn:a' xmlns:ns1='urn:b'/>"
    );
    let back = Element::from_xml(&e.to_xml("jabber:client"), "jabber:client").unwrap();
    assert_eq!(back.attr("{urn:a}x"), Some("1"));
    assert_eq!(back.attr("{urn:b}y"), Some("2"));
    assert_eq!(back.attr("{urn:a}z"), Some("3"));
}

#[test]
fn xml_lang_uses_xml_prefix() {
    let e = Element::new("m", "jabber:client").with_attr("xml:lang", "de");
    assert_eq!(e.to_xml("jabber:client"), "<m xml:lang='de'/>");
    let braced = Element::new("m", "jabber:client")
        .with_attr("{http://www.w3.org/XML/1998/namespace}lang", "de");
    assert_eq!(braced.to_xml("jabber:client"), "<m xml:lang='de'/>");
}

#[test]
fn from_xml_rejects_more_than_one_element() {
    assert!(Element::from_xml("<a/><b/>", "jabber:client").is_err());
    assert!(Element::from_xml("", "jabber:client").is_err());
}

#[test]
fn attribute_setters_replace_and_remove() {
    let mut e = Element::new("m", "jabber:client")
        .with_attr("to", "a")
        .with_attr("to", "b");
    assert_eq!(e.attrs, vec![("to".to_string(), "b".to_string())]);
    e.set_attr("id", "1");
    e.set_attr("id", "2");
    assert_eq!(e.attr("id"), Some("2"));
    assert_eq!(e.remove_attr("to"), Some("b".to_string()));
    assert_eq!(e.remove_attr("to"), None);
    assert_eq!(e.attr("to"), None);
}

#[test]
fn child_lookup_and_text_accessors() {
    let mut e = Element::new("message", "jabber:client")
        .with_text("a")
        .with_child(Element::new("body", "jabber:client").with_text("hi"))
        .with_text("b")
        .with_child(Element::new("body", "urn:other"));
    assert_eq!(e.text(), "ab");
    assert_eq!(e.elements().count(), 2);
    assert_eq!(e.child("body", "jabber:client").unwrap().text(), "hi");
    assert!(e
        .child("body", "urn:other")
        .unwrap()
        .is("body", "urn:other"));
    assert!(e.child("subject", "jabber:client").is_none());
    e.child_mut("body", "jabber:client")
        .unwrap()
        .push_child(Element::new("b", "jabber:client"));
    assert_eq!(
        e.child("body", "jabber:client").unwrap().children[1],
        Node::Element(Element::new("b", "jabber:client"))
    );
}

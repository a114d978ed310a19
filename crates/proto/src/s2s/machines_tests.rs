//! The two machines talking to each other in memory: what a real federation does,
//! minus sockets and TLS (the harness reports TLS as established on both sides).

use std::sync::Arc;

use starling_xml::{Limits, StreamEvent, StreamParser};

use super::accept::{self, AcceptConfig, AuthMethod, DialbackOutcome, S2sAccept};
use super::connect::{self, ConnectConfig, Purpose, S2sConnect};
use super::dialback_key;

/// Two servers, `a.example` and `b.example`, and which certificates validate.
struct World {
    certified: Vec<&'static str>,
    allow_dialback: bool,
    tls_required: bool,
}

fn secret_of(domain: &str) -> Vec<u8> {
    format!("secret of {domain}").into_bytes()
}

fn accept_config(domain: &str, world: &World) -> Arc<AcceptConfig> {
    Arc::new(AcceptConfig {
        domains: vec![domain.to_string()],
        secret: secret_of(domain),
        tls_required: world.tls_required,
        allow_dialback: world.allow_dialback,
    })
}

fn connect_config(
    local: &str,
    remote: &str,
    purpose: Purpose,
    world: &World,
) -> Arc<ConnectConfig> {
    Arc::new(ConnectConfig {
        local: local.to_string(),
        remote: remote.to_string(),
        secret: secret_of(local),
        tls_required: world.tls_required,
        allow_dialback: world.allow_dialback,
        purpose,
    })
}

/// Everything but `Send` that each side asked for, and the bytes each wrote.
#[derive(Default)]
struct Transcript {
    connect: Vec<connect::Action>,
    accept: Vec<accept::Action>,
    to_accept: String,
    to_connect: String,
}

struct Link {
    connect: S2sConnect,
    accept: S2sAccept,
    connect_parser: StreamParser,
    accept_parser: StreamParser,
    connect_tls: bool,
    accept_tls: bool,
    pending_to_accept: String,
    pending_to_connect: String,
    /// What the receiving side writes is recorded but not fed to the initiating side.
    connect_deaf: bool,
}

impl Link {
    fn new(local: &str, remote: &str, purpose: Purpose, world: &World) -> Link {
        let mut link = Link {
            connect: S2sConnect::new(connect_config(local, remote, purpose, world), None),
            accept: S2sAccept::new(accept_config(remote, world), false),
            connect_parser: StreamParser::new(Limits::default()),
            accept_parser: StreamParser::new(Limits::default()),
            connect_tls: false,
            accept_tls: false,
            pending_to_accept: String::new(),
            pending_to_connect: String::new(),
            connect_deaf: false,
        };
        let mut actions = Vec::new();
        link.connect.start(&mut actions);
        let mut transcript = Transcript::default();
        link.on_connect_actions(actions, &mut transcript);
        link
    }

    /// Exchange bytes until neither side has anything more to say.
    fn run(&mut self, world: &World) -> Transcript {
        let mut transcript = Transcript::default();
        loop {
            if !self.pending_to_accept.is_empty() {
                let bytes = std::mem::take(&mut self.pending_to_accept);
                transcript.to_accept.push_str(&bytes);
                let mut events = Vec::new();
                let parsed = self.accept_parser.feed(bytes.as_bytes(), &mut events);
                let mut inputs: Vec<accept::Input> =
                    events.into_iter().map(accept::Input::Event).collect();
                if let Err(e) = parsed {
                    inputs.push(accept::Input::XmlError(e));
                }
                for input in inputs {
                    self.feed_accept(input, world, &mut transcript);
                }
            } else if !self.pending_to_connect.is_empty() {
                let bytes = std::mem::take(&mut self.pending_to_connect);
                transcript.to_connect.push_str(&bytes);
                if self.connect_deaf {
                    continue;
                }
                let mut events: Vec<StreamEvent> = Vec::new();
                let parsed = self.connect_parser.feed(bytes.as_bytes(), &mut events);
                let mut inputs: Vec<connect::Input> =
                    events.into_iter().map(connect::Input::Event).collect();
                if let Err(e) = parsed {
                    inputs.push(connect::Input::XmlError(e));
                }
                for input in inputs {
                    let mut actions = Vec::new();
                    self.connect.handle(input, &mut actions);
                    self.on_connect_actions(actions, &mut transcript);
                }
            } else if self.connect_tls && self.accept_tls {
                self.connect_tls = false;
                self.accept_tls = false;
                let remote_certified = world.certified.contains(&"b.example");
                self.feed_accept(accept::Input::TlsEstablished, world, &mut transcript);
                let mut actions = Vec::new();
                self.connect.handle(
                    connect::Input::TlsEstablished {
                        peer_certificate_valid: remote_certified,
                    },
                    &mut actions,
                );
                self.on_connect_actions(actions, &mut transcript);
            } else {
                return transcript;
            }
        }
    }

    fn on_connect_actions(&mut self, actions: Vec<connect::Action>, transcript: &mut Transcript) {
        for action in actions {
            match action {
                connect::Action::Send(xml) => self.pending_to_accept.push_str(&xml),
                connect::Action::StartTls => self.connect_tls = true,
                connect::Action::ResetParser => self.connect_parser.reset(),
                other => transcript.connect.push(other),
            }
        }
    }

    fn feed_accept(&mut self, input: accept::Input, world: &World, transcript: &mut Transcript) {
        let mut actions = Vec::new();
        self.accept.handle(input, &mut actions);
        for action in actions {
            match action {
                accept::Action::Send(xml) => self.pending_to_connect.push_str(&xml),
                accept::Action::StartTls => self.accept_tls = true,
                accept::Action::ResetParser => self.accept_parser.reset(),
                accept::Action::CheckCertificate { domain } => {
                    let valid = world.certified.iter().any(|d| *d == domain);
                    self.feed_accept(
                        accept::Input::CertificateChecked { domain, valid },
                        world,
                        transcript,
                    );
                }
                accept::Action::VerifyDialback {
                    originating,
                    receiving,
                    key,
                    stream_id,
                } => {
                    let outcome =
                        ask_authoritative(&receiving, &originating, stream_id, key, world);
                    transcript.accept.push(accept::Action::VerifyDialback {
                        originating: originating.clone(),
                        receiving: receiving.clone(),
                        key: String::new(),
                        stream_id: String::new(),
                    });
                    self.feed_accept(
                        accept::Input::DialbackVerified {
                            originating,
                            receiving,
                            outcome,
                        },
                        world,
                        transcript,
                    );
                }
                other => transcript.accept.push(other),
            }
        }
    }
}

/// The receiving server connects back to the authoritative server with `db:verify`.
fn ask_authoritative(
    receiving: &str,
    authoritative: &str,
    stream_id: String,
    key: String,
    world: &World,
) -> DialbackOutcome {
    let mut link = Link::new(
        receiving,
        authoritative,
        Purpose::Verify { stream_id, key },
        world,
    );
    let transcript = link.run(world);
    transcript
        .connect
        .iter()
        .find_map(|action| match action {
            connect::Action::Verified(outcome) => Some(*outcome),
            _ => None,
        })
        .expect("the verification connection answers")
}

fn dialback_world() -> World {
    World {
        certified: vec![],
        allow_dialback: true,
        tls_required: true,
    }
}

fn stanza_from_a(link: &mut Link, xml: &str, world: &World) -> Transcript {
    link.pending_to_accept.push_str(xml);
    link.run(world)
}

#[test]
fn dialback_authenticates_the_pair_through_the_authoritative_server() {
    let world = dialback_world();
    let mut link = Link::new("a.example", "b.example", Purpose::Send, &world);
    let transcript = link.run(&world);
    assert!(transcript.to_accept.contains("<starttls"));
    assert!(transcript
        .to_accept
        .contains("<db:result from='a.example' to='b.example'>"));
    assert_eq!(
        transcript.connect,
        vec![connect::Action::Ready(AuthMethod::Dialback)]
    );
    assert!(transcript.accept.contains(&accept::Action::Authenticated {
        remote: "a.example".into(),
        local: "b.example".into(),
        method: AuthMethod::Dialback,
    }));
    let routed = stanza_from_a(
        &mut link,
        "<message from='juliet@a.example/balcony' to='romeo@b.example'><body>hi</body></message>",
        &world,
    );
    match routed.accept.as_slice() {
        [accept::Action::Route(stanza)] => {
            assert_eq!(stanza.ns, crate::ns::CLIENT);
            assert_eq!(stanza.attr("to"), Some("romeo@b.example"));
        }
        other => panic!("expected one routed stanza, got {other:?}"),
    }
}

#[test]
fn valid_certificates_authenticate_by_sasl_external_without_dialback() {
    let world = World {
        certified: vec!["a.example", "b.example"],
        allow_dialback: false,
        tls_required: true,
    };
    let mut link = Link::new("a.example", "b.example", Purpose::Send, &world);
    let transcript = link.run(&world);
    assert!(transcript
        .to_connect
        .contains("<mechanism>EXTERNAL</mechanism>"));
    assert!(!transcript.to_accept.contains("db:result"));
    assert_eq!(
        transcript.connect,
        vec![connect::Action::Ready(AuthMethod::Certificate)]
    );
    assert_eq!(
        transcript.accept,
        vec![accept::Action::Authenticated {
            remote: "a.example".into(),
            local: "b.example".into(),
            method: AuthMethod::Certificate,
        }]
    );
}

#[test]
fn without_valid_certificates_and_without_dialback_nothing_is_authenticated() {
    let world = World {
        certified: vec!["b.example"],
        allow_dialback: false,
        tls_required: true,
    };
    let mut link = Link::new("a.example", "b.example", Purpose::Send, &world);
    let transcript = link.run(&world);
    assert!(matches!(
        transcript.connect.first(),
        Some(connect::Action::Failed(_))
    ));
    assert!(!transcript
        .accept
        .iter()
        .any(|a| matches!(a, accept::Action::Authenticated { .. })));
}

/// The receiving machine driven by hand-written peer output; TLS completes as soon as
/// the machine asks for it.
fn drive_accept(chunks: &[&str], world: &World) -> (String, Vec<accept::Action>) {
    let mut machine = S2sAccept::new(accept_config("b.example", world), false);
    let mut parser = StreamParser::new(Limits::default());
    let mut written = String::new();
    let mut actions_seen = Vec::new();
    for chunk in chunks {
        let mut events = Vec::new();
        let parsed = parser.feed(chunk.as_bytes(), &mut events);
        let mut inputs: Vec<accept::Input> = events.into_iter().map(accept::Input::Event).collect();
        if let Err(e) = parsed {
            inputs.push(accept::Input::XmlError(e));
        }
        while !inputs.is_empty() {
            let input = inputs.remove(0);
            let mut actions = Vec::new();
            machine.handle(input, &mut actions);
            for action in actions {
                match action {
                    accept::Action::Send(xml) => written.push_str(&xml),
                    accept::Action::ResetParser => parser.reset(),
                    accept::Action::StartTls => inputs.insert(0, accept::Input::TlsEstablished),
                    accept::Action::CheckCertificate { domain } => {
                        let valid = world.certified.iter().any(|d| *d == domain);
                        inputs.insert(0, accept::Input::CertificateChecked { domain, valid });
                    }
                    accept::Action::VerifyDialback {
                        originating,
                        receiving,
                        key,
                        stream_id,
                    } => {
                        let outcome =
                            ask_authoritative(&receiving, &originating, stream_id, key, world);
                        inputs.insert(
                            0,
                            accept::Input::DialbackVerified {
                                originating,
                                receiving,
                                outcome,
                            },
                        );
                    }
                    other => actions_seen.push(other),
                }
            }
        }
    }
    (written, actions_seen)
}

const HEADER_FROM_A: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
    from='a.example' to='b.example' version='1.0'>";
const STARTTLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";

#[test]
fn a_wrong_dialback_key_is_answered_invalid_and_the_stream_closed() {
    let world = dialback_world();
    let (written, actions) = drive_accept(
        &[
            HEADER_FROM_A,
            STARTTLS,
            HEADER_FROM_A,
            "<db:result from='a.example' to='b.example'>0123abcd</db:result>",
        ],
        &world,
    );
    assert!(written.contains("type='invalid'"), "{written}");
    assert!(written.contains("<not-authorized"), "{written}");
    assert_eq!(actions, vec![accept::Action::Close]);
}

#[test]
fn dialback_before_tls_is_refused_when_tls_is_required() {
    let world = dialback_world();
    let (written, actions) = drive_accept(
        &[
            HEADER_FROM_A,
            "<db:result from='a.example' to='b.example'>0123abcd</db:result>",
        ],
        &world,
    );
    assert!(written.contains("<policy-violation"), "{written}");
    assert_eq!(actions, vec![accept::Action::Close]);
}

#[test]
fn a_dialback_request_for_a_domain_not_hosted_gets_a_dialback_error_not_a_stream_error() {
    let world = dialback_world();
    let (written, actions) = drive_accept(
        &[
            HEADER_FROM_A,
            STARTTLS,
            HEADER_FROM_A,
            "<db:result from='a.example' to='c.example'>0123abcd</db:result>",
        ],
        &world,
    );
    assert!(written.contains("type='error'"), "{written}");
    assert!(written.contains("<item-not-found"), "{written}");
    assert!(actions.is_empty(), "{actions:?}");
}

#[test]
fn stanzas_before_authentication_get_not_authorized() {
    let world = dialback_world();
    let (written, actions) = drive_accept(
        &[
            HEADER_FROM_A,
            STARTTLS,
            HEADER_FROM_A,
            "<message from='juliet@a.example' to='romeo@b.example'/>",
        ],
        &world,
    );
    assert!(written.contains("<not-authorized"), "{written}");
    assert_eq!(actions, vec![accept::Action::Close]);
}

#[test]
fn stanzas_from_another_domain_than_the_authenticated_one_get_invalid_from() {
    let world = dialback_world();
    let mut link = Link::new("a.example", "b.example", Purpose::Send, &world);
    link.run(&world);
    let transcript = stanza_from_a(
        &mut link,
        "<message from='mallory@evil.example' to='romeo@b.example'/>",
        &world,
    );
    assert!(transcript.to_connect.contains("<invalid-from"));
    assert!(!transcript
        .accept
        .iter()
        .any(|a| matches!(a, accept::Action::Route(_))));
}

#[test]
fn stanzas_to_a_domain_outside_the_pair_get_improper_addressing() {
    let world = dialback_world();
    for to in ["romeo@c.example", ""] {
        let mut link = Link::new("a.example", "b.example", Purpose::Send, &world);
        link.run(&world);
        let transcript = stanza_from_a(
            &mut link,
            &format!("<message from='juliet@a.example' to='{to}'/>"),
            &world,
        );
        assert!(
            transcript.to_connect.contains("<improper-addressing"),
            "to={to}: {}",
            transcript.to_connect
        );
    }
}

#[test]
fn a_stream_to_a_domain_not_hosted_gets_host_unknown() {
    let world = dialback_world();
    let mut link = Link::new("a.example", "z.example", Purpose::Send, &world);
    link.accept = S2sAccept::new(accept_config("b.example", &world), false);
    let transcript = link.run(&world);
    assert!(transcript.to_connect.contains("<host-unknown"));
    assert!(matches!(
        transcript.connect.first(),
        Some(connect::Action::Failed(_))
    ));
}

#[test]
fn piggybacked_pairs_are_each_authorised_separately() {
    let world = dialback_world();
    let mut link = Link::new("a.example", "b.example", Purpose::Send, &world);
    link.run(&world);
    // Another domain of the same server asks over the same stream, with a key its own
    // authoritative server issued for this stream.
    let key = dialback_key(
        &secret_of("c.example"),
        "b.example",
        "c.example",
        link.accept.stream_id(),
    );
    // The answer goes to the other domain's logic, not to a.example's machine.
    link.connect_deaf = true;
    let transcript = stanza_from_a(
        &mut link,
        &format!("<db:result from='c.example' to='b.example'>{key}</db:result>"),
        &world,
    );
    assert!(transcript
        .to_connect
        .contains("<db:result from='b.example' to='c.example' type='valid'/>"));
    assert!(transcript.accept.contains(&accept::Action::Authenticated {
        remote: "c.example".into(),
        local: "b.example".into(),
        method: AuthMethod::Dialback,
    }));
    for from in ["juliet@a.example", "nurse@c.example"] {
        let routed = stanza_from_a(
            &mut link,
            &format!("<message from='{from}' to='romeo@b.example'/>"),
            &world,
        );
        assert!(
            matches!(routed.accept.as_slice(), [accept::Action::Route(_)]),
            "{from}: {:?}",
            routed.accept
        );
    }
    let other = stanza_from_a(
        &mut link,
        "<message from='mallory@d.example' to='romeo@b.example'/>",
        &world,
    );
    assert!(other.to_connect.contains("<invalid-from"));
}

#[test]
fn the_authoritative_server_confirms_only_keys_it_issued() {
    let world = dialback_world();
    let key = dialback_key(&secret_of("a.example"), "b.example", "a.example", "stream1");
    for (key, expected) in [
        (key.clone(), DialbackOutcome::Valid),
        (key.replace('a', "b"), DialbackOutcome::Invalid),
    ] {
        let outcome = ask_authoritative("b.example", "a.example", "stream1".into(), key, &world);
        assert_eq!(outcome, expected);
    }
    let wrong_stream = ask_authoritative("b.example", "a.example", "stream2".into(), key, &world);
    assert_eq!(wrong_stream, DialbackOutcome::Invalid);
}

#[test]
fn garbage_after_authentication_gets_a_stream_error_and_closes() {
    let world = dialback_world();
    let mut link = Link::new("a.example", "b.example", Purpose::Send, &world);
    link.run(&world);
    let transcript = stanza_from_a(&mut link, "<message><<<", &world);
    assert!(transcript.to_connect.contains("<not-well-formed"));
    assert!(transcript.accept.contains(&accept::Action::Close));
}

#[test]
fn a_flood_of_dialback_requests_gets_policy_violation_before_many_verifications() {
    let world = dialback_world();
    let mut machine = S2sAccept::new(accept_config("b.example", &world), true);
    let mut parser = StreamParser::new(Limits::default());
    let mut events = Vec::new();
    let mut requests = String::from(HEADER_FROM_A);
    for n in 0..20 {
        requests.push_str(&format!(
            "<db:result from='a.example' to='b.example'>{n:02}</db:result>"
        ));
    }
    parser
        .feed(requests.as_bytes(), &mut events)
        .expect("well-formed");
    let mut verifications = 0;
    let mut written = String::new();
    let mut inputs: std::collections::VecDeque<accept::Input> =
        events.into_iter().map(accept::Input::Event).collect();
    while let Some(input) = inputs.pop_front() {
        let mut actions = Vec::new();
        machine.handle(input, &mut actions);
        for action in actions {
            match action {
                accept::Action::Send(xml) => written.push_str(&xml),
                accept::Action::CheckCertificate { domain } => {
                    inputs.push_front(accept::Input::CertificateChecked {
                        domain,
                        valid: false,
                    })
                }
                accept::Action::VerifyDialback { .. } => verifications += 1,
                _ => {}
            }
        }
    }
    assert_eq!(verifications, accept::MAX_VERIFYING);
    assert!(written.contains("<policy-violation"), "{written}");
    assert!(machine.is_closed());
}

#[test]
fn without_required_tls_dialback_runs_on_a_plain_stream() {
    let world = World {
        certified: vec![],
        allow_dialback: true,
        tls_required: false,
    };
    let (written, actions) = drive_accept(
        &[
            HEADER_FROM_A,
            "<db:result from='a.example' to='b.example'>0123abcd</db:result>",
        ],
        &world,
    );
    assert!(
        written.contains("<starttls"),
        "STARTTLS is still offered: {written}"
    );
    assert!(!written.contains("<required/>"), "{written}");
    // The key went to the authoritative server, which denied it.
    assert!(written.contains("type='invalid'"), "{written}");
    assert_eq!(actions, vec![accept::Action::Close]);
}

//! Arbitrary bytes through the stream parser into the server-to-server machines,
//! receiving side or initiating side as the first byte chooses, with TLS, certificate
//! checks and dialback verifications answered whenever a machine asks: they must
//! never panic, and once closed they must stay silent.
#![no_main]

use std::collections::VecDeque;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use starling_proto::s2s::accept::{self, AcceptConfig, DialbackOutcome, S2sAccept};
use starling_proto::s2s::connect::{self, ConnectConfig, Purpose, S2sConnect};
use starling_xml::{Limits, StreamEvent, StreamParser, XmlError};

/// Parsed events (and a final parser error) of one chunk.
fn parse(parser: &mut StreamParser, chunk: &[u8]) -> (Vec<StreamEvent>, Option<XmlError>) {
    let mut events = Vec::new();
    let error = parser.feed(chunk, &mut events).err();
    (events, error)
}

fn fuzz_accept(data: &[u8], flags: u8) {
    let config = Arc::new(AcceptConfig {
        domains: vec!["b.example".into()],
        secret: vec![7; 32],
        tls_required: flags & 1 == 1,
        allow_dialback: flags & 2 == 2,
    });
    let mut machine = S2sAccept::new(config, false);
    let mut parser = StreamParser::new(Limits::default());
    for chunk in data.chunks(64) {
        let (events, error) = parse(&mut parser, chunk);
        let mut inputs: VecDeque<accept::Input> =
            events.into_iter().map(accept::Input::Event).collect();
        inputs.extend(error.map(accept::Input::XmlError));
        while let Some(input) = inputs.pop_front() {
            let was_closed = machine.is_closed();
            let mut actions = Vec::new();
            machine.handle(input, &mut actions);
            assert!(!was_closed || actions.is_empty(), "a closed stream stays silent");
            for action in actions {
                match action {
                    accept::Action::StartTls => inputs.push_back(accept::Input::TlsEstablished),
                    accept::Action::ResetParser => parser.reset(),
                    accept::Action::CheckCertificate { domain } => {
                        let valid = domain.len() % 2 == 0;
                        inputs.push_back(accept::Input::CertificateChecked { domain, valid })
                    }
                    accept::Action::VerifyDialback {
                        originating,
                        receiving,
                        key,
                        ..
                    } => inputs.push_back(accept::Input::DialbackVerified {
                        originating,
                        receiving,
                        outcome: match key.len() % 3 {
                            0 => DialbackOutcome::Valid,
                            1 => DialbackOutcome::Invalid,
                            _ => DialbackOutcome::Unreachable,
                        },
                    }),
                    _ => {}
                }
            }
        }
        if machine.is_closed() {
            return;
        }
    }
}

fn fuzz_connect(data: &[u8], flags: u8) {
    let purpose = if flags & 4 == 4 {
        Purpose::Verify {
            stream_id: "s1".into(),
            key: "00ff".into(),
        }
    } else {
        Purpose::Send
    };
    let config = Arc::new(ConnectConfig {
        local: "a.example".into(),
        remote: "b.example".into(),
        secret: vec![7; 32],
        tls_required: flags & 1 == 1,
        allow_dialback: flags & 2 == 2,
        purpose,
    });
    let mut machine = S2sConnect::new(config, None);
    let mut actions = Vec::new();
    machine.start(&mut actions);
    let mut parser = StreamParser::new(Limits::default());
    for chunk in data.chunks(64) {
        let (events, error) = parse(&mut parser, chunk);
        let mut inputs: VecDeque<connect::Input> =
            events.into_iter().map(connect::Input::Event).collect();
        inputs.extend(error.map(connect::Input::XmlError));
        while let Some(input) = inputs.pop_front() {
            let was_closed = machine.is_closed();
            actions.clear();
            machine.handle(input, &mut actions);
            assert!(!was_closed || actions.is_empty(), "a closed stream stays silent");
            for action in actions.drain(..) {
                match action {
                    connect::Action::StartTls => inputs.push_back(connect::Input::TlsEstablished {
                        peer_certificate_valid: flags & 8 == 8,
                    }),
                    connect::Action::ResetParser => parser.reset(),
                    _ => {}
                }
            }
        }
        if machine.is_closed() {
            return;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if flags & 16 == 16 {
        fuzz_connect(rest, flags);
    } else {
        fuzz_accept(rest, flags);
    }
});

//! Arbitrary bytes through the stream parser into the c2s negotiation machine, with
//! TLS coming up and credentials and registrations answered whenever the machine
//! asks: it must never panic, and once closed it must stay silent.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use starling_proto::c2s::{Action, C2sConfig, C2sServer, Input, RegistrationError};
use starling_proto::sasl::{ChannelBindings, Mechanism, ScramCredentials, ScramHash};
use starling_xml::{Limits, StreamParser};

fuzz_target!(|data: &[u8]| {
    let config = Arc::new(C2sConfig {
        domains: vec!["localhost".into()],
        starttls_offered: true,
        tls_required: data.first().is_some_and(|b| b & 1 == 1),
        mechanisms: Mechanism::ALL.to_vec(),
        max_auth_failures: 3,
        auth_failure_delay: Duration::ZERO,
        secret: vec![0; 32],
        default_iterations: 16,
        session_features: Vec::new(),
        allow_registration: data.first().is_some_and(|b| b & 2 == 2),
    });
    // Few iterations keep each run fast; the key derivation itself is not under test here.
    static CREDENTIALS: OnceLock<ScramCredentials> = OnceLock::new();
    let credentials = CREDENTIALS.get_or_init(|| {
        ScramCredentials::derive(ScramHash::Sha256, "pencil", b"salt", 16)
            .expect("fixed credentials derive")
    });
    let mut machine = C2sServer::new(config, None);
    let mut parser = StreamParser::new(Limits::default());
    let mut events = Vec::new();
    let mut actions = Vec::new();
    for chunk in data.chunks(64) {
        events.clear();
        let result = parser.feed(chunk, &mut events);
        let mut inputs: std::collections::VecDeque<Input> =
            events.drain(..).map(Input::Event).collect();
        if let Err(e) = result {
            inputs.push_back(Input::XmlError(e));
        }
        while let Some(input) = inputs.pop_front() {
            let was_closed = machine.is_closed();
            actions.clear();
            machine.handle(input, &mut actions);
            assert!(
                !was_closed || actions.is_empty(),
                "a closed stream stays silent"
            );
            for action in actions.drain(..) {
                match action {
                    Action::StartTls => inputs.push_back(Input::TlsEstablished(ChannelBindings {
                        tls_exporter: Some(vec![1; 32]),
                        tls_server_end_point: Some(vec![2; 32]),
                    })),
                    Action::ResetParser => parser.reset(),
                    Action::LookupCredentials { hash, .. } => inputs.push_back(Input::Credentials(
                        (hash == ScramHash::Sha256).then(|| credentials.clone()),
                    )),
                    // Usernames starting with "taken" exist already; the shell answers first.
                    Action::Register { username, .. } => inputs.push_front(
                        Input::RegistrationResult(if username.starts_with("taken") {
                            Err(RegistrationError::AccountExists)
                        } else {
                            Ok(())
                        }),
                    ),
                    _ => {}
                }
            }
        }
        if machine.is_closed() {
            return;
        }
    }
});

//! The server side of SCRAM-* and PLAIN as a sans-IO state machine.

use std::fmt;
use std::mem;

use base64::Engine;
use subtle::ConstantTimeEq;

use super::scram::{self, B64};
use super::{plain, ChannelBindingType, ChannelBindings, Mechanism, SaslFailure};
use super::{ScramCredentials, ScramHash};
use crate::jid::{prepare_domain, prepare_localpart, Jid};

/// Length of the fake salt answered for unknown users; matches generated salts.
const FAKE_SALT_BYTES: usize = 16;

#[derive(Clone)]
pub struct SaslServerConfig {
    /// The domain the client authenticates to.
    pub domain: String,
    pub channel_bindings: ChannelBindings,
    /// The server offered a -PLUS mechanism on this connection.
    pub plus_advertised: bool,
    /// Server secret from which fake salts of unknown users are derived.
    pub secret: Vec<u8>,
    /// Iteration count answered for unknown users.
    pub default_iterations: u32,
    /// Which stored credentials PLAIN verifies against, usually SHA-256.
    pub plain_hash: ScramHash,
}

impl fmt::Debug for SaslServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslServerConfig")
            .field("domain", &self.domain)
            .field("channel_bindings", &self.channel_bindings)
            .field("plus_advertised", &self.plus_advertised)
            .field("secret", &"<redacted>")
            .field("default_iterations", &self.default_iterations)
            .field("plain_hash", &self.plain_hash)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// Look up the stored credentials of `username` (PRECIS-prepared localpart)
    /// for `hash`, then call `SaslServer::credentials`.
    NeedCredentials {
        username: String,
        hash: ScramHash,
    },
    Challenge(Vec<u8>),
    Success {
        username: String,
        additional_data: Option<Vec<u8>>,
    },
    Failure(SaslFailure),
}

pub struct SaslServer {
    mechanism: Mechanism,
    config: SaslServerConfig,
    state: State,
}

enum State {
    /// `challenged` once an empty challenge asked for the missing initial response.
    Start {
        challenged: bool,
    },
    AwaitCredentials(Pending),
    AwaitClientFinal(Box<ScramExchange>),
    Done,
}

enum Pending {
    Scram(ClientFirst),
    Plain { username: String, password: String },
}

struct ClientFirst {
    username: String,
    hash: ScramHash,
    client_first_bare: String,
    client_nonce: String,
    /// gs2 header followed by the channel-binding data: what `c=` must encode.
    cbind_input: Vec<u8>,
}

struct ScramExchange {
    username: String,
    hash: ScramHash,
    /// `client-first-message-bare "," server-first-message`, the AuthMessage prefix.
    auth_prefix: String,
    nonce: String,
    cbind_input: Vec<u8>,
    /// `None` for an unknown user, who is only turned away at the final step.
    credentials: Option<ScramCredentials>,
}

impl SaslServer {
    pub fn new(mechanism: Mechanism, config: SaslServerConfig) -> Self {
        SaslServer {
            mechanism,
            config,
            state: State::Start { challenged: false },
        }
    }

    /// A client message, already base64-decoded (the initial response may be empty).
    pub fn step(&mut self, input: &[u8]) -> ServerStep {
        let result = match mem::replace(&mut self.state, State::Done) {
            State::Start { challenged: false } if input.is_empty() => {
                // No initial response: an empty challenge asks for it (RFC 6120 §6.4.2).
                self.state = State::Start { challenged: true };
                Ok(ServerStep::Challenge(Vec::new()))
            }
            State::Start { .. } => match self.mechanism.scram_hash() {
                Some(hash) => self.client_first(hash, input),
                None => self.plain(input),
            },
            State::AwaitClientFinal(exchange) => client_final(*exchange, input),
            State::AwaitCredentials(_) | State::Done => Err(SaslFailure::MalformedRequest),
        };
        result.unwrap_or_else(ServerStep::Failure)
    }

    /// The answer to `NeedCredentials`; `None` when the account does not exist.
    pub fn credentials(&mut self, creds: Option<ScramCredentials>) -> ServerStep {
        match scram::random_nonce() {
            Ok(server_nonce) => self.credentials_with_nonce(creds, &server_nonce),
            Err(_) => {
                self.state = State::Done;
                ServerStep::Failure(SaslFailure::TemporaryAuthFailure)
            }
        }
    }

    /// `credentials` with a given server nonce part, so tests can replay RFC examples.
    fn credentials_with_nonce(
        &mut self,
        creds: Option<ScramCredentials>,
        server_nonce: &str,
    ) -> ServerStep {
        let result = match mem::replace(&mut self.state, State::Done) {
            State::AwaitCredentials(Pending::Scram(first)) => {
                self.server_first(first, creds, server_nonce)
            }
            State::AwaitCredentials(Pending::Plain { username, password }) => {
                self.plain_verify(username, &password, creds)
            }
            State::Start { .. } | State::AwaitClientFinal(_) | State::Done => {
                Err(SaslFailure::MalformedRequest)
            }
        };
        result.unwrap_or_else(ServerStep::Failure)
    }

    fn client_first(&mut self, hash: ScramHash, input: &[u8]) -> Result<ServerStep, SaslFailure> {
        use SaslFailure::MalformedRequest;
        let input = std::str::from_utf8(input).map_err(|_| MalformedRequest)?;
        let (flag, rest) = input.split_once(',').ok_or(MalformedRequest)?;
        let (authzid, bare) = rest.split_once(',').ok_or(MalformedRequest)?;
        let gs2_header = &input[..input.len() - bare.len()];
        let authzid = match authzid {
            "" => None,
            a => Some(
                a.strip_prefix("a=")
                    .and_then(scram::decode_saslname)
                    .ok_or(MalformedRequest)?,
            ),
        };
        // A leading "m=" (mandatory extension) fails this match, as RFC 5802 §5.1 requires.
        let attributes = scram::attributes(bare).ok_or(MalformedRequest)?;
        let (username, client_nonce) = match attributes.as_slice() {
            [(b'n', username), (b'r', nonce), ..] => (*username, *nonce),
            _ => return Err(MalformedRequest),
        };
        let username = scram::decode_saslname(username).ok_or(MalformedRequest)?;
        if !scram::is_valid_nonce(client_nonce) {
            return Err(MalformedRequest);
        }
        let cb_data = self.channel_binding_data(flag)?;
        let username = self
            .prepare_username(&username)
            .ok_or(SaslFailure::NotAuthorized)?;
        if let Some(authzid) = authzid {
            self.check_authzid(&authzid, &username)?;
        }
        let mut cbind_input = gs2_header.as_bytes().to_vec();
        cbind_input.extend_from_slice(cb_data);
        self.state = State::AwaitCredentials(Pending::Scram(ClientFirst {
            username: username.clone(),
            hash,
            client_first_bare: bare.to_owned(),
            client_nonce: client_nonce.to_owned(),
            cbind_input,
        }));
        Ok(ServerStep::NeedCredentials { username, hash })
    }

    /// Checks the gs2 channel-binding flag against the mechanism and returns
    /// the channel-binding data the client must have bound to.
    fn channel_binding_data(&self, flag: &str) -> Result<&[u8], SaslFailure> {
        match (flag, self.mechanism.is_plus()) {
            ("n", false) => Ok(&[]),
            // "y": the client supports channel binding but thinks we do not. If we
            // offered a -PLUS mechanism, someone removed it on the way (RFC 5802 §6).
            ("y", false) if self.config.plus_advertised => Err(SaslFailure::NotAuthorized),
            ("y", false) => Ok(&[]),
            (flag, true) => flag
                .strip_prefix("p=")
                .and_then(ChannelBindingType::from_name)
                .and_then(|ty| self.config.channel_bindings.get(ty))
                .ok_or(SaslFailure::NotAuthorized),
            _ => Err(SaslFailure::MalformedRequest),
        }
    }

    /// Prepares an authentication identity: a localpart, or `local@domain`
    /// for this server's own domain only.
    fn prepare_username(&self, raw: &str) -> Option<String> {
        let local = match raw.split_once('@') {
            Some((local, domain)) => {
                let ours = prepare_domain(&self.config.domain).ok()?;
                (prepare_domain(domain).ok()? == ours).then_some(local)?
            }
            None => raw,
        };
        prepare_localpart(local).ok()
    }

    /// The only identity a user may act as is their own bare JID.
    fn check_authzid(&self, authzid: &str, username: &str) -> Result<(), SaslFailure> {
        let own = Jid::new(Some(username), &self.config.domain, None);
        match (Jid::parse(authzid), own) {
            (Ok(requested), Ok(own)) if requested == own => Ok(()),
            _ => Err(SaslFailure::InvalidAuthzid),
        }
    }

    /// Salt for an unknown user: stable per username, so that repeated
    /// attempts cannot tell it from a real account's.
    fn fake_salt(&self, username: &str) -> Vec<u8> {
        let mut salt = scram::hmac(ScramHash::Sha256, &self.config.secret, username.as_bytes());
        salt.truncate(FAKE_SALT_BYTES);
        salt
    }

    fn server_first(
        &mut self,
        first: ClientFirst,
        creds: Option<ScramCredentials>,
        server_nonce: &str,
    ) -> Result<ServerStep, SaslFailure> {
        let (salt, iterations) = match &creds {
            Some(c) if c.hash != first.hash => return Err(SaslFailure::TemporaryAuthFailure),
            Some(c) => (c.salt.clone(), c.iterations),
            None => (
                self.fake_salt(&first.username),
                self.config.default_iterations,
            ),
        };
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        self.state = State::AwaitClientFinal(Box::new(ScramExchange {
            username: first.username,
            hash: first.hash,
            auth_prefix: format!("{},{server_first}", first.client_first_bare),
            nonce,
            cbind_input: first.cbind_input,
            credentials: creds,
        }));
        Ok(ServerStep::Challenge(server_first.into_bytes()))
    }

    fn plain(&mut self, input: &[u8]) -> Result<ServerStep, SaslFailure> {
        let (authzid, authcid, password) =
            plain::parse(input).ok_or(SaslFailure::MalformedRequest)?;
        let username = self
            .prepare_username(authcid)
            .ok_or(SaslFailure::NotAuthorized)?;
        let password = scram::prepare_password(password).map_err(|_| SaslFailure::NotAuthorized)?;
        if !authzid.is_empty() {
            self.check_authzid(authzid, &username)?;
        }
        self.state = State::AwaitCredentials(Pending::Plain {
            username: username.clone(),
            password,
        });
        Ok(ServerStep::NeedCredentials {
            username,
            hash: self.config.plain_hash,
        })
    }

    fn plain_verify(
        &self,
        username: String,
        password: &str,
        creds: Option<ScramCredentials>,
    ) -> Result<ServerStep, SaslFailure> {
        let hash = self.config.plain_hash;
        let (salt, iterations) = match &creds {
            Some(c) if c.hash != hash => return Err(SaslFailure::TemporaryAuthFailure),
            Some(c) => (c.salt.clone(), c.iterations),
            // Derive anyway so an unknown user costs as much time as a wrong password.
            None => (self.fake_salt(&username), self.config.default_iterations),
        };
        let derived = ScramCredentials::derive(hash, password, &salt, iterations)
            .map_err(|_| SaslFailure::NotAuthorized)?;
        match creds {
            Some(c) if bool::from(derived.stored_key.ct_eq(&c.stored_key)) => {
                Ok(ServerStep::Success {
                    username,
                    additional_data: None,
                })
            }
            _ => Err(SaslFailure::NotAuthorized),
        }
    }
}

/// Verifies `client-final-message` (RFC 5802 §3, §5.1).
fn client_final(exchange: ScramExchange, input: &[u8]) -> Result<ServerStep, SaslFailure> {
    use SaslFailure::{MalformedRequest, NotAuthorized};
    let hash = exchange.hash;
    let input = std::str::from_utf8(input).map_err(|_| MalformedRequest)?;
    let (without_proof, proof) = input.rsplit_once(",p=").ok_or(MalformedRequest)?;
    let proof = B64.decode(proof).map_err(|_| MalformedRequest)?;
    if proof.len() != scram::output_len(hash) {
        return Err(MalformedRequest);
    }
    let attributes = scram::attributes(without_proof).ok_or(MalformedRequest)?;
    let (cbind, nonce) = match attributes.as_slice() {
        [(b'c', cbind), (b'r', nonce), ..] => (*cbind, *nonce),
        _ => return Err(MalformedRequest),
    };
    let cbind = B64.decode(cbind).map_err(|_| MalformedRequest)?;
    if cbind != exchange.cbind_input || nonce != exchange.nonce {
        return Err(NotAuthorized);
    }
    let creds = exchange.credentials.ok_or(NotAuthorized)?;
    let auth_message = format!("{},{without_proof}", exchange.auth_prefix);
    let client_signature = scram::hmac(hash, &creds.stored_key, auth_message.as_bytes());
    let client_key = scram::xor(&proof, &client_signature);
    let stored_key = scram::digest(hash, &client_key);
    if !bool::from(stored_key.ct_eq(&creds.stored_key)) {
        return Err(NotAuthorized);
    }
    let server_signature = scram::hmac(hash, &creds.server_key, auth_message.as_bytes());
    Ok(ServerStep::Success {
        username: exchange.username,
        additional_data: Some(format!("v={}", B64.encode(server_signature)).into_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::{SaslClient, SaslError};

    const DOMAIN: &str = "example.com";

    fn config() -> SaslServerConfig {
        SaslServerConfig {
            domain: DOMAIN.to_owned(),
            channel_bindings: ChannelBindings {
                tls_exporter: Some(b"exporter-data".to_vec()),
                tls_server_end_point: Some(b"certificate-hash".to_vec()),
            },
            plus_advertised: true,
            secret: b"server secret".to_vec(),
            default_iterations: 4096,
            plain_hash: ScramHash::Sha256,
        }
    }

    fn creds(hash: ScramHash, password: &str) -> ScramCredentials {
        ScramCredentials::derive(hash, password, b"fixed salt", 64).unwrap()
    }

    fn need(username: &str, hash: ScramHash) -> ServerStep {
        ServerStep::NeedCredentials {
            username: username.to_owned(),
            hash,
        }
    }

    fn challenge(step: ServerStep) -> Vec<u8> {
        match step {
            ServerStep::Challenge(data) => data,
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    /// Runs a whole exchange between our client and server, returning the
    /// server's verdict and, on success, the client's check of the server.
    fn run(
        mechanism: Mechanism,
        config: SaslServerConfig,
        client_password: &str,
        stored: Option<ScramCredentials>,
        cb: Option<(ChannelBindingType, Vec<u8>)>,
    ) -> (ServerStep, Option<Result<(), SaslError>>) {
        let mut client = SaslClient::new(mechanism, "juliet", client_password, cb).unwrap();
        let mut server = SaslServer::new(mechanism, config);
        let step = server.step(&client.initial_response());
        let expected_hash = mechanism.scram_hash().unwrap_or(ScramHash::Sha256);
        assert_eq!(step, need("juliet", expected_hash));
        let mut step = server.credentials(stored);
        while let ServerStep::Challenge(data) = step {
            step = server.step(&client.respond(&data).unwrap());
        }
        let verified = match &step {
            ServerStep::Success {
                additional_data, ..
            } => Some(client.finish(additional_data.as_deref())),
            _ => None,
        };
        (step, verified)
    }

    fn assert_success(result: (ServerStep, Option<Result<(), SaslError>>)) {
        match result {
            (ServerStep::Success { username, .. }, Some(Ok(()))) => assert_eq!(username, "juliet"),
            other => panic!("expected success, got {other:?}"),
        }
    }

    /// Feeds raw client messages; returns the first step that is not a challenge
    /// or `NeedCredentials`, or the last challenge.
    fn raw_exchange(
        mechanism: Mechanism,
        config: SaslServerConfig,
        stored: Option<ScramCredentials>,
        messages: &[&[u8]],
    ) -> ServerStep {
        let mut server = SaslServer::new(mechanism, config);
        let mut stored = Some(stored);
        let mut last = ServerStep::Challenge(Vec::new());
        for message in messages {
            last = server.step(message);
            if let ServerStep::NeedCredentials { .. } = last {
                last = server.credentials_with_nonce(stored.take().flatten(), "SERVERNONCE");
            }
            if !matches!(last, ServerStep::Challenge(_)) {
                break;
            }
        }
        last
    }

    #[test]
    fn rfc5802_scram_sha1_example_produces_the_exact_messages() {
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let stored = ScramCredentials::derive(ScramHash::Sha1, "pencil", &salt, 4096).unwrap();
        let mut server = SaslServer::new(Mechanism::ScramSha1, config());
        let mut client = SaslClient::with_nonce(
            Mechanism::ScramSha1,
            "user",
            "pencil",
            None,
            "fyko+d2lbbFgONRv9qkxdawL".to_owned(),
        )
        .unwrap();

        let client_first = client.initial_response();
        assert_eq!(client_first, b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(server.step(&client_first), need("user", ScramHash::Sha1));
        let server_first =
            challenge(server.credentials_with_nonce(Some(stored), "3rfcNHYJY1ZVvWVs7j"));
        assert_eq!(
            server_first,
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
        );
        let client_final = client.respond(&server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final.clone()).unwrap(),
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        let server_final = b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=".to_vec();
        assert_eq!(
            server.step(&client_final),
            ServerStep::Success {
                username: "user".to_owned(),
                additional_data: Some(server_final.clone()),
            }
        );
        assert_eq!(client.finish(Some(&server_final)), Ok(()));
    }

    #[test]
    fn rfc7677_scram_sha256_example_produces_the_exact_messages() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let stored = ScramCredentials::derive(ScramHash::Sha256, "pencil", &salt, 4096).unwrap();
        let mut server = SaslServer::new(Mechanism::ScramSha256, config());
        let mut client = SaslClient::with_nonce(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            None,
            "rOprNGfwEbeRWgbNEkqO".to_owned(),
        )
        .unwrap();

        let client_first = client.initial_response();
        assert_eq!(client_first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        assert_eq!(server.step(&client_first), need("user", ScramHash::Sha256));
        let server_first = challenge(
            server.credentials_with_nonce(Some(stored), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"),
        );
        assert_eq!(
            String::from_utf8(server_first.clone()).unwrap(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let client_final = client.respond(&server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final.clone()).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_final = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec();
        assert_eq!(
            server.step(&client_final),
            ServerStep::Success {
                username: "user".to_owned(),
                additional_data: Some(server_final.clone()),
            }
        );
        assert_eq!(client.finish(Some(&server_final)), Ok(()));
    }

    #[test]
    fn scram_sha512_round_trip_succeeds() {
        let stored = creds(ScramHash::Sha512, "r0m30!");
        assert_success(run(
            Mechanism::ScramSha512,
            config(),
            "r0m30!",
            Some(stored),
            None,
        ));
    }

    #[test]
    fn scram_sha1_and_sha256_round_trips_succeed() {
        for (mechanism, hash) in [
            (Mechanism::ScramSha1, ScramHash::Sha1),
            (Mechanism::ScramSha256, ScramHash::Sha256),
        ] {
            let stored = creds(hash, "pencil");
            assert_success(run(mechanism, config(), "pencil", Some(stored), None));
        }
    }

    #[test]
    fn plus_with_tls_exporter_succeeds() {
        let stored = creds(ScramHash::Sha256, "pencil");
        let cb = Some((ChannelBindingType::TlsExporter, b"exporter-data".to_vec()));
        assert_success(run(
            Mechanism::ScramSha256Plus,
            config(),
            "pencil",
            Some(stored),
            cb,
        ));
    }

    #[test]
    fn plus_with_tls_server_end_point_succeeds() {
        let stored = creds(ScramHash::Sha512, "pencil");
        let cb = Some((
            ChannelBindingType::TlsServerEndPoint,
            b"certificate-hash".to_vec(),
        ));
        assert_success(run(
            Mechanism::ScramSha512Plus,
            config(),
            "pencil",
            Some(stored),
            cb,
        ));
    }

    #[test]
    fn plus_with_mismatched_channel_binding_data_fails_at_the_end() {
        for ty in [
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint,
        ] {
            let stored = creds(ScramHash::Sha1, "pencil");
            let cb = Some((ty, b"a man in the middle's data".to_vec()));
            let result = run(
                Mechanism::ScramSha1Plus,
                config(),
                "pencil",
                Some(stored),
                cb,
            );
            assert_eq!(
                result,
                (ServerStep::Failure(SaslFailure::NotAuthorized), None)
            );
        }
    }

    #[test]
    fn plus_with_a_binding_type_the_connection_lacks_is_not_authorized() {
        let mut config = config();
        config.channel_bindings.tls_exporter = None;
        let step = raw_exchange(
            Mechanism::ScramSha256Plus,
            config,
            None,
            &[b"p=tls-exporter,,n=juliet,r=abc"],
        );
        assert_eq!(step, ServerStep::Failure(SaslFailure::NotAuthorized));
        let step = raw_exchange(
            Mechanism::ScramSha256Plus,
            self::config(),
            None,
            &[b"p=tls-unique,,n=juliet,r=abc"],
        );
        assert_eq!(step, ServerStep::Failure(SaslFailure::NotAuthorized));
    }

    #[test]
    fn plus_mechanism_without_channel_binding_flag_is_not_authorized() {
        for message in [&b"n,,n=juliet,r=abc"[..], b"y,,n=juliet,r=abc"] {
            let step = raw_exchange(Mechanism::ScramSha256Plus, config(), None, &[message]);
            assert_eq!(step, ServerStep::Failure(SaslFailure::NotAuthorized));
        }
    }

    #[test]
    fn channel_binding_flag_with_a_non_plus_mechanism_is_malformed() {
        let step = raw_exchange(
            Mechanism::ScramSha256,
            config(),
            None,
            &[b"p=tls-exporter,,n=juliet,r=abc"],
        );
        assert_eq!(step, ServerStep::Failure(SaslFailure::MalformedRequest));
        let step = raw_exchange(
            Mechanism::ScramSha256,
            config(),
            None,
            &[b"x,,n=juliet,r=abc"],
        );
        assert_eq!(step, ServerStep::Failure(SaslFailure::MalformedRequest));
    }

    #[test]
    fn y_flag_after_a_plus_mechanism_was_offered_is_a_detected_downgrade() {
        let step = raw_exchange(
            Mechanism::ScramSha256,
            config(),
            None,
            &[b"y,,n=juliet,r=abc"],
        );
        assert_eq!(step, ServerStep::Failure(SaslFailure::NotAuthorized));
    }

    #[test]
    fn y_flag_without_a_plus_offer_is_accepted_and_bound_into_c() {
        let mut config = config();
        config.plus_advertised = false;
        let mut server = SaslServer::new(Mechanism::ScramSha256, config);
        assert_eq!(
            server.step(b"y,,n=juliet,r=abc"),
            need("juliet", ScramHash::Sha256)
        );
        let first = challenge(server.credentials(Some(creds(ScramHash::Sha256, "pencil"))));
        assert!(first.starts_with(b"r=abc"));
        // c= must carry "y,,", not "n,,": the client cannot lie about the flag later.
        let nonce = std::str::from_utf8(&first)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let proof = B64.encode([0u8; 32]);
        let lying = format!("c=biws,{nonce},p={proof}");
        assert_eq!(
            server.step(lying.as_bytes()),
            ServerStep::Failure(SaslFailure::NotAuthorized)
        );
    }

    #[test]
    fn unknown_user_gets_a_normal_server_first_and_fails_only_at_the_end() {
        let result = run(Mechanism::ScramSha256, config(), "pencil", None, None);
        assert_eq!(
            result,
            (ServerStep::Failure(SaslFailure::NotAuthorized), None)
        );

        let mut server = SaslServer::new(Mechanism::ScramSha256, config());
        server.step(b"n,,n=nobody,r=abc");
        let first = String::from_utf8(challenge(server.credentials(None))).unwrap();
        let attributes = scram::attributes(&first).unwrap();
        assert!(matches!(
            attributes.as_slice(),
            [(b'r', r), (b's', s), (b'i', "4096")]
                if r.len() == 3 + 32 && B64.decode(s).unwrap().len() == 16
        ));
    }

    #[test]
    fn fake_salt_is_stable_per_username_and_differs_between_usernames() {
        let salt_of = |user: &str| {
            let mut server = SaslServer::new(Mechanism::ScramSha1, config());
            server.step(format!("n,,n={user},r=abc").as_bytes());
            let first = String::from_utf8(challenge(server.credentials(None))).unwrap();
            first.split(',').nth(1).unwrap().to_owned()
        };
        assert_eq!(salt_of("nobody"), salt_of("nobody"));
        assert_eq!(salt_of("Nobody"), salt_of("nobody"));
        assert_ne!(salt_of("nobody"), salt_of("someone"));
    }

    #[test]
    fn wrong_password_is_not_authorized() {
        let stored = creds(ScramHash::Sha256, "pencil");
        let result = run(
            Mechanism::ScramSha256,
            config(),
            "crayon",
            Some(stored),
            None,
        );
        assert_eq!(
            result,
            (ServerStep::Failure(SaslFailure::NotAuthorized), None)
        );
    }

    #[test]
    fn client_first_syntax_errors_are_malformed() {
        for message in [
            &b""[..],
            b"n,,",
            b"n,,r=abc",
            b"n,,n=juliet",
            b"n,,n=juliet,r=",
            b"n,,n=juliet,r=a b",
            b"n,,m=ext,n=juliet,r=abc",
            b"n,,n=jul=41iet,r=abc",
            b"n,,n=juliet=,r=abc",
            b"n,n=juliet,r=abc",
            b"n,x=y,n=juliet,r=abc",
            b"n,a=,n=juliet,r=abc",
            b"n,,n=j\xffliet,r=abc",
        ] {
            let mut server = SaslServer::new(Mechanism::ScramSha256, config());
            // An empty first message asks for the initial response; skip past it.
            server.step(b"");
            assert_eq!(
                server.step(message),
                ServerStep::Failure(SaslFailure::MalformedRequest),
                "{}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn escaped_usernames_are_decoded_and_invalid_ones_are_not_authorized() {
        let mut server = SaslServer::new(Mechanism::ScramSha1, config());
        assert_eq!(
            server.step(b"n,,n=a=3Db,r=abc"),
            need("a=b", ScramHash::Sha1)
        );
        let mut server = SaslServer::new(Mechanism::ScramSha1, config());
        assert_eq!(
            server.step(b"n,,n=a=2Cb,r=abc"),
            need("a,b", ScramHash::Sha1)
        );
        for message in [
            &b"n,,n=\"q\",r=abc"[..],
            b"n,,n=foo bar,r=abc",
            b"n,,n=\xe2\x99\x9a,r=abc",
        ] {
            let step = raw_exchange(Mechanism::ScramSha1, config(), None, &[message]);
            assert_eq!(step, ServerStep::Failure(SaslFailure::NotAuthorized));
        }
    }

    #[test]
    fn usernames_are_case_mapped_and_may_carry_our_domain_only() {
        let mut server = SaslServer::new(Mechanism::ScramSha1, config());
        assert_eq!(
            server.step(b"n,,n=Juliet,r=abc"),
            need("juliet", ScramHash::Sha1)
        );
        let mut server = SaslServer::new(Mechanism::ScramSha1, config());
        assert_eq!(
            server.step(b"n,,n=juliet@Example.COM,r=abc"),
            need("juliet", ScramHash::Sha1)
        );
        let mut server = SaslServer::new(Mechanism::ScramSha1, config());
        assert_eq!(
            server.step(b"n,,n=juliet@example.org,r=abc"),
            ServerStep::Failure(SaslFailure::NotAuthorized)
        );
    }

    #[test]
    fn authzid_must_be_the_users_own_bare_jid() {
        let mut server = SaslServer::new(Mechanism::ScramSha1, config());
        assert_eq!(
            server.step(b"n,a=Juliet@example.com,n=juliet,r=abc"),
            need("juliet", ScramHash::Sha1)
        );
        for message in [
            &b"n,a=romeo@example.com,n=juliet,r=abc"[..],
            b"n,a=juliet@example.com/balcony,n=juliet,r=abc",
            b"n,a=example.com,n=juliet,r=abc",
        ] {
            let mut server = SaslServer::new(Mechanism::ScramSha1, config());
            assert_eq!(
                server.step(message),
                ServerStep::Failure(SaslFailure::InvalidAuthzid)
            );
        }
    }

    /// A server that has sent server-first with nonce "abcSERVERNONCE", and
    /// the proof a client knowing "pencil" would send with "c=biws".
    fn awaiting_final() -> (SaslServer, String, String) {
        let mut server = SaslServer::new(Mechanism::ScramSha256, config());
        server.step(b"n,,n=juliet,r=abc");
        let stored = creds(ScramHash::Sha256, "pencil");
        let first = challenge(server.credentials_with_nonce(Some(stored.clone()), "SERVERNONCE"));
        let first = String::from_utf8(first).unwrap();
        let without_proof = "c=biws,r=abcSERVERNONCE";
        let auth_message = format!("n=juliet,r=abc,{first},{without_proof}");
        let keys =
            scram::keys(ScramHash::Sha256, "pencil", &stored.salt, stored.iterations).unwrap();
        let signature = scram::hmac(
            ScramHash::Sha256,
            &stored.stored_key,
            auth_message.as_bytes(),
        );
        let proof = B64.encode(scram::xor(&keys.client_key, &signature));
        (server, without_proof.to_owned(), proof)
    }

    #[test]
    fn hand_built_client_final_is_accepted() {
        let (mut server, without_proof, proof) = awaiting_final();
        let step = server.step(format!("{without_proof},p={proof}").as_bytes());
        assert!(matches!(step, ServerStep::Success { .. }), "{step:?}");
    }

    #[test]
    fn client_final_syntax_errors_are_malformed() {
        let (_, _, proof) = awaiting_final();
        for message in [
            "c=biws,r=abcSERVERNONCE".to_owned(),
            "c=biws,r=abcSERVERNONCE,p=not base64!".to_owned(),
            format!("c=biws,r=abcSERVERNONCE,p={}", B64.encode([1u8; 20])),
            format!("r=abcSERVERNONCE,p={proof}"),
            format!("c=biws,p={proof}"),
            format!("c=b!ws,r=abcSERVERNONCE,p={proof}"),
            format!(",c=biws,r=abcSERVERNONCE,p={proof}"),
        ] {
            let (mut server, _, _) = awaiting_final();
            assert_eq!(
                server.step(message.as_bytes()),
                ServerStep::Failure(SaslFailure::MalformedRequest),
                "{message}"
            );
        }
    }

    #[test]
    fn client_final_with_wrong_nonce_or_binding_or_proof_is_not_authorized() {
        let (_, _, proof) = awaiting_final();
        let wrong_proof = B64.encode([7u8; 32]);
        for message in [
            format!("c=biws,r=abcOTHERNONCE,p={proof}"),
            format!("c=biws,r=abc,p={proof}"),
            format!("c={},r=abcSERVERNONCE,p={proof}", B64.encode("y,,")),
            format!("c=biws,r=abcSERVERNONCE,p={wrong_proof}"),
        ] {
            let (mut server, _, _) = awaiting_final();
            assert_eq!(
                server.step(message.as_bytes()),
                ServerStep::Failure(SaslFailure::NotAuthorized),
                "{message}"
            );
        }
    }

    #[test]
    fn credentials_for_another_hash_are_a_temporary_failure() {
        let mut server = SaslServer::new(Mechanism::ScramSha256, config());
        server.step(b"n,,n=juliet,r=abc");
        assert_eq!(
            server.credentials(Some(creds(ScramHash::Sha1, "pencil"))),
            ServerStep::Failure(SaslFailure::TemporaryAuthFailure)
        );
    }

    #[test]
    fn steps_after_success_or_failure_are_malformed() {
        let (mut server, without_proof, proof) = awaiting_final();
        let final_message = format!("{without_proof},p={proof}");
        assert!(matches!(
            server.step(final_message.as_bytes()),
            ServerStep::Success { .. }
        ));
        assert_eq!(
            server.step(final_message.as_bytes()),
            ServerStep::Failure(SaslFailure::MalformedRequest)
        );
        assert_eq!(
            server.credentials(None),
            ServerStep::Failure(SaslFailure::MalformedRequest)
        );

        let mut server = SaslServer::new(Mechanism::ScramSha1, config());
        assert_eq!(
            server.step(b"garbage"),
            ServerStep::Failure(SaslFailure::MalformedRequest)
        );
        assert_eq!(
            server.step(b"n,,n=juliet,r=abc"),
            ServerStep::Failure(SaslFailure::MalformedRequest)
        );
    }

    #[test]
    fn calls_out_of_order_are_malformed() {
        let mut server = SaslServer::new(Mechanism::ScramSha1, config());
        assert_eq!(
            server.credentials(None),
            ServerStep::Failure(SaslFailure::MalformedRequest)
        );
        let mut server = SaslServer::new(Mechanism::ScramSha1, config());
        server.step(b"n,,n=juliet,r=abc");
        assert_eq!(
            server.step(b"n,,n=juliet,r=abc"),
            ServerStep::Failure(SaslFailure::MalformedRequest)
        );
    }

    #[test]
    fn missing_initial_response_gets_one_empty_challenge() {
        let mut server = SaslServer::new(Mechanism::ScramSha512, config());
        assert_eq!(server.step(b""), ServerStep::Challenge(Vec::new()));
        assert_eq!(
            server.step(b"n,,n=juliet,r=abc"),
            need("juliet", ScramHash::Sha512)
        );

        let mut server = SaslServer::new(Mechanism::Plain, config());
        assert_eq!(server.step(b""), ServerStep::Challenge(Vec::new()));
        assert_eq!(
            server.step(b""),
            ServerStep::Failure(SaslFailure::MalformedRequest)
        );
    }

    #[test]
    fn plain_succeeds_with_the_right_password_against_plain_hash() {
        let stored = creds(ScramHash::Sha256, "pencil");
        assert_success(run(
            Mechanism::Plain,
            config(),
            "pencil",
            Some(stored),
            None,
        ));

        let mut config = config();
        config.plain_hash = ScramHash::Sha512;
        let mut server = SaslServer::new(Mechanism::Plain, config);
        assert_eq!(
            server.step(b"\0Juliet\0pencil"),
            need("juliet", ScramHash::Sha512)
        );
        assert_eq!(
            server.credentials(Some(creds(ScramHash::Sha512, "pencil"))),
            ServerStep::Success {
                username: "juliet".to_owned(),
                additional_data: None
            }
        );
    }

    #[test]
    fn plain_fails_for_wrong_password_or_unknown_user_or_wrong_hash() {
        let stored = creds(ScramHash::Sha256, "pencil");
        let result = run(Mechanism::Plain, config(), "crayon", Some(stored), None);
        assert_eq!(
            result,
            (ServerStep::Failure(SaslFailure::NotAuthorized), None)
        );
        let result = run(Mechanism::Plain, config(), "pencil", None, None);
        assert_eq!(
            result,
            (ServerStep::Failure(SaslFailure::NotAuthorized), None)
        );

        let mut server = SaslServer::new(Mechanism::Plain, config());
        server.step(b"\0juliet\0pencil");
        assert_eq!(
            server.credentials(Some(creds(ScramHash::Sha1, "pencil"))),
            ServerStep::Failure(SaslFailure::TemporaryAuthFailure)
        );
    }

    #[test]
    fn plain_with_missing_parts_or_empty_password_is_malformed() {
        for message in [&b"juliet"[..], b"\0juliet", b"\0juliet\0", b"\0\0pencil"] {
            let mut server = SaslServer::new(Mechanism::Plain, config());
            assert_eq!(
                server.step(message),
                ServerStep::Failure(SaslFailure::MalformedRequest)
            );
        }
        let mut server = SaslServer::new(Mechanism::Plain, config());
        assert_eq!(
            server.step(b"\0juliet\0pen\x07cil"),
            ServerStep::Failure(SaslFailure::NotAuthorized)
        );
    }

    #[test]
    fn plain_authzid_must_be_the_users_own_bare_jid() {
        let mut server = SaslServer::new(Mechanism::Plain, config());
        assert_eq!(
            server.step(b"juliet@example.com\0juliet@example.com\0pencil"),
            need("juliet", ScramHash::Sha256)
        );
        let mut server = SaslServer::new(Mechanism::Plain, config());
        assert_eq!(
            server.step(b"romeo@example.com\0juliet\0pencil"),
            ServerStep::Failure(SaslFailure::InvalidAuthzid)
        );
        let mut server = SaslServer::new(Mechanism::Plain, config());
        assert_eq!(
            server.step(b"\0juliet@example.net\0pencil"),
            ServerStep::Failure(SaslFailure::NotAuthorized)
        );
    }

    #[test]
    fn config_debug_hides_the_secret() {
        let text = format!("{:?}", config());
        assert!(text.contains("<redacted>"));
        assert!(!text.contains("server secret"));
    }
}

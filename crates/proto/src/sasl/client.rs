//! The client side of SCRAM-* and PLAIN, for our own test client and benchmark.

use base64::Engine;
use subtle::ConstantTimeEq;

use super::scram::{self, B64};
use super::{plain, ChannelBindingType, Mechanism, SaslError, ScramHash};

pub struct SaslClient {
    mechanism: Mechanism,
    username: String,
    /// Already prepared with OpaqueString.
    password: String,
    channel_binding: Option<(ChannelBindingType, Vec<u8>)>,
    client_nonce: String,
    state: State,
    /// Keys derived in this exchange or handed in from an earlier one.
    keys: Option<DerivedKeys>,
}

/// ClientKey and ServerKey for one salt and iteration count. RFC 5802 §5.1
/// lets a client keep them instead of the password's PBKDF2 work on every login.
#[derive(Clone)]
pub struct DerivedKeys {
    hash: ScramHash,
    salt: Vec<u8>,
    iterations: u32,
    client_key: Vec<u8>,
    server_key: Vec<u8>,
}

enum State {
    Initial,
    SentPlain,
    SentClientFirst {
        gs2_header: String,
        client_first_bare: String,
    },
    SentClientFinal {
        server_signature: Vec<u8>,
    },
    /// The server's signature arrived in a challenge and checked out.
    Verified,
    Done,
}

impl SaslClient {
    /// `channel_binding` is required by, and only allowed with, a -PLUS mechanism;
    /// with it the gs2 flag is "p=<type>", without it "n".
    pub fn new(
        mechanism: Mechanism,
        username: &str,
        password: &str,
        channel_binding: Option<(ChannelBindingType, Vec<u8>)>,
    ) -> Result<Self, SaslError> {
        let nonce = match mechanism {
            Mechanism::Plain => String::new(),
            _ => scram::random_nonce()?,
        };
        Self::with_nonce(mechanism, username, password, channel_binding, nonce)
    }

    /// `new` with a given client nonce, so tests can replay RFC examples.
    pub(super) fn with_nonce(
        mechanism: Mechanism,
        username: &str,
        password: &str,
        channel_binding: Option<(ChannelBindingType, Vec<u8>)>,
        client_nonce: String,
    ) -> Result<Self, SaslError> {
        if username.is_empty() {
            return Err(SaslError::InvalidUsername);
        }
        if mechanism.is_plus() != channel_binding.is_some() {
            return Err(SaslError::ChannelBindingMismatch);
        }
        Ok(SaslClient {
            mechanism,
            username: username.to_owned(),
            password: scram::prepare_password(password)?,
            channel_binding,
            client_nonce,
            state: State::Initial,
            keys: None,
        })
    }

    /// Reuse keys from an earlier exchange; they are used only if the server
    /// still announces the same salt and iteration count.
    pub fn with_keys(mut self, keys: Option<DerivedKeys>) -> Self {
        self.keys = keys;
        self
    }

    /// The keys of this exchange, once the server's first challenge was answered.
    pub fn keys(&self) -> Option<&DerivedKeys> {
        self.keys.as_ref()
    }

    /// The first message, sent along with the mechanism choice. Calling it
    /// again restarts the exchange.
    pub fn initial_response(&mut self) -> Vec<u8> {
        if self.mechanism == Mechanism::Plain {
            self.state = State::SentPlain;
            return plain::encode(&self.username, &self.password);
        }
        let gs2_header = match &self.channel_binding {
            Some((ty, _)) => format!("p={},,", ty.name()),
            None => "n,,".to_owned(),
        };
        let client_first_bare = format!(
            "n={},r={}",
            scram::encode_saslname(&self.username),
            self.client_nonce
        );
        let message = format!("{gs2_header}{client_first_bare}").into_bytes();
        self.state = State::SentClientFirst {
            gs2_header,
            client_first_bare,
        };
        message
    }

    /// Answers a server challenge: server-first, or server-final when the
    /// server sends it as a challenge rather than with its success (RFC 6120 §6.3.10).
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>, SaslError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::SentClientFirst {
                gs2_header,
                client_first_bare,
            } => self.client_final(&gs2_header, &client_first_bare, challenge),
            State::SentClientFinal { server_signature } => {
                verify_server_final(challenge, &server_signature)?;
                self.state = State::Verified;
                Ok(Vec::new())
            }
            State::Initial | State::SentPlain | State::Verified | State::Done => {
                Err(SaslError::OutOfOrder)
            }
        }
    }

    /// Verifies the server's success data (`v=...`); fails on a wrong server signature.
    pub fn finish(&mut self, success_data: Option<&[u8]>) -> Result<(), SaslError> {
        let success_data = success_data.filter(|data| !data.is_empty());
        match (
            std::mem::replace(&mut self.state, State::Done),
            success_data,
        ) {
            (State::SentPlain | State::Verified, None) => Ok(()),
            (State::SentClientFinal { server_signature }, Some(data)) => {
                verify_server_final(data, &server_signature)
            }
            (State::SentClientFinal { .. }, None) => Err(SaslError::MalformedChallenge),
            (State::SentPlain | State::Verified, Some(_)) => Err(SaslError::MalformedChallenge),
            (State::Initial | State::SentClientFirst { .. } | State::Done, _) => {
                Err(SaslError::OutOfOrder)
            }
        }
    }

    fn client_final(
        &mut self,
        gs2_header: &str,
        client_first_bare: &str,
        server_first: &[u8],
    ) -> Result<Vec<u8>, SaslError> {
        let hash = self.mechanism.scram_hash().ok_or(SaslError::OutOfOrder)?;
        let server_first =
            std::str::from_utf8(server_first).map_err(|_| SaslError::MalformedChallenge)?;
        let attributes = scram::attributes(server_first).ok_or(SaslError::MalformedChallenge)?;
        let (nonce, salt, iterations) = match attributes.as_slice() {
            [(b'r', nonce), (b's', salt), (b'i', iterations), ..] => (*nonce, *salt, *iterations),
            _ => return Err(SaslError::MalformedChallenge),
        };
        // The server must extend our nonce, or this could be a replayed exchange.
        if !scram::is_valid_nonce(nonce)
            || nonce.len() <= self.client_nonce.len()
            || !nonce.starts_with(&self.client_nonce)
        {
            return Err(SaslError::NonceMismatch);
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| SaslError::MalformedChallenge)?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| SaslError::MalformedChallenge)?;
        let cached = self
            .keys
            .take()
            .filter(|k| k.hash == hash && k.salt == salt && k.iterations == iterations);
        let keys = match cached {
            Some(keys) => keys,
            None => {
                let derived = scram::keys(hash, &self.password, &salt, iterations)?;
                DerivedKeys {
                    hash,
                    salt,
                    iterations,
                    client_key: derived.client_key,
                    server_key: derived.server_key,
                }
            }
        };

        let mut cbind_input = gs2_header.as_bytes().to_vec();
        if let Some((_, data)) = &self.channel_binding {
            cbind_input.extend_from_slice(data);
        }
        let without_proof = format!("c={},r={nonce}", B64.encode(cbind_input));
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let stored_key = scram::digest(hash, &keys.client_key);
        let client_signature = scram::hmac(hash, &stored_key, auth_message.as_bytes());
        let proof = scram::xor(&keys.client_key, &client_signature);
        self.state = State::SentClientFinal {
            server_signature: scram::hmac(hash, &keys.server_key, auth_message.as_bytes()),
        };
        self.keys = Some(keys);
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }
}

/// Checks `server-final-message`: `v=<signature>` or `e=<error>`.
fn verify_server_final(message: &[u8], expected: &[u8]) -> Result<(), SaslError> {
    let message = std::str::from_utf8(message).map_err(|_| SaslError::MalformedChallenge)?;
    match scram::attributes(message).as_deref() {
        Some([(b'v', signature), ..]) => {
            let signature = B64
                .decode(signature)
                .map_err(|_| SaslError::MalformedChallenge)?;
            if bool::from(signature.ct_eq(expected)) {
                Ok(())
            } else {
                Err(SaslError::ServerSignatureMismatch)
            }
        }
        Some([(b'e', error), ..]) => Err(SaslError::ServerError((*error).to_owned())),
        _ => Err(SaslError::MalformedChallenge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_FIRST: &[u8] =
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    const SERVER_FINAL: &[u8] = b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";

    /// The RFC 5802 example client, after it sent client-final.
    fn rfc5802_client() -> SaslClient {
        let mut client = SaslClient::with_nonce(
            Mechanism::ScramSha1,
            "user",
            "pencil",
            None,
            "fyko+d2lbbFgONRv9qkxdawL".to_owned(),
        )
        .unwrap();
        client.initial_response();
        client.respond(SERVER_FIRST).unwrap();
        client
    }

    #[test]
    fn wrong_server_signature_fails_finish() {
        let mut client = rfc5802_client();
        let wrong = format!("v={}", B64.encode([0u8; 20]));
        assert_eq!(
            client.finish(Some(wrong.as_bytes())),
            Err(SaslError::ServerSignatureMismatch)
        );
        let mut client = rfc5802_client();
        assert_eq!(client.finish(None), Err(SaslError::MalformedChallenge));
        let mut client = rfc5802_client();
        assert_eq!(
            client.finish(Some(b"v=!!")),
            Err(SaslError::MalformedChallenge)
        );
    }

    #[test]
    fn server_error_attribute_is_reported() {
        let mut client = rfc5802_client();
        assert_eq!(
            client.finish(Some(b"e=invalid-proof")),
            Err(SaslError::ServerError("invalid-proof".to_owned()))
        );
    }

    #[test]
    fn server_final_sent_as_a_challenge_is_verified() {
        let mut client = rfc5802_client();
        assert_eq!(client.respond(SERVER_FINAL), Ok(Vec::new()));
        assert_eq!(client.finish(None), Ok(()));
        let mut client = rfc5802_client();
        assert_eq!(
            client.respond(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(SaslError::ServerSignatureMismatch)
        );
    }

    #[test]
    fn server_nonce_must_extend_the_client_nonce() {
        for server_first in [
            &b"r=someone-elses-nonce,s=QSXCR+Q6sek8bf92,i=4096"[..],
            b"r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096",
            b"r=fyko+d2lbbFgONRv9qkxdawL x,s=QSXCR+Q6sek8bf92,i=4096",
        ] {
            let mut client = SaslClient::with_nonce(
                Mechanism::ScramSha1,
                "user",
                "pencil",
                None,
                "fyko+d2lbbFgONRv9qkxdawL".to_owned(),
            )
            .unwrap();
            client.initial_response();
            assert_eq!(client.respond(server_first), Err(SaslError::NonceMismatch));
        }
    }

    #[test]
    fn malformed_server_first_is_rejected() {
        for (server_first, error) in [
            (
                &b"m=ext,r=fyko+x,s=QSXC,i=1"[..],
                SaslError::MalformedChallenge,
            ),
            (b"r=fyko+x,i=1,s=QSXC", SaslError::MalformedChallenge),
            (b"r=fyko+x,s=!!!,i=1", SaslError::MalformedChallenge),
            (b"r=fyko+x,s=QSXC,i=many", SaslError::MalformedChallenge),
            (b"r=fyko+x,s=QSXC,i=0", SaslError::InvalidIterations),
        ] {
            let mut client =
                SaslClient::with_nonce(Mechanism::ScramSha1, "user", "pencil", None, "fyko".into())
                    .unwrap();
            client.initial_response();
            assert_eq!(client.respond(server_first), Err(error));
        }
    }

    #[test]
    fn usernames_are_escaped_and_channel_binding_sets_the_gs2_flag() {
        let mut client =
            SaslClient::with_nonce(Mechanism::ScramSha256, "a,b=c", "pw", None, "n".into())
                .unwrap();
        assert_eq!(client.initial_response(), b"n,,n=a=2Cb=3Dc,r=n");
        let cb = Some((ChannelBindingType::TlsExporter, vec![1, 2, 3]));
        let mut client =
            SaslClient::with_nonce(Mechanism::ScramSha256Plus, "u", "pw", cb, "n".into()).unwrap();
        assert_eq!(client.initial_response(), b"p=tls-exporter,,n=u,r=n");
    }

    #[test]
    fn plain_client_sends_authcid_and_password() {
        let mut client = SaslClient::new(Mechanism::Plain, "juliet", "pencil", None).unwrap();
        assert_eq!(client.initial_response(), b"\0juliet\0pencil");
        assert_eq!(client.respond(b"x"), Err(SaslError::OutOfOrder));
        let mut client = SaslClient::new(Mechanism::Plain, "juliet", "pencil", None).unwrap();
        client.initial_response();
        assert_eq!(client.finish(None), Ok(()));
    }

    #[test]
    fn client_construction_checks_its_arguments() {
        let cb = || Some((ChannelBindingType::TlsExporter, vec![1]));
        assert_eq!(
            SaslClient::new(Mechanism::ScramSha1Plus, "u", "pw", None).err(),
            Some(SaslError::ChannelBindingMismatch)
        );
        assert_eq!(
            SaslClient::new(Mechanism::ScramSha1, "u", "pw", cb()).err(),
            Some(SaslError::ChannelBindingMismatch)
        );
        assert_eq!(
            SaslClient::new(Mechanism::ScramSha1, "", "pw", None).err(),
            Some(SaslError::InvalidUsername)
        );
        assert_eq!(
            SaslClient::new(Mechanism::ScramSha1, "u", "", None).err(),
            Some(SaslError::InvalidPassword)
        );
    }

    #[test]
    fn client_calls_out_of_order_fail() {
        let mut client = SaslClient::new(Mechanism::ScramSha1, "u", "pw", None).unwrap();
        assert_eq!(client.respond(SERVER_FIRST), Err(SaslError::OutOfOrder));
        assert_eq!(
            client.finish(Some(SERVER_FINAL)),
            Err(SaslError::OutOfOrder)
        );
        let mut client = rfc5802_client();
        assert_eq!(client.finish(Some(SERVER_FINAL)), Ok(()));
        assert_eq!(
            client.finish(Some(SERVER_FINAL)),
            Err(SaslError::OutOfOrder)
        );
    }

    const RFC5802_CLIENT_FINAL: &[u8] =
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";

    fn client_with(password: &str, keys: Option<DerivedKeys>) -> SaslClient {
        let mut client = SaslClient::with_nonce(
            Mechanism::ScramSha1,
            "user",
            password,
            None,
            "fyko+d2lbbFgONRv9qkxdawL".to_owned(),
        )
        .unwrap()
        .with_keys(keys);
        client.initial_response();
        client
    }

    #[test]
    fn cached_keys_replace_the_password_for_the_same_salt_and_iterations() {
        let keys = rfc5802_client().keys().cloned();
        // A wrong password proves the cached keys, not the password, made the proof.
        let mut client = client_with("not pencil", keys);
        assert_eq!(client.respond(SERVER_FIRST).unwrap(), RFC5802_CLIENT_FINAL);
        assert_eq!(client.finish(Some(SERVER_FINAL)), Ok(()));
    }

    #[test]
    fn cached_keys_for_another_salt_or_iteration_count_are_ignored() {
        let keys = rfc5802_client().keys().cloned();
        let other_iterations =
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4097";
        let mut cached = client_with("pencil", keys.clone());
        let mut fresh = client_with("pencil", None);
        assert_eq!(
            cached.respond(other_iterations).unwrap(),
            fresh.respond(other_iterations).unwrap()
        );
        let other_salt = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf93,i=4096";
        let mut cached = client_with("not pencil", keys);
        assert_ne!(cached.respond(other_salt).unwrap(), RFC5802_CLIENT_FINAL);
    }
}

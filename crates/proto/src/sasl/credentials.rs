use super::{scram, SaslError};

/// Salt length for new credentials; RFC 5802 leaves it open, 16 bytes is common practice.
const SALT_BYTES: usize = 16;

/// The hash function of a SCRAM mechanism family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha1,
    Sha256,
    Sha512,
}

impl ScramHash {
    pub const ALL: [ScramHash; 3] = [ScramHash::Sha1, ScramHash::Sha256, ScramHash::Sha512];

    /// The name used in mechanism names and in storage: "SHA-1", "SHA-256", "SHA-512".
    pub fn name(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SHA-1",
            ScramHash::Sha256 => "SHA-256",
            ScramHash::Sha512 => "SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.name() == name)
    }
}

/// What the server keeps of a password for one hash: never the password itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub hash: ScramHash,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredentials {
    /// Derives the stored credentials of a password. The password is
    /// prepared with the PRECIS OpaqueString profile (RFC 8265) first.
    pub fn derive(
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, SaslError> {
        let keys = scram::keys(hash, password, salt, iterations)?;
        Ok(ScramCredentials {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key: scram::digest(hash, &keys.client_key),
            server_key: keys.server_key,
        })
    }

    /// Derives credentials with a fresh random 16-byte salt.
    pub fn generate(hash: ScramHash, password: &str, iterations: u32) -> Result<Self, SaslError> {
        let salt = scram::random_bytes(SALT_BYTES)?;
        Self::derive(hash, password, &salt, iterations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_prepares_the_password_with_opaquestring() {
        // U+00A0 NO-BREAK SPACE maps to an ASCII space; a control character is refused.
        let a = ScramCredentials::derive(ScramHash::Sha256, "a\u{a0}b", b"salt", 1).unwrap();
        let b = ScramCredentials::derive(ScramHash::Sha256, "a b", b"salt", 1).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            ScramCredentials::derive(ScramHash::Sha256, "a\u{7}b", b"salt", 1),
            Err(SaslError::InvalidPassword)
        );
        assert_eq!(
            ScramCredentials::derive(ScramHash::Sha256, "", b"salt", 1),
            Err(SaslError::InvalidPassword)
        );
        assert_eq!(
            ScramCredentials::derive(ScramHash::Sha256, "pw", b"salt", 0),
            Err(SaslError::InvalidIterations)
        );
    }

    #[test]
    fn generate_uses_a_fresh_16_byte_salt() {
        let a = ScramCredentials::generate(ScramHash::Sha512, "pencil", 2).unwrap();
        let b = ScramCredentials::generate(ScramHash::Sha512, "pencil", 2).unwrap();
        assert_eq!(a.salt.len(), 16);
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.stored_key, b.stored_key);
        assert_eq!(a.stored_key.len(), 64);
        assert_eq!(a.hash, ScramHash::Sha512);
    }
}

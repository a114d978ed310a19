//! SCRAM building blocks shared by the server and the client (RFC 5802 §2.2, §5, §7).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use precis_core::profile::{stabilize, PrecisFastInvocation};
use precis_profiles::OpaqueString;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::{SaslError, ScramHash};

/// SCRAM uses standard base64 with padding.
pub(super) const B64: base64::engine::GeneralPurpose = STANDARD;

/// Random bytes in a server or client nonce, before base64.
const NONCE_BYTES: usize = 24;

pub(super) fn output_len(hash: ScramHash) -> usize {
    match hash {
        ScramHash::Sha1 => 20,
        ScramHash::Sha256 => 32,
        ScramHash::Sha512 => 64,
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

pub(super) fn hmac(hash: ScramHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    match hash {
        ScramHash::Sha1 => mac::<Hmac<Sha1>>(key, data),
        ScramHash::Sha256 => mac::<Hmac<Sha256>>(key, data),
        ScramHash::Sha512 => mac::<Hmac<Sha512>>(key, data),
    }
}

pub(super) fn digest(hash: ScramHash, data: &[u8]) -> Vec<u8> {
    match hash {
        ScramHash::Sha1 => Sha1::digest(data).to_vec(),
        ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        ScramHash::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// Hi(password, salt, i) of RFC 5802 §2.2, which is PBKDF2 with HMAC.
fn salted_password(hash: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0; output_len(hash)];
    match hash {
        ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
        ScramHash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
        ScramHash::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
    }
    out
}

/// ClientKey and ServerKey of a password (RFC 5802 §3).
pub(super) struct Keys {
    pub client_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Derives the keys from a password. The password is prepared with the
/// PRECIS OpaqueString profile, which replaces SASLprep (RFC 8265).
pub(super) fn keys(
    hash: ScramHash,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<Keys, SaslError> {
    if iterations == 0 {
        return Err(SaslError::InvalidIterations);
    }
    let password = prepare_password(password)?;
    let salted = salted_password(hash, password.as_bytes(), salt, iterations);
    Ok(Keys {
        client_key: hmac(hash, &salted, b"Client Key"),
        server_key: hmac(hash, &salted, b"Server Key"),
    })
}

pub(super) fn prepare_password(password: &str) -> Result<String, SaslError> {
    stabilize(password, |s| OpaqueString::enforce(s))
        .map(|p| p.into_owned())
        .map_err(|_| SaslError::InvalidPassword)
}

pub(super) fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

pub(super) fn random_bytes(len: usize) -> Result<Vec<u8>, SaslError> {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).map_err(|_| SaslError::RandomUnavailable)?;
    Ok(bytes)
}

/// A fresh nonce; base64 never yields the ',' that nonces must not contain.
pub(super) fn random_nonce() -> Result<String, SaslError> {
    random_bytes(NONCE_BYTES).map(|bytes| B64.encode(bytes))
}

/// `printable` of RFC 5802 §7: any ASCII printable character except ','.
pub(super) fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.bytes().all(|b| matches!(b, b'!'..=b'~') && b != b',')
}

/// Escapes ',' and '=' in a username or authzid (`saslname`).
pub(super) fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Undoes `encode_saslname`; any other use of '=' is malformed.
pub(super) fn decode_saslname(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i + 1..i + 3)?;
        out.push(match escape {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    (!out.is_empty()).then_some(out)
}

/// Splits a SCRAM message into its `x=value` attributes.
pub(super) fn attributes(message: &str) -> Option<Vec<(u8, &str)>> {
    message
        .split(',')
        .map(|attr| match attr.as_bytes() {
            [name, b'=', ..] if name.is_ascii_alphabetic() => Some((*name, &attr[2..])),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslname_escapes_round_trip_and_bad_escapes_are_rejected() {
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("plain").as_deref(), Some("plain"));
        for bad in ["a=2c", "a=41", "a=", "a=3", "=", ""] {
            assert_eq!(decode_saslname(bad), None, "{bad}");
        }
    }

    #[test]
    fn nonces_are_printable_without_commas() {
        assert!(is_valid_nonce("fyko+d2lbbFgONRv9qkxdawL"));
        assert!(!is_valid_nonce(""));
        assert!(!is_valid_nonce("a,b"));
        assert!(!is_valid_nonce("a b"));
        let nonce = random_nonce().unwrap();
        assert!(is_valid_nonce(&nonce));
        assert_ne!(nonce, random_nonce().unwrap());
    }

    #[test]
    fn attributes_need_a_letter_and_an_equals_sign() {
        assert_eq!(
            attributes("r=abc,s=QSX=,i=4096"),
            Some(vec![(b'r', "abc"), (b's', "QSX="), (b'i', "4096")])
        );
        assert_eq!(attributes("r=abc,,i=1"), None);
        assert_eq!(attributes("1=x"), None);
        assert_eq!(attributes("rx"), None);
    }
}

//! The PLAIN message (RFC 4616 §2): `[authzid] NUL authcid NUL passwd`.

/// Splits a PLAIN message into authzid (possibly empty), authcid and password.
/// Missing parts, empty authcid or password, and non-UTF-8 are malformed.
pub(super) fn parse(message: &[u8]) -> Option<(&str, &str, &str)> {
    let message = std::str::from_utf8(message).ok()?;
    let mut parts = message.split('\0');
    let (authzid, authcid, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || authcid.is_empty() || password.is_empty() {
        return None;
    }
    Some((authzid, authcid, password))
}

/// Builds a PLAIN message without authzid.
pub(super) fn encode(authcid: &str, password: &str) -> Vec<u8> {
    format!("\0{authcid}\0{password}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages_split_into_three_parts() {
        assert_eq!(
            parse(b"\0tim\0tanstaaftanstaaf"),
            Some(("", "tim", "tanstaaftanstaaf"))
        );
        assert_eq!(
            parse(b"Ursel\0Kurt\0xipj3plmq"),
            Some(("Ursel", "Kurt", "xipj3plmq"))
        );
        assert_eq!(parse(&encode("tim", "pw")), Some(("", "tim", "pw")));
    }

    #[test]
    fn plain_messages_with_missing_or_empty_parts_are_rejected() {
        for bad in [
            &b""[..],
            b"tim",
            b"\0tim",
            b"\0tim\0",
            b"\0\0pw",
            b"\0tim\0pw\0x",
            b"\0t\xffm\0pw",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}

//! XMPP addresses (RFC 7622): `[localpart@]domainpart[/resourcepart]`.
//!
//! Localparts are prepared with the PRECIS UsernameCaseMapped profile,
//! resourceparts with OpaqueString (RFC 8265), domainparts with IDNA2008
//! (UTS #46 mapping, kept as lowercase U-labels). Plain lowercase ASCII takes
//! a fast path that skips the Unicode machinery but yields the same result.

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use precis_core::profile::{stabilize, PrecisFastInvocation};
use precis_profiles::{OpaqueString, UsernameCaseMapped};

/// Each part of a JID is limited to 1023 octets after preparation (RFC 7622 §3).
const MAX_PART_OCTETS: usize = 1023;
/// DNS limit on one label, in its ASCII (A-label) form.
const MAX_LABEL_OCTETS: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    #[error("the localpart is empty")]
    EmptyLocalpart,
    #[error("the localpart is longer than 1023 octets")]
    LocalpartTooLong,
    #[error(
        "the localpart violates the UsernameCaseMapped profile or contains a forbidden character"
    )]
    InvalidLocalpart,
    #[error("the domainpart is empty")]
    EmptyDomain,
    #[error("the domainpart is longer than 1023 octets")]
    DomainTooLong,
    #[error("a label of the domainpart is longer than 63 octets")]
    DomainLabelTooLong,
    #[error("the domainpart is not a valid IDNA2008 domain name or IP literal")]
    InvalidDomain,
    #[error("the resourcepart is empty")]
    EmptyResource,
    #[error("the resourcepart is longer than 1023 octets")]
    ResourceTooLong,
    #[error("the resourcepart violates the OpaqueString profile")]
    InvalidResource,
}

/// A normalized JID. The prepared string is kept whole so that `Display`,
/// comparison and hashing are plain string operations.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    full: String,
    /// Byte offset of the '@' ending the localpart, if any.
    at: Option<u16>,
    /// Byte offset of the '/' starting the resourcepart, if any.
    slash: Option<u16>,
}

impl Jid {
    /// Parses and prepares a JID. The resourcepart starts at the first '/',
    /// the localpart ends at the first '@' before it (RFC 7622 §3.1).
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        let (rest, resource) = match s.split_once('/') {
            Some((rest, resource)) => (rest, Some(resource)),
            None => (s, None),
        };
        let (node, domain) = match rest.split_once('@') {
            Some((node, domain)) => (Some(node), domain),
            None => (None, rest),
        };
        Jid::new(node, domain, resource)
    }

    /// Builds a JID from its parts, preparing each one as `parse` does.
    pub fn new(node: Option<&str>, domain: &str, resource: Option<&str>) -> Result<Jid, JidError> {
        let node = node.map(prepare_localpart_cow).transpose()?;
        let domain = prepare_domain_cow(domain)?;
        let resource = resource.map(prepare_resourcepart_cow).transpose()?;
        Ok(Jid::assemble(node.as_deref(), &domain, resource.as_deref()))
    }

    /// Joins already prepared parts.
    fn assemble(node: Option<&str>, domain: &str, resource: Option<&str>) -> Jid {
        let len =
            node.map_or(0, |n| n.len() + 1) + domain.len() + resource.map_or(0, |r| r.len() + 1);
        let mut full = String::with_capacity(len);
        let mut at = None;
        if let Some(node) = node {
            full.push_str(node);
            at = Some(offset(&full));
            full.push('@');
        }
        full.push_str(domain);
        let mut slash = None;
        if let Some(resource) = resource {
            slash = Some(offset(&full));
            full.push('/');
            full.push_str(resource);
        }
        Jid { full, at, slash }
    }

    fn domain_start(&self) -> usize {
        self.at.map_or(0, |at| usize::from(at) + 1)
    }

    fn domain_end(&self) -> usize {
        self.slash.map_or(self.full.len(), usize::from)
    }

    pub fn node(&self) -> Option<&str> {
        self.at.map(|at| &self.full[..usize::from(at)])
    }

    pub fn domain(&self) -> &str {
        &self.full[self.domain_start()..self.domain_end()]
    }

    pub fn resource(&self) -> Option<&str> {
        self.slash.map(|slash| &self.full[usize::from(slash) + 1..])
    }

    pub fn is_bare(&self) -> bool {
        self.slash.is_none()
    }

    /// The JID without its resourcepart.
    pub fn bare(&self) -> Jid {
        Jid {
            full: self.full[..self.domain_end()].to_owned(),
            at: self.at,
            slash: None,
        }
    }

    /// The JID of the domain alone.
    pub fn domain_jid(&self) -> Jid {
        Jid {
            full: self.domain().to_owned(),
            at: None,
            slash: None,
        }
    }

    /// This JID's bare part with a (prepared) resourcepart.
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        let resource = prepare_resourcepart_cow(resource)?;
        Ok(Jid::assemble(self.node(), self.domain(), Some(&resource)))
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }
}

/// Offsets fit in u16: three parts of at most 1023 octets plus two separators.
fn offset(s: &str) -> u16 {
    u16::try_from(s.len()).expect("prepared JID parts are bounded to 1023 octets")
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jid({:?})", self.full)
    }
}

impl FromStr for Jid {
    type Err = JidError;

    fn from_str(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

/// Prepares a localpart: PRECIS UsernameCaseMapped, 1..=1023 octets, and none
/// of the characters RFC 7622 §3.3.1 forbids in addition.
pub fn prepare_localpart(s: &str) -> Result<String, JidError> {
    prepare_localpart_cow(s).map(Cow::into_owned)
}

/// Prepares a resourcepart: PRECIS OpaqueString (case preserved), 1..=1023 octets.
pub fn prepare_resourcepart(s: &str) -> Result<String, JidError> {
    prepare_resourcepart_cow(s).map(Cow::into_owned)
}

/// Prepares a domainpart: one trailing dot stripped, IP literals accepted,
/// IDNA2008 mapping to lowercase U-labels, 1..=1023 octets, labels of at most
/// 63 octets in A-label form.
pub fn prepare_domain(s: &str) -> Result<String, JidError> {
    prepare_domain_cow(s).map(Cow::into_owned)
}

/// RFC 7622 §3.3.1: allowed by the IdentifierClass but not in localparts.
fn is_forbidden_in_localpart(c: char) -> bool {
    matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@')
}

/// Printable ASCII other than uppercase letters is a fixed point of
/// UsernameCaseMapped (width mapping, case mapping and NFC change nothing,
/// and the bidi rule does not apply).
fn is_fast_localpart(s: &str) -> bool {
    s.bytes().all(|b| {
        matches!(b, b'!'..=b'~') && !b.is_ascii_uppercase() && !is_forbidden_in_localpart(b.into())
    })
}

fn prepare_localpart_cow(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyLocalpart);
    }
    let prepared = if is_fast_localpart(s) {
        Cow::Borrowed(s)
    } else {
        let prepared = stabilize(s, |s| UsernameCaseMapped::enforce(s))
            .map_err(|_| JidError::InvalidLocalpart)?;
        if prepared.contains(is_forbidden_in_localpart) {
            return Err(JidError::InvalidLocalpart);
        }
        prepared
    };
    if prepared.len() > MAX_PART_OCTETS {
        return Err(JidError::LocalpartTooLong);
    }
    Ok(prepared)
}

fn prepare_resourcepart_cow(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyResource);
    }
    // Printable ASCII and the ASCII space are fixed points of OpaqueString.
    let prepared = if s.bytes().all(|b| matches!(b, b' '..=b'~')) {
        Cow::Borrowed(s)
    } else {
        stabilize(s, |s| OpaqueString::enforce(s)).map_err(|_| JidError::InvalidResource)?
    };
    if prepared.len() > MAX_PART_OCTETS {
        return Err(JidError::ResourceTooLong);
    }
    Ok(prepared)
}

/// Lowercase LDH labels that are not A-labels pass IDNA processing unchanged.
/// This also covers IPv4 literals, whose dotted digits are valid LDH labels.
fn is_fast_domain(s: &str) -> bool {
    s.len() <= MAX_PART_OCTETS
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_OCTETS
                && !label.starts_with('-')
                && !label.ends_with('-')
                && !label.starts_with("xn--")
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn prepare_domain_cow(s: &str) -> Result<Cow<'_, str>, JidError> {
    // RFC 7622 §3.2: strip one final label separator before anything else.
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return Err(JidError::EmptyDomain);
    }
    if is_fast_domain(s) {
        return Ok(Cow::Borrowed(s));
    }
    if let Some(literal) = s.strip_prefix('[') {
        let address: Ipv6Addr = literal
            .strip_suffix(']')
            .and_then(|inner| inner.parse().ok())
            .ok_or(JidError::InvalidDomain)?;
        // The canonical text form makes equal addresses compare equal.
        return Ok(Cow::Owned(format!("[{address}]")));
    }
    let uts46 = Uts46::new();
    let ascii = uts46
        .to_ascii(
            s.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Ignore,
        )
        .map_err(|_| JidError::InvalidDomain)?;
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(JidError::InvalidDomain);
        }
        if label.len() > MAX_LABEL_OCTETS {
            return Err(JidError::DomainLabelTooLong);
        }
    }
    let prepared = if ascii.contains("xn--") {
        let (unicode, result) = uts46.to_unicode(
            ascii.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
        );
        result.map_err(|_| JidError::InvalidDomain)?;
        unicode.into_owned()
    } else {
        ascii.into_owned()
    };
    if prepared.len() > MAX_PART_OCTETS {
        return Err(JidError::DomainTooLong);
    }
    Ok(Cow::Owned(prepared))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (Option<String>, String, Option<String>) {
        let jid = Jid::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"));
        (
            jid.node().map(str::to_owned),
            jid.domain().to_owned(),
            jid.resource().map(str::to_owned),
        )
    }

    #[test]
    fn rfc7622_valid_examples_parse() {
        let cases: &[(&str, Option<&str>, &str, Option<&str>)] = &[
            ("juliet@example.com", Some("juliet"), "example.com", None),
            (
                "juliet@example.com/foo",
                Some("juliet"),
                "example.com",
                Some("foo"),
            ),
            (
                "juliet@example.com/foo bar",
                Some("juliet"),
                "example.com",
                Some("foo bar"),
            ),
            (
                "juliet@example.com/foo@bar",
                Some("juliet"),
                "example.com",
                Some("foo@bar"),
            ),
            (
                "foo\\20bar@example.com",
                Some("foo\\20bar"),
                "example.com",
                None,
            ),
            (
                "fussball@example.com",
                Some("fussball"),
                "example.com",
                None,
            ),
            ("fußball@example.com", Some("fußball"), "example.com", None),
            ("π@example.com", Some("π"), "example.com", None),
            ("Σ@example.com/foo", Some("σ"), "example.com", Some("foo")),
            ("σ@example.com/foo", Some("σ"), "example.com", Some("foo")),
            ("ς@example.com/foo", Some("ς"), "example.com", Some("foo")),
            ("king@example.com/♚", Some("king"), "example.com", Some("♚")),
            ("example.com", None, "example.com", None),
            ("example.com/foobar", None, "example.com", Some("foobar")),
            (
                "a.example.com/b@example.net",
                None,
                "a.example.com",
                Some("b@example.net"),
            ),
        ];
        for &(input, node, domain, resource) in cases {
            let expected = (
                node.map(str::to_owned),
                domain.to_owned(),
                resource.map(str::to_owned),
            );
            assert_eq!(parts(input), expected, "{input}");
        }
    }

    #[test]
    fn rfc7622_invalid_examples_are_rejected() {
        let cases: &[(&str, JidError)] = &[
            ("\"juliet\"@example.com", JidError::InvalidLocalpart),
            ("foo bar@example.com", JidError::InvalidLocalpart),
            ("@example.com/", JidError::EmptyLocalpart),
            ("henriⅣ@example.com", JidError::InvalidLocalpart),
            ("♚@example.com", JidError::InvalidLocalpart),
            ("juliet@", JidError::EmptyDomain),
            ("/foobar", JidError::EmptyDomain),
        ];
        for (input, error) in cases {
            assert_eq!(Jid::parse(input).as_ref(), Err(error), "{input}");
        }
    }

    #[test]
    fn leading_space_in_resource_is_accepted_because_opaquestring_allows_it() {
        // RFC 7622 §3.5 lists this as invalid, but no rule of OpaqueString forbids it.
        assert_eq!(parts("juliet@example.com/ foo").2.as_deref(), Some(" foo"));
    }

    #[test]
    fn localpart_and_domain_are_case_mapped_resource_is_not() {
        let jid = Jid::parse("Juliet@Example.COM/Balcony").unwrap();
        assert_eq!(jid.as_str(), "juliet@example.com/Balcony");
        assert_eq!(
            Jid::parse("Juliet@Example.com").unwrap().to_string(),
            "juliet@example.com"
        );
    }

    #[test]
    fn full_width_characters_are_mapped() {
        let jid = Jid::parse("ｊｕｌｉｅｔ@ｅｘａｍｐｌｅ.com").unwrap();
        assert_eq!(jid.as_str(), "juliet@example.com");
    }

    #[test]
    fn compatibility_characters_are_rejected_in_localpart() {
        assert_eq!(Jid::parse("ſ@example.com"), Err(JidError::InvalidLocalpart));
    }

    #[test]
    fn forbidden_localpart_characters_are_rejected() {
        for c in ['"', '&', '\'', ':', '<', '>'] {
            let input = format!("a{c}b@example.com");
            assert_eq!(
                Jid::parse(&input),
                Err(JidError::InvalidLocalpart),
                "{input}"
            );
        }
        // A full-width '@' maps to '@' and is therefore forbidden as well.
        assert_eq!(prepare_localpart("a＠b"), Err(JidError::InvalidLocalpart));
        assert_eq!(
            Jid::parse("juliet@@example.com"),
            Err(JidError::InvalidDomain)
        );
    }

    #[test]
    fn empty_parts_are_rejected() {
        assert_eq!(Jid::parse("@example.com"), Err(JidError::EmptyLocalpart));
        assert_eq!(Jid::parse("example.com/"), Err(JidError::EmptyResource));
        assert_eq!(Jid::parse("a@/x"), Err(JidError::EmptyDomain));
        assert_eq!(Jid::parse(""), Err(JidError::EmptyDomain));
        assert_eq!(Jid::parse("."), Err(JidError::EmptyDomain));
        assert_eq!(Jid::parse("a..b"), Err(JidError::InvalidDomain));
    }

    #[test]
    fn part_length_limits_are_1023_octets() {
        let max = "a".repeat(1023);
        assert!(Jid::parse(&format!("{max}@example.com/{max}")).is_ok());
        let over = "a".repeat(1024);
        assert_eq!(
            Jid::parse(&format!("{over}@example.com")),
            Err(JidError::LocalpartTooLong)
        );
        assert_eq!(
            Jid::parse(&format!("example.com/{over}")),
            Err(JidError::ResourceTooLong)
        );
        // Two-octet characters count as two.
        let wide = "é".repeat(512);
        assert_eq!(prepare_localpart(&wide), Err(JidError::LocalpartTooLong));
        assert_eq!(prepare_resourcepart(&wide), Err(JidError::ResourceTooLong));

        let label = "a".repeat(63);
        let domain = vec![label.as_str(); 16].join(".");
        assert_eq!(domain.len(), 1023);
        assert_eq!(prepare_domain(&domain).as_deref(), Ok(domain.as_str()));
        assert_eq!(
            prepare_domain(&format!("{domain}.")).as_deref(),
            Ok(domain.as_str())
        );
        assert_eq!(
            prepare_domain(&format!("a.{domain}")),
            Err(JidError::DomainTooLong)
        );
        assert_eq!(
            prepare_domain(&format!("ä.{domain}")),
            Err(JidError::DomainTooLong)
        );
    }

    #[test]
    fn domain_labels_are_limited_to_63_octets() {
        let ok = format!("{}.example", "a".repeat(63));
        assert!(prepare_domain(&ok).is_ok());
        let long = format!("{}.example", "a".repeat(64));
        assert_eq!(prepare_domain(&long), Err(JidError::DomainLabelTooLong));
        // The limit applies to the A-label: 60 'ä' encode to more than 63 octets.
        let unicode = format!("{}.example", "ä".repeat(60));
        assert_eq!(prepare_domain(&unicode), Err(JidError::DomainLabelTooLong));
    }

    #[test]
    fn idn_domains_are_kept_as_lowercase_u_labels() {
        assert_eq!(
            prepare_domain("MÜNCHEN.Example").as_deref(),
            Ok("münchen.example")
        );
        assert_eq!(
            prepare_domain("xn--mnchen-3ya.example").as_deref(),
            Ok("münchen.example")
        );
        assert_eq!(
            prepare_domain("bücher.example").as_deref(),
            Ok("bücher.example")
        );
        assert_eq!(
            prepare_domain("xn--bcher-kva.example").as_deref(),
            Ok("bücher.example")
        );
        assert_eq!(
            prepare_domain("xn--invalid-.example"),
            Err(JidError::InvalidDomain)
        );
        assert_eq!(prepare_domain("-bad.example"), Err(JidError::InvalidDomain));
        assert_eq!(
            prepare_domain("under_score.example"),
            Err(JidError::InvalidDomain)
        );
        assert_eq!(
            prepare_domain("sp ace.example"),
            Err(JidError::InvalidDomain)
        );
    }

    #[test]
    fn one_trailing_dot_is_stripped() {
        assert_eq!(
            Jid::parse("juliet@example.com./r").unwrap().as_str(),
            "juliet@example.com/r"
        );
        assert_eq!(
            Jid::parse("A.Example.NET.").unwrap().as_str(),
            "a.example.net"
        );
        assert_eq!(Jid::parse("example.com.."), Err(JidError::InvalidDomain));
    }

    #[test]
    fn ip_literals_are_accepted() {
        assert_eq!(prepare_domain("127.0.0.1").as_deref(), Ok("127.0.0.1"));
        assert_eq!(prepare_domain("[::1]").as_deref(), Ok("[::1]"));
        assert_eq!(
            prepare_domain("[2001:DB8:0:0::1]").as_deref(),
            Ok("[2001:db8::1]")
        );
        assert_eq!(
            Jid::parse("user@[2001:db8::1]/res").unwrap().domain(),
            "[2001:db8::1]"
        );
        assert_eq!(prepare_domain("[::1"), Err(JidError::InvalidDomain));
        assert_eq!(prepare_domain("[not-an-ip]"), Err(JidError::InvalidDomain));
    }

    #[test]
    fn accessors_and_derived_jids() {
        let jid = Jid::parse("romeo@montague.example/orchard").unwrap();
        assert_eq!(jid.node(), Some("romeo"));
        assert_eq!(jid.domain(), "montague.example");
        assert_eq!(jid.resource(), Some("orchard"));
        assert!(!jid.is_bare());
        let bare = jid.bare();
        assert_eq!(bare, Jid::parse("romeo@montague.example").unwrap());
        assert!(bare.is_bare());
        assert_eq!(bare.resource(), None);
        assert_eq!(jid.domain_jid().as_str(), "montague.example");
        assert_eq!(jid.domain_jid().node(), None);
        let other = bare.with_resource("Ｈall").unwrap();
        assert_eq!(other.as_str(), "romeo@montague.example/Ｈall");
        assert_eq!(bare.with_resource(""), Err(JidError::EmptyResource));
        assert_eq!("romeo@montague.example".parse::<Jid>().unwrap(), bare);
        assert_eq!(format!("{bare:?}"), "Jid(\"romeo@montague.example\")");
        let built = Jid::new(Some("Romeo"), "Montague.Example", Some("orchard")).unwrap();
        assert_eq!(built, jid);
    }

    #[test]
    fn equal_jids_have_equal_strings_whatever_the_input_form() {
        let a = Jid::parse("ΣΑΣ@Example.com/x").unwrap();
        let b = Jid::parse("σασ@ＥＸＡＭＰＬＥ.com./x").unwrap();
        assert_eq!(a.node(), Some("σασ"));
        assert_eq!(a, b);
    }

    #[test]
    fn ascii_fast_paths_agree_with_precis_and_idna() {
        for b in 0x20u8..=0x7e {
            let c = char::from(b);
            let s = format!("a{c}b");
            if is_fast_localpart(&s) {
                let slow =
                    stabilize(s.as_str(), |s| UsernameCaseMapped::enforce(s)).map(Cow::into_owned);
                assert_eq!(slow.as_deref(), Ok(s.as_str()), "localpart {s:?}");
            }
            let slow = OpaqueString::enforce(s.as_str()).map(Cow::into_owned);
            assert_eq!(slow.as_deref(), Ok(s.as_str()), "resourcepart {s:?}");
        }
        for s in [
            "example.com",
            "a-b.example",
            "ab--cd.example",
            "127.0.0.1",
            "010.1.2.3",
            "x.y.z.1",
            "localhost",
        ] {
            assert!(is_fast_domain(s), "{s}");
            let slow = Uts46::new().to_ascii(
                s.as_bytes(),
                AsciiDenyList::STD3,
                Hyphens::CheckFirstLast,
                DnsLength::Ignore,
            );
            assert_eq!(slow.ok().as_deref(), Some(s), "domain {s:?}");
        }
        for s in [
            "Example.com",
            "xn--bcher-kva.example",
            "-a.example",
            "a_b",
            "a..b",
        ] {
            assert!(!is_fast_domain(s), "{s}");
        }
    }
}

//! Where to connect for a remote domain (server-to-server).
//!
//! RFC 6120 §3.2 resolves `_xmpp-server._tcp.<domain>` SRV records and falls
//! back to the domain itself on port 5269 when none are published.  XEP-0368
//! adds `_xmpps-server._tcp.<domain>` for direct TLS and asks that both record
//! sets be ordered as one, so that the remote operator's priorities and
//! weights decide between STARTTLS and direct TLS.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::rdata::SRV;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use tracing::debug;

/// Port of the fallback connection when a domain publishes no SRV records
/// (RFC 6120 §3.2.2).
const DEFAULT_SERVER_PORT: u16 = 5269;

/// SRV service for server-to-server connections that start with STARTTLS.
const STARTTLS_SERVICE: &str = "_xmpp-server";

/// SRV service for server-to-server connections that start with TLS (XEP-0368).
const DIRECT_TLS_SERVICE: &str = "_xmpps-server";

/// Remote servers that do not answer within this are treated as unreachable,
/// so one dead nameserver cannot stall outgoing federation for long.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Tries per query; a second one covers a lost UDP datagram.
const LOOKUP_ATTEMPTS: usize = 2;

/// One place to try connecting to a remote server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Hostname (without trailing dot) or IP literal to connect to.
    pub host: String,
    pub port: u16,
    /// Whether TLS starts right after the TCP handshake (XEP-0368) instead of
    /// being negotiated with STARTTLS.
    pub direct_tls: bool,
}

/// DNS lookups for outgoing server-to-server connections.
#[derive(Clone)]
pub struct Resolver {
    dns: TokioResolver,
}

impl Resolver {
    /// Uses the host's nameservers, as configured in /etc/resolv.conf, so
    /// that federation follows the operator's DNS setup.
    pub fn from_system() -> io::Result<Resolver> {
        let mut builder = TokioResolver::builder_tokio().map_err(io::Error::other)?;
        limit_waiting(builder.options_mut());
        Ok(Resolver {
            dns: builder.build(),
        })
    }

    /// Asks only the nameserver at `addr` over UDP and ignores /etc/hosts, so
    /// that tests see exactly what their own nameserver answers.
    pub fn with_nameserver(addr: SocketAddr) -> Resolver {
        let config = ResolverConfig::from_parts(
            None,
            Vec::new(),
            vec![NameServerConfig::new(addr, Protocol::Udp)],
        );
        let mut builder =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
        let options = builder.options_mut();
        limit_waiting(options);
        options.use_hosts_file = ResolveHosts::Never;
        Resolver {
            dns: builder.build(),
        }
    }

    /// Lists the places to try for `domain`, best first.
    ///
    /// Both SRV services are queried at once and ordered together
    /// (XEP-0368).  Only when neither publishes any record does the domain
    /// itself on port 5269 become the single endpoint (RFC 6120 §3.2.2); a
    /// service whose only target is "." is declared unavailable and must not
    /// trigger that fallback.  An IP literal has no SRV records to look up.
    pub async fn endpoints(&self, domain: &str) -> Vec<Endpoint> {
        let domain = domain.trim_end_matches('.');
        let fallback = Endpoint {
            host: domain.to_owned(),
            port: DEFAULT_SERVER_PORT,
            direct_tls: false,
        };
        if ip_literal(domain).is_some() {
            return vec![fallback];
        }
        let (direct_tls, starttls) = tokio::join!(
            self.service_records(DIRECT_TLS_SERVICE, domain, true),
            self.service_records(STARTTLS_SERVICE, domain, false),
        );
        if direct_tls.is_none() && starttls.is_none() {
            debug!(domain, "no SRV records, falling back to the domain itself");
            return vec![fallback];
        }
        let records = direct_tls.into_iter().chain(starttls).flatten().collect();
        order_by_priority_and_weight(records, cheap_random)
    }

    /// Lists the socket addresses for one endpoint.
    ///
    /// A and AAAA are queried at once and the families are interleaved,
    /// IPv6 first (in the spirit of RFC 8305 §4): a host whose IPv6 is broken
    /// costs one failed attempt before IPv4 is tried, not all of them.  An IP
    /// literal (IPv6 optionally in brackets, as in JIDs) is used as is.
    pub async fn addresses(&self, endpoint: &Endpoint) -> Vec<SocketAddr> {
        if let Some(ip) = ip_literal(&endpoint.host) {
            return vec![SocketAddr::new(ip, endpoint.port)];
        }
        let Some(name) = absolute_name(&endpoint.host) else {
            return Vec::new();
        };
        let (ipv6, ipv4) = tokio::join!(
            self.dns.ipv6_lookup(name.clone()),
            self.dns.ipv4_lookup(name.clone()),
        );
        let ipv6: Vec<IpAddr> = found(ipv6, &name, "AAAA")
            .map(|lookup| lookup.iter().map(|aaaa| IpAddr::V6(aaaa.0)).collect())
            .unwrap_or_default();
        let ipv4: Vec<IpAddr> = found(ipv4, &name, "A")
            .map(|lookup| lookup.iter().map(|a| IpAddr::V4(a.0)).collect())
            .unwrap_or_default();
        interleave(ipv6, ipv4)
            .into_iter()
            .map(|ip| SocketAddr::new(ip, endpoint.port))
            .collect()
    }

    /// Returns `None` when the service publishes no SRV records at all, so
    /// the caller can tell "nothing published" (fallback allowed) from
    /// "published as unavailable" (an empty list, no fallback).
    async fn service_records(
        &self,
        service: &str,
        domain: &str,
        direct_tls: bool,
    ) -> Option<Vec<(u16, u16, Endpoint)>> {
        let name = absolute_name(&format!("{service}._tcp.{domain}"))?;
        let lookup = found(self.dns.srv_lookup(name.clone()).await, &name, "SRV")?;
        let records: Vec<&SRV> = lookup.iter().collect();
        if records.is_empty() {
            return None;
        }
        Some(
            records
                .into_iter()
                .filter(|srv| !srv.target().is_root())
                .map(|srv| {
                    let endpoint = Endpoint {
                        host: srv.target().to_ascii().trim_end_matches('.').to_owned(),
                        port: srv.port(),
                        direct_tls,
                    };
                    (srv.priority(), srv.weight(), endpoint)
                })
                .collect(),
        )
    }
}

/// Orders SRV targets as RFC 2782 prescribes: ascending priority, and within
/// one priority a weighted random draw, repeated until none are left, so that
/// load spreads over targets in proportion to their weights.
///
/// Zero-weight records are put first in each draw, which gives them a small
/// but non-zero chance (the draw landing on exactly 0) as the RFC requires.
/// `random(n)` must return a value in `0..=n`; larger values are clamped.
/// Taking it as a parameter keeps the algorithm deterministic under test.
pub fn order_by_priority_and_weight<T>(
    mut records: Vec<(u16, u16, T)>,
    mut random: impl FnMut(u32) -> u32,
) -> Vec<T> {
    records.sort_by_key(|(priority, _, _)| *priority);
    let mut ordered = Vec::with_capacity(records.len());
    let mut remaining = records.into_iter().peekable();
    while let Some((priority, _, _)) = remaining.peek() {
        let priority = *priority;
        let mut same_priority: Vec<(u16, T)> = Vec::new();
        while let Some((_, weight, item)) = remaining.next_if(|(p, _, _)| *p == priority) {
            same_priority.push((weight, item));
        }
        same_priority.sort_by_key(|(weight, _)| *weight != 0);
        while !same_priority.is_empty() {
            let total = same_priority.iter().fold(0u32, |sum, (weight, _)| {
                sum.saturating_add(u32::from(*weight))
            });
            let draw = random(total).min(total);
            let mut running_sum = 0u32;
            let chosen = same_priority
                .iter()
                .position(|(weight, _)| {
                    running_sum = running_sum.saturating_add(u32::from(*weight));
                    running_sum >= draw
                })
                .unwrap_or(same_priority.len() - 1);
            ordered.push(same_priority.remove(chosen).1);
        }
    }
    ordered
}

/// Load spreading needs no cryptographic randomness: std's randomly keyed
/// SipHash, freshly keyed per call, is unpredictable enough and costs no
/// extra crate.
fn cheap_random(max: u32) -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(max);
    let value = hasher.finish() % (u64::from(max) + 1);
    u32::try_from(value).unwrap_or(max)
}

/// Shared by every constructor so no lookup can keep a connection attempt
/// waiting for long, whatever resolv.conf says.
fn limit_waiting(options: &mut ResolverOpts) {
    options.timeout = LOOKUP_TIMEOUT;
    options.attempts = LOOKUP_ATTEMPTS;
}

/// Recognises IP addresses, including the bracketed IPv6 form used in JID
/// domainparts, which must be connected to directly rather than resolved.
fn ip_literal(host: &str) -> Option<IpAddr> {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host);
    unbracketed.parse().ok()
}

/// Makes the name fully qualified so that resolv.conf search domains are
/// never appended to a remote server's name; internationalised labels are
/// converted to their ASCII form.
fn absolute_name(host: &str) -> Option<Name> {
    let dotted = format!("{}.", host.trim_end_matches('.'));
    Name::from_utf8(&dotted)
        .map_err(|error| debug!(host, %error, "not a valid DNS name"))
        .ok()
}

/// Treats every failure as "no records": a domain that cannot be resolved is
/// handled like one that publishes nothing, and the reason is only logged.
fn found<L>(result: Result<L, ResolveError>, name: &Name, record_type: &str) -> Option<L> {
    match result {
        Ok(lookup) => Some(lookup),
        Err(error) if error.is_no_records_found() => {
            debug!(%name, record_type, "no records");
            None
        }
        Err(error) => {
            debug!(%name, record_type, %error, "lookup failed");
            None
        }
    }
}

/// Alternates the two lists, starting with `first`, and appends what is left
/// of the longer one.
fn interleave(first: Vec<IpAddr>, second: Vec<IpAddr>) -> Vec<IpAddr> {
    let mut mixed = Vec::with_capacity(first.len() + second.len());
    let mut first = first.into_iter();
    let mut second = second.into_iter();
    loop {
        match (first.next(), second.next()) {
            (None, None) => return mixed,
            (one, other) => mixed.extend(one.into_iter().chain(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use tokio::net::UdpSocket;

    const TYPE_A: u16 = 1;
    const TYPE_AAAA: u16 = 28;
    const TYPE_SRV: u16 = 33;
    const CLASS_IN: u16 = 1;
    const RCODE_NXDOMAIN: u8 = 3;

    #[test]
    fn lower_priority_comes_first() {
        let records = vec![(20, 0, "c"), (10, 0, "a"), (15, 0, "b")];
        assert_eq!(
            order_by_priority_and_weight(records, |_| 0),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn priority_outranks_weight() {
        let records = vec![(2, 65535, "heavy"), (1, 1, "light")];
        assert_eq!(
            order_by_priority_and_weight(records, |max| max),
            vec!["light", "heavy"]
        );
    }

    #[test]
    fn first_pick_is_proportional_to_weight() {
        let mut light_first = 0;
        let mut heavy_first = 0;
        for draw in 0..=40 {
            let mut first_call = true;
            let order =
                order_by_priority_and_weight(vec![(1, 10, "light"), (1, 30, "heavy")], |max| {
                    if std::mem::take(&mut first_call) {
                        assert_eq!(max, 40, "draw is over the sum of weights");
                        draw
                    } else {
                        0
                    }
                });
            assert_eq!(order.len(), 2);
            match order[0] {
                "light" => light_first += 1,
                _ => heavy_first += 1,
            }
        }
        // Running sums are 10 and 40: draws 0..=10 pick "light", 11..=40 "heavy".
        assert_eq!((light_first, heavy_first), (11, 30));
    }

    #[test]
    fn zero_weight_is_chosen_only_on_a_zero_draw() {
        let records = || vec![(1, 5, "weighted"), (1, 0, "zero")];
        assert_eq!(
            order_by_priority_and_weight(records(), |_| 0),
            vec!["zero", "weighted"]
        );
        assert_eq!(
            order_by_priority_and_weight(records(), |max| max),
            vec!["weighted", "zero"]
        );
        assert_eq!(
            order_by_priority_and_weight(records(), |max| max.min(1)),
            vec!["weighted", "zero"]
        );
    }

    #[test]
    fn all_zero_weights_keep_their_order() {
        let records = vec![(1, 0, "x"), (1, 0, "y"), (1, 0, "z")];
        assert_eq!(
            order_by_priority_and_weight(records, |max| max),
            vec!["x", "y", "z"]
        );
    }

    #[test]
    fn single_record_and_empty_input() {
        assert_eq!(
            order_by_priority_and_weight(vec![(7, 3, "only")], |max| max),
            vec!["only"]
        );
        assert!(order_by_priority_and_weight(Vec::<(u16, u16, ())>::new(), |max| max).is_empty());
    }

    #[test]
    fn out_of_range_draw_is_clamped() {
        let records = vec![(1, 1, "a"), (1, 1, "b")];
        assert_eq!(
            order_by_priority_and_weight(records, |_| u32::MAX),
            vec!["b", "a"]
        );
    }

    #[test]
    fn cheap_random_varies_within_range() {
        assert_eq!(cheap_random(0), 0);
        let small: Vec<u32> = (0..100).map(|_| cheap_random(3)).collect();
        assert!(small.iter().all(|value| *value <= 3));
        assert!(small.iter().any(|value| *value != small[0]), "draws vary");
        let large: Vec<u32> = (0..20).map(|_| cheap_random(u32::MAX)).collect();
        assert!(large.iter().any(|value| *value != large[0]), "draws vary");
    }

    #[test]
    fn interleave_alternates_and_keeps_the_rest() {
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(interleave(vec![v6], vec![a, b]), vec![v6, a, b]);
        assert_eq!(interleave(vec![], vec![a, b]), vec![a, b]);
    }

    /// What the fake nameserver knows about one name.
    enum FakeRecord {
        Srv {
            priority: u16,
            weight: u16,
            port: u16,
            target: &'static str,
        },
        A(Ipv4Addr),
        Aaaa(Ipv6Addr),
    }

    impl FakeRecord {
        fn record_type(&self) -> u16 {
            match self {
                FakeRecord::Srv { .. } => TYPE_SRV,
                FakeRecord::A(_) => TYPE_A,
                FakeRecord::Aaaa(_) => TYPE_AAAA,
            }
        }

        fn rdata(&self) -> Vec<u8> {
            match self {
                FakeRecord::Srv {
                    priority,
                    weight,
                    port,
                    target,
                } => {
                    let mut rdata = Vec::new();
                    rdata.extend_from_slice(&priority.to_be_bytes());
                    rdata.extend_from_slice(&weight.to_be_bytes());
                    rdata.extend_from_slice(&port.to_be_bytes());
                    rdata.extend_from_slice(&encode_name(target));
                    rdata
                }
                FakeRecord::A(ip) => ip.octets().to_vec(),
                FakeRecord::Aaaa(ip) => ip.octets().to_vec(),
            }
        }
    }

    fn srv(priority: u16, weight: u16, port: u16, target: &'static str) -> FakeRecord {
        FakeRecord::Srv {
            priority,
            weight,
            port,
            target,
        }
    }

    /// Encodes a dotted name without compression; "." is the root.
    fn encode_name(name: &str) -> Vec<u8> {
        let mut encoded = Vec::new();
        for label in name.split('.').filter(|label| !label.is_empty()) {
            encoded.push(u8::try_from(label.len()).expect("label fits a length byte"));
            encoded.extend_from_slice(label.as_bytes());
        }
        encoded.push(0);
        encoded
    }

    /// Reads an uncompressed name at `start`; returns it lower-cased without
    /// the trailing dot, and the offset just after it.
    fn parse_name(message: &[u8], start: usize) -> Option<(String, usize)> {
        let mut labels = Vec::new();
        let mut at = start;
        loop {
            let len = usize::from(*message.get(at)?);
            at += 1;
            if len == 0 {
                return Some((labels.join("."), at));
            }
            let label = std::str::from_utf8(message.get(at..at + len)?).ok()?;
            labels.push(label.to_ascii_lowercase());
            at += len;
        }
    }

    /// Builds the reply to one query: the matching records, an empty NOERROR
    /// answer for a known name without that type, NXDOMAIN for unknown names.
    fn reply(zone: &[(&str, FakeRecord)], query: &[u8]) -> Option<Vec<u8>> {
        let header = query.get(..12)?;
        let (name, name_end) = parse_name(query, 12)?;
        let question = query.get(12..name_end + 4)?;
        let owner = query.get(12..name_end)?;
        let query_type = u16::from_be_bytes([query[name_end], query[name_end + 1]]);
        let known = zone.iter().any(|(owner, _)| *owner == name);
        let answers: Vec<&FakeRecord> = zone
            .iter()
            .filter(|(owner, record)| *owner == name && record.record_type() == query_type)
            .map(|(_, record)| record)
            .collect();

        let mut message = Vec::new();
        message.extend_from_slice(&header[..2]);
        let recursion_desired = header[2] & 0x01;
        message.push(0x84 | recursion_desired); // response, authoritative
        message.push(0x80 | if known { 0 } else { RCODE_NXDOMAIN }); // recursion available
        message.extend_from_slice(&1u16.to_be_bytes());
        message.extend_from_slice(&u16::try_from(answers.len()).ok()?.to_be_bytes());
        message.extend_from_slice(&[0, 0, 0, 0]);
        message.extend_from_slice(question);
        for record in answers {
            let rdata = record.rdata();
            message.extend_from_slice(owner);
            message.extend_from_slice(&record.record_type().to_be_bytes());
            message.extend_from_slice(&CLASS_IN.to_be_bytes());
            message.extend_from_slice(&60u32.to_be_bytes());
            message.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
            message.extend_from_slice(&rdata);
        }
        Some(message)
    }

    /// Serves `zone` on a fresh UDP port and returns a resolver that asks it.
    async fn resolver_for(zone: Vec<(&'static str, FakeRecord)>) -> Resolver {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind fake nameserver");
        let addr = socket.local_addr().expect("fake nameserver address");
        tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
                if let Some(message) = reply(&zone, &buffer[..len]) {
                    socket
                        .send_to(&message, peer)
                        .await
                        .expect("send fake answer");
                }
            }
        });
        Resolver::with_nameserver(addr)
    }

    fn endpoint(host: &str, port: u16, direct_tls: bool) -> Endpoint {
        Endpoint {
            host: host.to_owned(),
            port,
            direct_tls,
        }
    }

    #[tokio::test]
    async fn both_services_are_merged_by_priority() {
        let resolver = resolver_for(vec![
            (
                "_xmpps-server._tcp.example.org",
                srv(5, 0, 443, "tls.example.org."),
            ),
            (
                "_xmpp-server._tcp.example.org",
                srv(10, 0, 5269, "backup.example.org."),
            ),
            (
                "_xmpp-server._tcp.example.org",
                srv(1, 0, 5269, "primary.example.org."),
            ),
        ])
        .await;
        assert_eq!(
            resolver.endpoints("example.org").await,
            vec![
                endpoint("primary.example.org", 5269, false),
                endpoint("tls.example.org", 443, true),
                endpoint("backup.example.org", 5269, false),
            ]
        );
    }

    #[tokio::test]
    async fn only_starttls_service() {
        let resolver = resolver_for(vec![(
            "_xmpp-server._tcp.example.org",
            srv(0, 5, 5270, "xmpp.example.org."),
        )])
        .await;
        assert_eq!(
            resolver.endpoints("example.org").await,
            vec![endpoint("xmpp.example.org", 5270, false)]
        );
    }

    #[tokio::test]
    async fn no_records_fall_back_to_the_domain() {
        let resolver =
            resolver_for(vec![("example.org", FakeRecord::A(Ipv4Addr::LOCALHOST))]).await;
        let fallback = vec![endpoint("example.org", 5269, false)];
        assert_eq!(resolver.endpoints("example.org").await, fallback);
        assert_eq!(resolver.endpoints("example.org.").await, fallback);
        assert_eq!(
            resolver.endpoints("unknown.example").await,
            vec![endpoint("unknown.example", 5269, false)]
        );
    }

    #[tokio::test]
    async fn dot_target_disables_only_that_service() {
        let resolver = resolver_for(vec![
            ("_xmpps-server._tcp.example.org", srv(0, 0, 0, ".")),
            (
                "_xmpp-server._tcp.example.org",
                srv(0, 0, 5269, "xmpp.example.org."),
            ),
        ])
        .await;
        assert_eq!(
            resolver.endpoints("example.org").await,
            vec![endpoint("xmpp.example.org", 5269, false)]
        );
    }

    #[tokio::test]
    async fn dot_target_forbids_the_fallback() {
        let resolver =
            resolver_for(vec![("_xmpp-server._tcp.example.org", srv(0, 0, 0, "."))]).await;
        assert_eq!(resolver.endpoints("example.org").await, vec![]);
    }

    #[tokio::test]
    async fn ip_literal_domain_is_not_looked_up() {
        let resolver = resolver_for(vec![(
            "_xmpp-server._tcp.192.0.2.7",
            srv(0, 0, 5270, "elsewhere.example."),
        )])
        .await;
        assert_eq!(
            resolver.endpoints("192.0.2.7").await,
            vec![endpoint("192.0.2.7", 5269, false)]
        );
    }

    #[tokio::test]
    async fn addresses_of_a_host_with_a_records() {
        let resolver = resolver_for(vec![
            (
                "xmpp.example.org",
                FakeRecord::A(Ipv4Addr::new(192, 0, 2, 1)),
            ),
            (
                "xmpp.example.org",
                FakeRecord::A(Ipv4Addr::new(192, 0, 2, 2)),
            ),
        ])
        .await;
        let mut addresses = resolver
            .addresses(&endpoint("xmpp.example.org", 5270, false))
            .await;
        addresses.sort();
        assert_eq!(
            addresses,
            vec![
                SocketAddr::from(([192, 0, 2, 1], 5270)),
                SocketAddr::from(([192, 0, 2, 2], 5270)),
            ]
        );
    }

    #[tokio::test]
    async fn addresses_alternate_ipv6_and_ipv4() {
        let ipv6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let resolver = resolver_for(vec![
            (
                "xmpp.example.org",
                FakeRecord::A(Ipv4Addr::new(192, 0, 2, 1)),
            ),
            ("xmpp.example.org", FakeRecord::Aaaa(ipv6)),
        ])
        .await;
        assert_eq!(
            resolver
                .addresses(&endpoint("xmpp.example.org", 5269, false))
                .await,
            vec![
                SocketAddr::from((ipv6, 5269)),
                SocketAddr::from(([192, 0, 2, 1], 5269)),
            ]
        );
    }

    #[tokio::test]
    async fn addresses_of_unknown_host_are_empty() {
        let resolver = resolver_for(Vec::new()).await;
        assert!(resolver
            .addresses(&endpoint("nowhere.example", 5269, false))
            .await
            .is_empty());
    }

    #[tokio::test]
    async fn ip_literal_host_is_used_as_is() {
        let resolver = resolver_for(vec![(
            "192.0.2.7",
            FakeRecord::A(Ipv4Addr::new(203, 0, 113, 1)),
        )])
        .await;
        assert_eq!(
            resolver.addresses(&endpoint("192.0.2.7", 5269, true)).await,
            vec![SocketAddr::from(([192, 0, 2, 7], 5269))]
        );
        let ipv6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
        for host in ["2001:db8::7", "[2001:db8::7]"] {
            assert_eq!(
                resolver.addresses(&endpoint(host, 5222, false)).await,
                vec![SocketAddr::from((ipv6, 5222))]
            );
        }
    }
}

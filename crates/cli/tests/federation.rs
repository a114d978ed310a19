//! Two Starling servers federating on loopback, each on its own 127.0.0.x address
//! with static host overrides: messages, IQs and the whole subscription story
//! across them, authenticated once by certificates from a test CA and once by
//! dialback over self-signed certificates; the same with Prosody and ejabberd in
//! both directions; and what happens when the peer is down, silent or hostile.

mod common;
#[path = "common/ejabberd.rs"]
mod ejabberd;
#[path = "common/pki.rs"]
mod pki;
#[path = "common/prosody.rs"]
mod prosody;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use common::*;
use pki::TestCa;

/// How the two servers prove who they are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// Certificates from a CA both trust; dialback disabled.
    Certificates,
    /// Self-signed certificates nobody trusts; dialback proves the domains.
    Dialback,
}

struct Peer<'a> {
    domain: &'a str,
    ip: Ipv4Addr,
}

/// Start a server for `me` that reaches each of `others` at its address, port 5269.
fn start_federated(
    me: &Peer,
    others: &[&Peer],
    auth: Auth,
    ca: Option<&TestCa>,
    extra_s2s: &str,
) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut tls = String::new();
    let mut trust = None;
    let mut s2s = format!(
        "[s2s]\nlisten = [\"{}:5269\"]\nconnect_timeout_secs = 5\n{extra_s2s}\n",
        me.ip
    );
    if let (Auth::Certificates, Some(ca)) = (auth, ca) {
        let issued = ca.issue(&[me.domain]);
        let (cert, key) = pki::write_pem(dir.path(), "server", &issued);
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.cert_pem()).expect("CA written");
        tls = format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        );
        s2s.push_str(&format!(
            "authentication = \"certificates\"\nca_files = [\"{}\"]\n",
            ca_path.display()
        ));
        trust = Some(ca_path);
    }
    s2s.push_str("[s2s.hosts]\n");
    for other in others {
        s2s.push_str(&format!("\"{}\" = \"{}:5269\"\n", other.domain, other.ip));
    }
    let config_path = dir.path().join("starling.toml");
    let config = format!(
        "domains = [\"{}\"]\ndata_dir = \"{}\"\n\
         [c2s]\nlisten = [\"127.0.0.1:0\"]\ndirect_tls_listen = [\"127.0.0.1:0\"]\n\
         [auth]\nfailure_delay_ms = 10\n{tls}{s2s}",
        me.domain,
        dir.path().join("data").display()
    );
    std::fs::write(&config_path, config).expect("config written");
    let mut server = TestServer::start_with(dir, config_path);
    server.trust = trust;
    server
}

async fn login(server: &TestServer, user: &str, domain: &str) -> Client {
    let mut client = Client::login_with(
        server,
        user,
        domain,
        "desk",
        starling_proto::sasl::Mechanism::ScramSha256,
    )
    .await;
    client.go_available().await;
    client
}

fn is_message_from(element: &starling_xml::Element, from: &str) -> bool {
    element.name == "message" && element.attr("from").is_some_and(|f| f.starts_with(from))
}

fn is_presence(element: &starling_xml::Element, from: &str, kind: Option<&str>) -> bool {
    element.name == "presence"
        && element.attr("type") == kind
        && element
            .attr("from")
            .is_some_and(|f| f.split('/').next() == Some(from))
}

fn roster_subscription(query: &starling_xml::Element, contact: &str) -> Option<String> {
    query
        .elements()
        .find(|item| item.attr("jid") == Some(contact))
        .and_then(|item| item.attr("subscription").map(str::to_string))
}

/// The story RFC 6121 tells, across two servers: chat, an IQ each way, mutual
/// subscription, then presence again after the remote server restarts.
async fn federation_story(auth: Auth, a_ip: Ipv4Addr, b_ip: Ipv4Addr) {
    let ca = TestCa::new();
    let a = Peer {
        domain: "capulet.test",
        ip: a_ip,
    };
    let b = Peer {
        domain: "montague.test",
        ip: b_ip,
    };
    let server_a = start_federated(&a, &[&b], auth, Some(&ca), "");
    let server_b = start_federated(&b, &[&a], auth, Some(&ca), "");
    server_a.adduser("juliet@capulet.test");
    server_b.adduser("romeo@montague.test");
    let mut juliet = login(&server_a, "juliet", "capulet.test").await;
    let mut romeo = login(&server_b, "romeo", "montague.test").await;

    juliet
        .send("<message to='romeo@montague.test' type='chat' id='m1'><body>Wherefore art thou?</body></message>")
        .await;
    let message = romeo
        .wait_for(|e| is_message_from(e, "juliet@capulet.test/desk"))
        .await;
    assert_eq!(
        message
            .child("body", CLIENT_NS)
            .map(starling_xml::Element::text),
        Some("Wherefore art thou?".into())
    );

    // An IQ answered by the remote server itself, and one answered by a remote client.
    let pong = romeo
        .expect_result(
            "<iq type='get' to='capulet.test' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>",
            "p1",
        )
        .await;
    assert_eq!(pong.attr("from"), Some("capulet.test"));
    romeo
        .send("<iq type='get' to='juliet@capulet.test/desk' id='q1'><query xmlns='urn:example:question'/></iq>")
        .await;
    let question = juliet.wait_for(|e| e.attr("id") == Some("q1")).await;
    assert_eq!(question.attr("from"), Some("romeo@montague.test/desk"));
    juliet
        .send("<iq type='result' to='romeo@montague.test/desk' id='q1'/>")
        .await;
    let answer = romeo.wait_for(|e| e.attr("id") == Some("q1")).await;
    assert_eq!(answer.attr("type"), Some("result"));
    assert_eq!(answer.attr("from"), Some("juliet@capulet.test/desk"));

    // Juliet asks, Romeo approves and asks back, Juliet approves.
    juliet
        .send("<presence type='subscribe' to='romeo@montague.test'/>")
        .await;
    romeo
        .wait_for(|e| is_presence(e, "juliet@capulet.test", Some("subscribe")))
        .await;
    romeo
        .send("<presence type='subscribed' to='juliet@capulet.test'/>")
        .await;
    juliet
        .wait_for(|e| is_presence(e, "romeo@montague.test", None))
        .await;
    romeo
        .send("<presence type='subscribe' to='juliet@capulet.test'/>")
        .await;
    juliet
        .wait_for(|e| is_presence(e, "romeo@montague.test", Some("subscribe")))
        .await;
    juliet
        .send("<presence type='subscribed' to='romeo@montague.test'/>")
        .await;
    romeo
        .wait_for(|e| is_presence(e, "juliet@capulet.test", None))
        .await;
    assert_eq!(
        roster_subscription(&juliet.roster().await, "romeo@montague.test").as_deref(),
        Some("both")
    );
    assert_eq!(
        roster_subscription(&romeo.roster().await, "juliet@capulet.test").as_deref(),
        Some("both")
    );

    // Romeo's server restarts: his going offline, his return, and the probe of his
    // contact all cross the federation again.
    drop(romeo);
    juliet
        .wait_for(|e| is_presence(e, "romeo@montague.test", Some("unavailable")))
        .await;
    let server_b = server_b.restart_after_sigterm();
    let mut romeo = login(&server_b, "romeo", "montague.test").await;
    romeo
        .wait_for(|e| is_presence(e, "juliet@capulet.test", None))
        .await;
    juliet
        .wait_for(|e| is_presence(e, "romeo@montague.test", None))
        .await;
    assert!(
        server_a.log().contains("authenticated"),
        "{}",
        server_a.log()
    );
    let method = match auth {
        Auth::Certificates => "Certificate",
        Auth::Dialback => "Dialback",
    };
    assert!(
        server_b.log().contains(&format!("method={method}")),
        "{}",
        server_b.log()
    );
}

#[tokio::test]
async fn servers_with_certificates_from_a_trusted_ca_federate_by_sasl_external() {
    federation_story(
        Auth::Certificates,
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
    )
    .await;
}

#[tokio::test]
async fn servers_with_self_signed_certificates_federate_by_dialback() {
    federation_story(
        Auth::Dialback,
        Ipv4Addr::new(127, 0, 0, 4),
        Ipv4Addr::new(127, 0, 0, 5),
    )
    .await;
}

fn server_alone(domain: &str, ip: Ipv4Addr, others: &[&Peer], extra_s2s: &str) -> TestServer {
    let me = Peer { domain, ip };
    start_federated(&me, others, Auth::Dialback, None, extra_s2s)
}

#[tokio::test]
async fn stanzas_for_a_server_that_is_down_bounce_with_remote_server_not_found() {
    let down = Peer {
        domain: "down.test",
        ip: Ipv4Addr::new(127, 0, 0, 7),
    };
    let server = server_alone("up.test", Ipv4Addr::new(127, 0, 0, 6), &[&down], "");
    server.adduser("ann@up.test");
    let mut ann = login(&server, "ann", "up.test").await;
    ann.expect_stanza_error(
        "<message to='bob@down.test' id='d1'><body>anyone?</body></message>",
        "d1",
        "remote-server-not-found",
    )
    .await;
    ann.expect_stanza_error(
        "<iq type='get' to='down.test' id='d2'><ping xmlns='urn:xmpp:ping'/></iq>",
        "d2",
        "remote-server-not-found",
    )
    .await;
    // Presence is dropped, and the session is unharmed.
    ann.send("<presence to='bob@down.test'/>").await;
    assert!(ann.drain().await.is_empty());
}

#[tokio::test]
async fn stanzas_for_a_server_that_never_answers_bounce_with_remote_server_timeout() {
    let silent_ip = Ipv4Addr::new(127, 0, 0, 9);
    let silent = std::net::TcpListener::bind((silent_ip, 5269)).expect("silent peer listens");
    let peer = Peer {
        domain: "silent.test",
        ip: silent_ip,
    };
    let server = server_alone("patient.test", Ipv4Addr::new(127, 0, 0, 8), &[&peer], "");
    server.adduser("ann@patient.test");
    let mut ann = login(&server, "ann", "patient.test").await;
    let error = ann
        .expect_stanza_error(
            "<message to='bob@silent.test' id='t1'><body>hello?</body></message>",
            "t1",
            "remote-server-timeout",
        )
        .await;
    assert_eq!(error.attr("from"), Some("bob@silent.test"));
    drop(silent);
}

/// A raw server-to-server stream from a test peer that speaks for `from`.
async fn raw_peer_stream(
    target: std::net::SocketAddr,
    from: &str,
    to: &str,
    trust: &Path,
) -> Client {
    let mut peer = Client::connect(target).await;
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
         xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
         from='{from}' to='{to}' version='1.0'>"
    );
    peer.send(&header).await;
    peer.next_event().await;
    peer.next_element().await;
    peer.starttls_as(trust, to).await;
    peer.send(&header).await;
    peer.next_event().await;
    let features = peer.next_element().await;
    assert!(
        features
            .child("dialback", "urn:xmpp:features:dialback")
            .is_some(),
        "{features:?}"
    );
    peer
}

fn generated_cert(server: &TestServer) -> PathBuf {
    server.dir.path().join("data").join("tls").join("cert.pem")
}

#[tokio::test]
async fn a_forged_dialback_key_is_refused_and_the_real_server_still_federates() {
    let a = Peer {
        domain: "real.test",
        ip: Ipv4Addr::new(127, 0, 0, 10),
    };
    let b = Peer {
        domain: "target.test",
        ip: Ipv4Addr::new(127, 0, 0, 11),
    };
    let server_a = server_alone(a.domain, a.ip, &[&b], "");
    let server_b = server_alone(b.domain, b.ip, &[&a], "");
    server_a.adduser("ann@real.test");
    server_b.adduser("bob@target.test");
    let mut bob = login(&server_b, "bob", "target.test").await;

    // An impostor claims real.test; the authoritative server (the real one) denies the key.
    let target = server_b.s2s.expect("s2s listener");
    let mut impostor = raw_peer_stream(
        target,
        "real.test",
        "target.test",
        &generated_cert(&server_b),
    )
    .await;
    impostor
        .send("<db:result from='real.test' to='target.test'>00112233445566778899</db:result>")
        .await;
    let answer = impostor.next_element().await;
    assert_eq!(answer.attr("type"), Some("invalid"), "{answer:?}");
    impostor.expect_stream_error("not-authorized").await;

    // The real server is unaffected.
    let mut ann = login(&server_a, "ann", "real.test").await;
    ann.send("<message to='bob@target.test' id='r1'><body>the real one</body></message>")
        .await;
    bob.wait_for(|e| is_message_from(e, "ann@real.test")).await;
}

#[tokio::test]
async fn a_stanza_forging_its_sender_domain_ends_that_stream_only() {
    let ca = TestCa::new();
    let a = Peer {
        domain: "honest.test",
        ip: Ipv4Addr::new(127, 0, 0, 12),
    };
    let b = Peer {
        domain: "victim.test",
        ip: Ipv4Addr::new(127, 0, 0, 13),
    };
    let server_a = start_federated(&a, &[&b], Auth::Certificates, Some(&ca), "");
    let server_b = start_federated(&b, &[&a], Auth::Certificates, Some(&ca), "");
    server_a.adduser("ann@honest.test");
    server_b.adduser("bob@victim.test");
    let mut ann = login(&server_a, "ann", "honest.test").await;
    let mut bob = login(&server_b, "bob", "victim.test").await;
    ann.send("<message to='bob@victim.test' id='h1'><body>before</body></message>")
        .await;
    bob.wait_for(|e| is_message_from(e, "ann@honest.test"))
        .await;

    // A peer with a CA certificate for mallory.test authenticates as mallory.test,
    // then speaks for honest.test.
    let issued = ca.issue(&["mallory.test"]);
    let target = server_b.s2s.expect("s2s listener");
    let mut mallory =
        raw_peer_with_certificate(target, "mallory.test", "victim.test", &ca, &issued).await;
    mallory
        .send("<message from='ann@honest.test' to='bob@victim.test'><body>forged</body></message>")
        .await;
    mallory.expect_stream_error("invalid-from").await;

    // Garbage on another authenticated stream gets not-well-formed.
    let mut garbage =
        raw_peer_with_certificate(target, "mallory.test", "victim.test", &ca, &issued).await;
    garbage.send_bytes_lossy(b"<message><<</>").await;
    garbage.expect_stream_error("not-well-formed").await;

    ann.send("<message to='bob@victim.test' id='h2'><body>after</body></message>")
        .await;
    let after = bob
        .wait_for(|e| is_message_from(e, "ann@honest.test"))
        .await;
    assert_eq!(after.attr("id"), Some("h2"));
    assert!(!bob
        .drain()
        .await
        .iter()
        .any(|e| e.to_xml(CLIENT_NS).contains("forged")));
}

/// A peer that presents a CA-issued certificate for `from` and authenticates with
/// SASL EXTERNAL.
async fn raw_peer_with_certificate(
    target: std::net::SocketAddr,
    from: &str,
    to: &str,
    ca: &TestCa,
    issued: &pki::Issued,
) -> Client {
    let mut peer = Client::connect(target).await;
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
         xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
         from='{from}' to='{to}' version='1.0'>"
    );
    peer.send(&header).await;
    peer.next_event().await;
    peer.next_element().await;
    peer.starttls_with_client_certificate(&ca.cert_pem(), to, &issued.cert_pem, &issued.key_pem)
        .await;
    peer.send(&header).await;
    peer.next_event().await;
    let features = peer.next_element().await;
    assert!(
        features.to_xml(CLIENT_NS).contains("EXTERNAL"),
        "{features:?}"
    );
    peer.send(&format!(
        "<auth xmlns='{SASL_NS}' mechanism='EXTERNAL'>=</auth>"
    ))
    .await;
    let success = peer.next_element().await;
    assert!(success.is("success", SASL_NS), "{success:?}");
    peer.reset_parser();
    peer.send(&header).await;
    peer.next_event().await;
    peer.next_element().await;
    peer
}

#[tokio::test]
async fn each_hosted_domain_presents_its_own_certificate_to_clients_and_servers() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).expect("CA written");
    let (verona_cert, verona_key) =
        pki::write_pem(dir.path(), "verona", &ca.issue(&["verona.test"]));
    let (mantua_cert, mantua_key) =
        pki::write_pem(dir.path(), "mantua", &ca.issue(&["mantua.test"]));
    let padua = Peer {
        domain: "padua.test",
        ip: Ipv4Addr::new(127, 0, 0, 15),
    };
    let config_path = dir.path().join("starling.toml");
    let config = format!(
        "domains = [\"verona.test\", \"mantua.test\"]\ndata_dir = \"{}\"\n\
         [c2s]\nlisten = [\"127.0.0.1:0\"]\ndirect_tls_listen = [\"127.0.0.1:0\"]\n\
         [auth]\nfailure_delay_ms = 10\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\n\
         [tls.certificates]\n\"mantua.test\" = {{ cert = \"{}\", key = \"{}\" }}\n\
         [s2s]\nlisten = [\"127.0.0.14:5269\"]\nauthentication = \"certificates\"\nca_files = [\"{}\"]\n\
         [s2s.hosts]\n\"padua.test\" = \"{}:5269\"\n",
        dir.path().join("data").display(),
        verona_cert.display(),
        verona_key.display(),
        mantua_cert.display(),
        mantua_key.display(),
        ca_path.display(),
        padua.ip,
    );
    std::fs::write(&config_path, config).expect("config written");
    let mut hosts_both = TestServer::start_with(dir, config_path);
    hosts_both.trust = Some(ca_path);
    let both = [
        &Peer {
            domain: "verona.test",
            ip: Ipv4Addr::new(127, 0, 0, 14),
        },
        &Peer {
            domain: "mantua.test",
            ip: Ipv4Addr::new(127, 0, 0, 14),
        },
    ];
    let server_padua = start_federated(&padua, &both, Auth::Certificates, Some(&ca), "");
    hosts_both.adduser("juliet@verona.test");
    hosts_both.adduser("romeo@mantua.test");
    server_padua.adduser("bianca@padua.test");

    // Logging in checks the certificate against each domain's name: SNI picked it.
    let mut juliet = login(&hosts_both, "juliet", "verona.test").await;
    let mut romeo = login(&hosts_both, "romeo", "mantua.test").await;
    let mut bianca = login(&server_padua, "bianca", "padua.test").await;
    for (sender, from) in [
        (&mut juliet, "juliet@verona.test"),
        (&mut romeo, "romeo@mantua.test"),
    ] {
        sender
            .send("<message to='bianca@padua.test'><body>from Verona's server</body></message>")
            .await;
        bianca.wait_for(|e| is_message_from(e, from)).await;
    }
    bianca
        .send("<message to='romeo@mantua.test'><body>back to Mantua</body></message>")
        .await;
    romeo
        .wait_for(|e| is_message_from(e, "bianca@padua.test"))
        .await;
    assert_eq!(
        server_padua
            .log()
            .lines()
            .filter(|l| l.contains("incoming server connection authenticated")
                && l.contains("method=Certificate"))
            .count(),
        2,
        "{}",
        server_padua.log()
    );
}

/// Another implementation's server, started by a test fixture.
trait OtherServer {
    fn domain(&self) -> &str;
    fn c2s_addr(&self) -> std::net::SocketAddr;
    fn dir(&self) -> &Path;
    fn log(&self) -> String;
}

/// The fixtures have the same accessors under the same names.
macro_rules! other_server {
    ($fixture:ty) => {
        impl OtherServer for $fixture {
            fn domain(&self) -> &str {
                <$fixture>::domain(self)
            }
            fn c2s_addr(&self) -> std::net::SocketAddr {
                <$fixture>::c2s_addr(self)
            }
            fn dir(&self) -> &Path {
                <$fixture>::dir(self)
            }
            fn log(&self) -> String {
                <$fixture>::log(self)
            }
        }
    };
}

other_server!(prosody::Prosody);
other_server!(ejabberd::Ejabberd);

/// Log in to the other server: STARTTLS checked against `trust` for its domain,
/// SCRAM-SHA-1 (what both store here), bind, initial presence.
async fn login_to_other(other: &dyn OtherServer, trust: &Path, user: &str) -> Client {
    let domain = other.domain().to_string();
    let mut client = Client::connect(other.c2s_addr()).await;
    client.open_stream(&domain).await;
    client.starttls_as(trust, &domain).await;
    client.open_stream(&domain).await;
    let answer = client
        .authenticate(starling_proto::sasl::Mechanism::ScramSha1, user, PASSWORD)
        .await;
    assert!(answer.is("success", SASL_NS), "{answer:?}");
    client.open_stream(&domain).await;
    let bound = client.bind(Some("desk")).await;
    assert_eq!(bound.attr("type"), Some("result"), "{bound:?}");
    client.send("<presence/>").await;
    client
}

async fn ping(client: &mut Client, to: &str, id: &str) -> starling_xml::Element {
    client
        .send(&format!(
            "<iq type='get' id='{id}' to='{to}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    client.wait_for(|e| e.attr("id") == Some(id)).await
}

/// Which other server, and how it is told to authenticate peers.
struct OtherSetup<'a> {
    auth: Auth,
    ca: &'a TestCa,
    certificate: &'a pki::Issued,
    starling_ip: Ipv4Addr,
    ip: Ipv4Addr,
}

fn start_prosody(setup: &OtherSetup) -> prosody::Prosody {
    let ca_pem = setup.ca.cert_pem();
    prosody::Prosody::start(prosody::ProsodyOptions {
        domain: "prosody.test",
        ip: setup.ip,
        c2s_port: 5222,
        cert: setup.certificate,
        trusted_ca: (setup.auth == Auth::Certificates).then_some(ca_pem.as_str()),
        hosts: &[("starling.test", setup.starling_ip)],
        require_valid_certificates: setup.auth == Auth::Certificates,
        users: &[("romeo", PASSWORD)],
    })
}

fn start_ejabberd(setup: &OtherSetup) -> ejabberd::Ejabberd {
    let ca_pem = setup.ca.cert_pem();
    ejabberd::Ejabberd::start(ejabberd::EjabberdOptions {
        domain: "ejabberd.test",
        ip: setup.ip,
        c2s_port: 5222,
        cert: setup.certificate,
        trusted_ca: (setup.auth == Auth::Certificates).then_some(ca_pem.as_str()),
        hosts: &[("starling.test", setup.starling_ip)],
        require_valid_certificates: setup.auth == Auth::Certificates,
        users: &[("romeo", PASSWORD)],
    })
}

/// Starling and another implementation federate in both directions: a message and
/// a server ping each way, and a subscription from the Starling user approved on
/// the other server.
async fn interop_story<S: OtherServer>(
    auth: Auth,
    domain: &str,
    starling_ip: Ipv4Addr,
    ip: Ipv4Addr,
    start: impl FnOnce(&OtherSetup) -> S,
) {
    let ca = TestCa::new();
    let certificate = match auth {
        Auth::Certificates => ca.issue(&[domain]),
        Auth::Dialback => pki::self_signed(&[domain]),
    };
    let other = start(&OtherSetup {
        auth,
        ca: &ca,
        certificate: &certificate,
        starling_ip,
        ip,
    });
    let trust = other.dir().join("client-trust.pem");
    let trusted = match auth {
        Auth::Certificates => ca.cert_pem(),
        Auth::Dialback => certificate.cert_pem.clone(),
    };
    std::fs::write(&trust, trusted).expect("trust written");
    let starling = start_federated(
        &Peer {
            domain: "starling.test",
            ip: starling_ip,
        },
        &[&Peer { domain, ip }],
        auth,
        Some(&ca),
        "",
    );
    starling.adduser("juliet@starling.test");
    let romeo_jid = format!("romeo@{domain}");
    let mut juliet = login(&starling, "juliet", "starling.test").await;
    let mut romeo = login_to_other(&other, &trust, "romeo").await;
    let context = || format!("Starling:\n{}\n{domain}:\n{}", starling.log(), other.log());

    juliet
        .send(&format!(
            "<message to='{romeo_jid}' type='chat'><body>from Starling</body></message>"
        ))
        .await;
    romeo
        .wait_for(|e| is_message_from(e, "juliet@starling.test/desk"))
        .await;
    romeo
        .send("<message to='juliet@starling.test' type='chat'><body>back</body></message>")
        .await;
    juliet
        .wait_for(|e| is_message_from(e, &format!("{romeo_jid}/desk")))
        .await;
    let pong = ping(&mut juliet, domain, "p-to-other").await;
    assert_eq!(pong.attr("type"), Some("result"), "{pong:?}\n{}", context());
    let pong = ping(&mut romeo, "starling.test", "p-to-starling").await;
    assert_eq!(pong.attr("type"), Some("result"), "{pong:?}\n{}", context());

    juliet
        .send(&format!("<presence type='subscribe' to='{romeo_jid}'/>"))
        .await;
    romeo
        .wait_for(|e| is_presence(e, "juliet@starling.test", Some("subscribe")))
        .await;
    romeo
        .send("<presence type='subscribed' to='juliet@starling.test'/>")
        .await;
    juliet.wait_for(|e| is_presence(e, &romeo_jid, None)).await;
    assert_eq!(
        roster_subscription(&juliet.roster().await, &romeo_jid).as_deref(),
        Some("to")
    );

    let method = match auth {
        Auth::Certificates => "method=Certificate",
        Auth::Dialback => "method=Dialback",
    };
    let log = starling.log();
    let outgoing = log
        .lines()
        .any(|l| l.contains("outgoing server connection ready") && l.contains(method));
    let incoming = log
        .lines()
        .any(|l| l.contains("incoming server connection authenticated") && l.contains(method));
    assert!(outgoing && incoming, "{}", context());
}

#[tokio::test]
async fn starling_and_prosody_federate_both_ways_with_certificates() {
    interop_story(
        Auth::Certificates,
        "prosody.test",
        Ipv4Addr::new(127, 0, 0, 16),
        Ipv4Addr::new(127, 0, 0, 17),
        start_prosody,
    )
    .await;
}

#[tokio::test]
async fn starling_and_prosody_federate_both_ways_with_dialback() {
    interop_story(
        Auth::Dialback,
        "prosody.test",
        Ipv4Addr::new(127, 0, 0, 18),
        Ipv4Addr::new(127, 0, 0, 19),
        start_prosody,
    )
    .await;
}

#[tokio::test]
async fn starling_and_ejabberd_federate_both_ways_with_certificates() {
    interop_story(
        Auth::Certificates,
        "ejabberd.test",
        Ipv4Addr::new(127, 0, 0, 22),
        Ipv4Addr::new(127, 0, 0, 23),
        start_ejabberd,
    )
    .await;
}

#[tokio::test]
async fn starling_and_ejabberd_federate_both_ways_with_dialback() {
    interop_story(
        Auth::Dialback,
        "ejabberd.test",
        Ipv4Addr::new(127, 0, 0, 24),
        Ipv4Addr::new(127, 0, 0, 25),
        start_ejabberd,
    )
    .await;
}

/// A DNS server the test controls (tests/interop/fake_dns.py), killed on drop.
struct FakeDns {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl FakeDns {
    fn start(table: &str) -> FakeDns {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/interop/fake_dns.py"
        );
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg(table)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("fake DNS starts");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("fake DNS prints its port");
        let port: u16 = line.trim().parse().expect("a port");
        FakeDns {
            child,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_server_found_through_srv_records_is_reached_over_direct_tls_first() {
    let seeker = Peer {
        domain: "seeker.test",
        ip: Ipv4Addr::new(127, 0, 0, 20),
    };
    let found = Peer {
        domain: "found.test",
        ip: Ipv4Addr::new(127, 0, 0, 21),
    };
    // Direct TLS (XEP-0368) has the better priority; STARTTLS is the fallback.
    let dns = FakeDns::start(&format!(
        r#"{{"SRV": {{"_xmpps-server._tcp.found.test": [[0, 0, 5270, "xmpp.found.test"]],
                     "_xmpp-server._tcp.found.test": [[10, 0, 5269, "xmpp.found.test"]]}},
            "A": {{"xmpp.found.test": "{}"}}}}"#,
        found.ip
    ));
    let server_found = start_federated(
        &found,
        &[&seeker],
        Auth::Dialback,
        None,
        &format!("direct_tls_listen = [\"{}:5270\"]", found.ip),
    );
    let server_seeker = start_federated(
        &seeker,
        &[],
        Auth::Dialback,
        None,
        &format!("nameserver = \"{}\"", dns.addr),
    );
    server_seeker.adduser("ann@seeker.test");
    server_found.adduser("bob@found.test");
    let mut ann = login(&server_seeker, "ann", "seeker.test").await;
    let mut bob = login(&server_found, "bob", "found.test").await;
    ann.send("<message to='bob@found.test'><body>found you</body></message>")
        .await;
    bob.wait_for(|e| is_message_from(e, "ann@seeker.test"))
        .await;
    bob.send("<message to='ann@seeker.test'><body>indeed</body></message>")
        .await;
    ann.wait_for(|e| is_message_from(e, "bob@found.test")).await;
    let seeker_log = server_seeker.log();
    assert!(
        seeker_log
            .lines()
            .any(|l| l.contains("outgoing server connection ready")
                && l.contains("remote=found.test")
                && l.contains("direct_tls=true")),
        "{seeker_log}"
    );
    let found_log = server_found.log();
    assert!(
        found_log
            .lines()
            .any(|l| l.contains("incoming server connection authenticated")
                && l.contains("remote=seeker.test")
                && l.contains("direct_tls=true")),
        "{found_log}"
    );
}

//! `starling export` and `starling import` (XEP-0227) against real databases: a
//! round trip from SQLite through a file into PostgreSQL and out again, files
//! exported by Prosody, and broken files that must import nothing.

mod common;

use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use starling_proto::sasl::Mechanism;

const VCARD: &str = "vcard-temp";
const PRIVATE: &str = "jabber:iq:private";

/// A PostgreSQL database of the test's own, dropped at the end.
struct PostgresDb {
    admin: String,
    name: String,
}

impl PostgresDb {
    fn create() -> PostgresDb {
        let admin = std::env::var("STARLING_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("starling_import_{:016x}", RandomState::new().hash_one(0u8));
        psql(&admin, &format!("CREATE DATABASE {name}"));
        PostgresDb { admin, name }
    }

    fn url(&self) -> String {
        let base = self.admin.rsplit_once('/').expect("database in URL").0;
        format!("{base}/{}", self.name)
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs (scripts/install-test-deps installs PostgreSQL)");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn admin_ok(server: &TestServer, args: &[&str]) -> String {
    let output = server.admin(args, None);
    assert!(
        output.status.success(),
        "starling {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn accounts(server: &TestServer) -> Vec<String> {
    admin_ok(server, &["list-users"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Alice subscribed to Bob, a pending request from Carol, a vCard, private XML, a
/// blocked JID, and a message waiting for Carol.
async fn make_data(server: &TestServer) {
    for user in ["alice", "bob", "carol"] {
        server.adduser(&format!("{user}@localhost"));
    }
    let mut alice = Client::login(server, "alice", "laptop").await;
    let mut bob = Client::login(server, "bob", "desk").await;
    let mut carol = Client::login(server, "carol", "phone").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.go_available().await;
    }
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    alice.drain().await;
    bob.send("<presence to='alice@localhost' type='subscribed'/>")
        .await;
    bob.drain().await;
    carol
        .send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    carol.drain().await;
    alice
        .expect_result(
            &format!(
                "<iq type='set' id='v'><vCard xmlns='{VCARD}'><FN>Alice Ödegaard</FN></vCard></iq>"
            ),
            "v",
        )
        .await;
    alice.expect_result(&format!("<iq type='set' id='p'><query xmlns='{PRIVATE}'><prefs xmlns='example:prefs'><colour>blue</colour></prefs></query></iq>"), "p")
    .await;
    alice.expect_result("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='mallory@example.net'/></block></iq>", "b")
    .await;
    carol.close().await;
    bob.send("<message to='carol@localhost' type='chat' id='m1'><body>kept for carol &amp; co</body></message>")
        .await;
    bob.drain().await;
}

#[tokio::test]
async fn sqlite_export_imported_into_postgres_exports_the_same_file_and_serves_the_accounts() {
    let sqlite = TestServer::default_config();
    make_data(&sqlite).await;
    let first = sqlite.dir.path().join("first.xml");
    admin_ok(&sqlite, &["export", "--format", "xep0227", path(&first)]);
    let exported = std::fs::read_to_string(&first).expect("export written");
    for expected in [
        "<user name='alice'>",
        "mechanism='SCRAM-SHA-256'",
        "<item jid='bob@localhost' subscription='to'/>",
        "from='carol@localhost'",
        "Alice Ödegaard",
        "<colour>blue</colour>",
        "<item jid='mallory@example.net'/>",
        "kept for carol &amp; co",
        "urn:xmpp:delay",
    ] {
        assert!(
            exported.contains(expected),
            "{expected} missing:\n{exported}"
        );
    }

    let db = PostgresDb::create();
    let postgres = TestServer::start(&format!("storage = \"{}\"", db.url()), "", "", "");
    let out = admin_ok(&postgres, &["import", path(&first)]);
    assert!(out.contains("imported 3 accounts"), "{out}");
    let second = postgres.dir.path().join("second.xml");
    admin_ok(&postgres, &["export", path(&second)]);
    assert_eq!(
        std::fs::read_to_string(&second).expect("second export"),
        exported,
        "the round trip changed the data"
    );

    // The imported accounts log in with their old passwords and find their data.
    let mut alice = Client::login(&postgres, "alice", "laptop").await;
    let roster = alice.roster().await;
    let bob = roster
        .elements()
        .find(|i| i.attr("jid") == Some("bob@localhost"))
        .expect("bob on the roster")
        .clone();
    assert_eq!(bob.attr("subscription"), Some("to"));
    alice.send("<presence/>").await;
    alice
        .wait_for(|e| {
            e.name == "presence"
                && e.attr("type") == Some("subscribe")
                && e.attr("from") == Some("carol@localhost")
        })
        .await;
    let mut carol = Client::login(&postgres, "carol", "phone").await;
    carol.send("<presence/>").await;
    let message = carol.wait_for(|e| e.name == "message").await;
    assert_eq!(
        message
            .child("body", CLIENT_NS)
            .map(|b| b.text())
            .as_deref(),
        Some("kept for carol & co")
    );
    assert!(message.child("delay", "urn:xmpp:delay").is_some());
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn write(server: &TestServer, name: &str, text: &str) -> PathBuf {
    let file = server.dir.path().join(name);
    std::fs::write(&file, text).expect("file written");
    file
}

const GOOD_USER: &str = "<user name='dave'><query xmlns='jabber:iq:roster'><item jid='erin@localhost' subscription='both'/></query></user>";

/// Runs an import that must fail; returns its error output.
fn failed_import(server: &TestServer, files: &[&Path]) -> String {
    let mut args = vec!["import"];
    args.extend(files.iter().map(|f| path(f)));
    let output = server.admin(&args, None);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "import succeeded:\n{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    stderr
}

#[tokio::test]
async fn broken_import_files_are_refused_with_file_line_and_reason_and_import_nothing() {
    let server = TestServer::default_config();
    server.adduser("alice@localhost");
    let cases: [(&str, String, &str); 6] = [
        (
            "bad-subscription.xml",
            format!("<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='localhost'>\n{GOOD_USER}\n<user name='frank'>\n<query xmlns='jabber:iq:roster'>\n<item jid='gina@localhost' subscription='sometimes'/>\n</query></user></host></server-data>"),
            ":6: subscription \"sometimes\"",
        ),
        (
            "truncated.xml",
            format!("<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='localhost'>\n{GOOD_USER}\n<user name='frank'>\n<query xmlns='jabber:iq:roster'>"),
            "not well-formed XML",
        ),
        (
            "bad-key.xml",
            format!("<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='localhost'>\n{GOOD_USER}\n<user name='frank'><scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-256'>\n<iter-count>4096</iter-count><salt>c2FsdA==</salt>\n<server-key>c2hvcnQ=</server-key><stored-key>c2hvcnQ=</stored-key></scram-credentials></user></host></server-data>"),
            ":6: <stored-key/> of SCRAM-SHA-256 must be 32 bytes",
        ),
        (
            "unserved-host.xml",
            format!("<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='elsewhere.example'>\n{GOOD_USER}</host></server-data>"),
            ":2: elsewhere.example is not served here",
        ),
        (
            "existing-account.xml",
            format!("<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='localhost'>\n{GOOD_USER}\n<user name='alice'/></host></server-data>"),
            "alice@localhost already exists here",
        ),
        (
            "doctype.xml",
            format!("<!DOCTYPE x [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;'>]>\n<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>{GOOD_USER}</host></server-data>"),
            "not well-formed XML",
        ),
    ];
    for (name, text, expected) in cases {
        let file = write(&server, name, &text);
        let stderr = failed_import(&server, &[&file]);
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in:\n{stderr}"
        );
        assert!(
            stderr.contains(name),
            "{name}: the file is named:\n{stderr}"
        );
        assert_eq!(
            accounts(&server),
            vec!["alice@localhost".to_string()],
            "{name} imported something"
        );
    }

    // A good file together with a broken one: still nothing.
    let good = write(
        &server,
        "good.xml",
        &format!("<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>{GOOD_USER}</host></server-data>"),
    );
    let broken = server.dir.path().join("truncated.xml");
    failed_import(&server, &[&good, &broken]);
    assert_eq!(accounts(&server), vec!["alice@localhost".to_string()]);

    // Alice's own data was never touched, and the good file alone imports.
    let mut alice = Client::login(&server, "alice", "laptop").await;
    alice.assert_alive().await;
    admin_ok(&server, &["import", path(&good)]);
    assert_eq!(
        accounts(&server),
        vec!["alice@localhost".to_string(), "dave@localhost".to_string()]
    );
}

#[tokio::test]
async fn files_exported_by_prosody_import_with_roster_requests_vcard_and_private_xml() {
    let work = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/interop/prosody_export.py"
    );
    let output = Command::new("python3")
        .args([script, path(work.path()), &port.to_string(), PASSWORD])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && stdout.trim_end().ends_with("OK"),
        "Prosody export failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let files: Vec<&str> = stdout.lines().filter(|l| l.ends_with(".xml")).collect();
    assert_eq!(files.len(), 3, "{stdout}");

    // Prosody keeps SCRAM-SHA-1 keys only, so the server offers what they support.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("starling.toml");
    std::fs::write(
        &config,
        format!(
            "domains = [\"localhost\", \"pie.test\"]\ndata_dir = \"{}\"\n\
             [c2s]\nlisten = [\"127.0.0.1:0\"]\ndirect_tls_listen = [\"127.0.0.1:0\"]\n\
             [auth]\nmechanisms = [\"SCRAM-SHA-1\", \"SCRAM-SHA-1-PLUS\", \"PLAIN\"]\n\
             [s2s]\nlisten = []\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config written");
    let server = TestServer::start_with(dir, config);
    let mut args = vec!["import"];
    args.extend(files.iter().copied());
    let output = server.admin(&args, None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        accounts(&server),
        vec!["alice@pie.test", "bob@pie.test", "carol@pie.test"]
    );

    let mut alice =
        Client::login_with(&server, "alice", "pie.test", "laptop", Mechanism::ScramSha1).await;
    let roster = alice.roster().await;
    let bob = roster
        .elements()
        .find(|i| i.attr("jid") == Some("bob@pie.test"))
        .expect("bob on alice's roster")
        .clone();
    assert_eq!(bob.attr("subscription"), Some("both"));
    assert_eq!(bob.attr("name"), Some("Bob"));
    assert_eq!(
        bob.child("group", ROSTER_NS).map(|g| g.text()).as_deref(),
        Some("Friends")
    );
    let vcard = alice
        .expect_result(
            &format!("<iq type='get' id='v'><vCard xmlns='{VCARD}'/></iq>"),
            "v",
        )
        .await;
    assert_eq!(
        vcard
            .child("vCard", VCARD)
            .and_then(|v| v.child("FN", VCARD))
            .map(|f| f.text())
            .as_deref(),
        Some("Alice Liddell")
    );
    let private = alice.expect_result(&format!("<iq type='get' id='p'><query xmlns='{PRIVATE}'><prefs xmlns='example:prefs'/></query></iq>"), "p")
    .await;
    let colour = private
        .child("query", PRIVATE)
        .and_then(|q| q.child("prefs", "example:prefs"))
        .and_then(|p| p.child("colour", "example:prefs"))
        .map(|c| c.text());
    assert_eq!(colour.as_deref(), Some("blue"));
    // Carol's unanswered request comes with alice's first presence.
    alice.send("<presence/>").await;
    alice
        .wait_for(|e| {
            e.name == "presence"
                && e.attr("type") == Some("subscribe")
                && e.attr("from") == Some("carol@pie.test")
        })
        .await;
}

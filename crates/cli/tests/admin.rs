//! Account administration and configuration checking through the binary.

mod common;

use common::*;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn adduser_list_passwd_deluser_round_trip() {
    let server = TestServer::default_config();
    server.adduser("uma@localhost");
    let password_file = server.dir.path().join("password");
    std::fs::write(&password_file, "second password\n").expect("written");
    let added = server.admin(
        &[
            "adduser",
            "Vic@LOCALHOST",
            "--password-file",
            password_file.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(added.status.success(), "{}", stderr(&added));

    let list = server.admin(&["list-users"], None);
    assert_eq!(stdout(&list), "uma@localhost\nvic@localhost\n");

    let duplicate = server.admin(&["adduser", "uma@localhost"], Some("x\n"));
    assert!(!duplicate.status.success());
    assert!(stderr(&duplicate).contains("already exists"));

    let passwd = server.admin(&["passwd", "uma@localhost"], Some("new password\n"));
    assert!(passwd.status.success(), "{}", stderr(&passwd));
    let mut client = Client::connect(server.c2s).await;
    client.open_stream("localhost").await;
    client.starttls(&server.cert_path()).await;
    client.open_stream("localhost").await;
    let old = client
        .authenticate(
            starling_proto::sasl::Mechanism::ScramSha256,
            "uma",
            PASSWORD,
        )
        .await;
    assert!(
        old.is("failure", SASL_NS),
        "the old password no longer works"
    );
    let new = client
        .authenticate(
            starling_proto::sasl::Mechanism::ScramSha256,
            "uma",
            "new password",
        )
        .await;
    assert!(new.is("success", SASL_NS), "the new password works");

    let deleted = server.admin(&["deluser", "uma@localhost"], None);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let list = server.admin(&["list-users"], None);
    assert_eq!(stdout(&list), "vic@localhost\n");
    let missing = server.admin(&["deluser", "uma@localhost"], None);
    assert!(!missing.status.success());
}

#[tokio::test]
async fn adduser_refuses_unserved_domains_and_invalid_jids() {
    let server = TestServer::default_config();
    for jid in [
        "w@elsewhere.example",
        "a@b@localhost",
        "localhost",
        "x@localhost/res",
    ] {
        let output = server.admin(&["adduser", jid], Some("pw\n"));
        assert!(!output.status.success(), "{jid} was accepted");
    }
    let empty = server.admin(&["adduser", "y@localhost"], Some("\n"));
    assert!(!empty.status.success(), "an empty password was accepted");
}

#[test]
fn check_config_reports_errors_with_line_numbers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "domains = [\"ok.example\"]\n\n[c2s]\ntls_required = \"yes\"\n",
    )
    .expect("written");
    let output = std::process::Command::new(starling_bin())
        .args(["check-config", path.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(stderr(&output).contains("line 4"), "{}", stderr(&output));

    let good = dir.path().join("good.toml");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config.example.toml");
    std::fs::copy(example, &good).expect("example config copied");
    let output = std::process::Command::new(starling_bin())
        .args(["check-config", good.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "the example config is valid: {}",
        stderr(&output)
    );
}

#[tokio::test]
async fn bulk_adduser_creates_every_account_or_none() {
    let server = TestServer::default_config();
    let file = server.dir.path().join("accounts.txt");
    let mut lines = String::from("# load-test accounts\n\n");
    for n in 0..40 {
        lines.push_str(&format!("user{n}@localhost {PASSWORD}\n"));
    }
    lines.push_str("spaced@example.test   a pass phrase with spaces\n");
    std::fs::write(&file, &lines).expect("file written");
    let path = file.to_str().expect("utf-8");
    let output = server.admin(&["adduser", "--bulk", path], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("created 41 accounts"));
    let listed = stdout(&server.admin(&["list-users"], None));
    assert_eq!(listed.lines().count(), 41, "{listed}");
    let mut user = Client::login(&server, "user39", "bench").await;
    user.assert_alive().await;

    // A bad line names itself and nothing of the file is created.
    let broken = server.dir.path().join("broken.txt");
    std::fs::write(
        &broken,
        format!("fresh1@localhost {PASSWORD}\nnot a jid@@ x\nfresh2@localhost {PASSWORD}\n"),
    )
    .expect("file written");
    let output = server.admin(
        &["adduser", "--bulk", broken.to_str().expect("utf-8")],
        None,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("broken.txt:2:"),
        "{}",
        stderr(&output)
    );

    // So does a file with one existing account.
    let clash = server.dir.path().join("clash.txt");
    std::fs::write(
        &clash,
        format!("fresh1@localhost {PASSWORD}\nuser0@localhost {PASSWORD}\n"),
    )
    .expect("file written");
    let output = server.admin(&["adduser", "--bulk", clash.to_str().expect("utf-8")], None);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("none were created"),
        "{}",
        stderr(&output)
    );
    let listed = stdout(&server.admin(&["list-users"], None));
    assert!(!listed.contains("fresh"), "{listed}");
    assert_eq!(listed.lines().count(), 41);
}

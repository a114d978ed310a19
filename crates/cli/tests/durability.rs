//! What a crash may cost: a write the server acknowledged must survive `kill -9`,
//! even when the kill lands in the middle of a burst of writes.
//!
//! Nothing here sleeps: the kill follows the arrival of the acknowledgements.

mod common;

use std::collections::BTreeSet;

use common::*;
use starling_xml::Element;

const WRITES: u32 = 300;
const ACKNOWLEDGED_BEFORE_KILL: usize = 100;

fn roster_set(n: u32) -> String {
    format!(
        "<iq type='set' id='w{n}'><query xmlns='{ROSTER_NS}'>\
         <item jid='contact{n}@example.net' name='Contact {n}'/></query></iq>"
    )
}

/// The write number of a reply to one of `roster_set`'s IQs.
fn write_number(reply: &Element) -> Option<u32> {
    if reply.name != "iq" {
        return None;
    }
    reply.attr("id")?.strip_prefix('w')?.parse().ok()
}

/// The contact number of a well-formed stored item, or a description of what is wrong.
fn stored_contact(item: &Element) -> Result<u32, String> {
    let jid = item.attr("jid").unwrap_or_default();
    let n: u32 = jid
        .strip_prefix("contact")
        .and_then(|rest| rest.strip_suffix("@example.net"))
        .and_then(|number| number.parse().ok())
        .filter(|n| (1..=WRITES).contains(n))
        .ok_or_else(|| format!("an item that was never written: {jid:?}"))?;
    let expected_name = format!("Contact {n}");
    if item.attr("name") != Some(expected_name.as_str()) {
        return Err(format!(
            "{jid} is named {:?}, not {expected_name:?}",
            item.attr("name")
        ));
    }
    Ok(n)
}

#[tokio::test]
async fn kill_9_under_write_load_loses_no_acknowledged_roster_write() {
    // The default roster limit (1000 items) is above WRITES.
    let server = TestServer::default_config();
    server.adduser("alice@localhost");

    let mut alice = Client::login(&server, "alice", "writer").await;
    let burst: String = (1..=WRITES).map(roster_set).collect();
    alice.send(&burst).await;

    let mut acknowledged = BTreeSet::new();
    while acknowledged.len() < ACKNOWLEDGED_BEFORE_KILL {
        let reply = alice.next_element().await;
        let Some(n) = write_number(&reply) else {
            continue;
        };
        assert_eq!(
            reply.attr("type"),
            Some("result"),
            "write {n} refused: {}",
            reply.to_xml(CLIENT_NS)
        );
        acknowledged.insert(n);
    }
    let server = server.restart_after_sigkill();

    let mut alice = Client::login(&server, "alice", "reader").await;
    let query = alice.roster().await;
    let mut stored = BTreeSet::new();
    for item in query.elements() {
        let n = stored_contact(item).unwrap_or_else(|problem| panic!("{problem}"));
        assert!(stored.insert(n), "contact{n} is listed twice");
    }
    let lost: Vec<u32> = acknowledged.difference(&stored).copied().collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes lost in the crash: {lost:?} ({} acknowledged, {} stored)",
        acknowledged.len(),
        stored.len()
    );
    alice.assert_alive().await;
}

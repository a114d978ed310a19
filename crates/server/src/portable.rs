//! XEP-0227 portable import and export: the file format around
//! [`starling_store::AccountData`]. Import validates the whole file (and the files
//! it includes with XInclude, §5) before anything is stored, and reports the first
//! problem with its file and line; data we do not keep comes back as warnings.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use starling_proto::datetime::{format_datetime, parse_datetime};
use starling_proto::jid::prepare_localpart;
use starling_proto::sasl::{ScramCredentials, ScramHash};
use starling_proto::{ns, Jid};
use starling_store::{AccountData, RosterItem, Subscription};
use starling_xml::{Element, Node, XML_NS};

use crate::config::Config;
use crate::offline::DELAY_NS;

pub const PIE_NS: &str = "urn:xmpp:pie:0";
const SCRAM_NS: &str = "urn:xmpp:pie:0#scram";
const XINCLUDE_NS: &str = "http://www.w3.org/2001/XInclude";
const ROSTER_NS: &str = "jabber:iq:roster";
const PRIVATE_NS: &str = "jabber:iq:private";
const VCARD_NS: &str = "vcard-temp";
const BLOCKING_NS: &str = "urn:xmpp:blocking";
/// Includes nest host → user files; anything deeper is a loop or a hostile file.
const MAX_INCLUDE_DEPTH: usize = 4;

/// A problem at a place in an import file: an error that stops the import, or a
/// warning about data that is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportIssue {
    pub file: PathBuf,
    pub line: u32,
    pub reason: String,
}

impl fmt::Display for ImportIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// What an import file holds, ready for [`starling_store::Store::import_accounts`].
#[derive(Debug, Default)]
pub struct ImportFile {
    pub accounts: Vec<AccountData>,
    pub warnings: Vec<ImportIssue>,
}

/// Reads and checks XEP-0227 files (Prosody writes one per user); accounts must be
/// at domains `config` serves.
pub fn read_xep0227(paths: &[PathBuf], config: &Config) -> Result<ImportFile, ImportIssue> {
    let mut reader = Reader {
        config,
        out: ImportFile::default(),
    };
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        let before = reader.out.accounts.len();
        reader.file(path, 0, &mut |reader, source, root| {
            reader.expect(source, root, "server-data")?;
            reader.server_data(source, root)
        })?;
        for account in &reader.out.accounts[before..] {
            if seen.insert((account.user.clone(), account.domain.clone())) {
                continue;
            }
            return Err(ImportIssue {
                file: path.to_path_buf(),
                line: 1,
                reason: format!(
                    "the account {}@{} appears twice",
                    account.user, account.domain
                ),
            });
        }
    }
    Ok(reader.out)
}

/// One parsed file, for positions in issues.
struct Source<'a> {
    path: &'a Path,
    doc: &'a roxmltree::Document<'a>,
    depth: usize,
}

impl Source<'_> {
    fn issue(&self, node: roxmltree::Node, reason: impl Into<String>) -> ImportIssue {
        ImportIssue {
            file: self.path.to_path_buf(),
            line: self.doc.text_pos_at(node.range().start).row,
            reason: reason.into(),
        }
    }
}

type Handler<'h> =
    dyn FnMut(&mut Reader<'_>, &Source<'_>, roxmltree::Node) -> Result<(), ImportIssue> + 'h;

struct Reader<'c> {
    config: &'c Config,
    out: ImportFile,
}

impl Reader<'_> {
    /// Parses `path` and hands its root element to `handle`.
    fn file(
        &mut self,
        path: &Path,
        depth: usize,
        handle: &mut Handler<'_>,
    ) -> Result<(), ImportIssue> {
        let text = std::fs::read_to_string(path).map_err(|e| ImportIssue {
            file: path.to_path_buf(),
            line: 0,
            reason: format!("cannot read the file: {e}"),
        })?;
        let doc = roxmltree::Document::parse(&text).map_err(|e| ImportIssue {
            file: path.to_path_buf(),
            line: e.pos().row,
            reason: format!("not well-formed XML: {e}"),
        })?;
        let source = Source {
            path,
            doc: &doc,
            depth,
        };
        handle(self, &source, doc.root_element())
    }

    fn expect(
        &self,
        source: &Source<'_>,
        node: roxmltree::Node,
        name: &str,
    ) -> Result<(), ImportIssue> {
        if node.tag_name().name() == name && node.tag_name().namespace() == Some(PIE_NS) {
            Ok(())
        } else {
            Err(source.issue(
                node,
                format!(
                    "expected <{name} xmlns='{PIE_NS}'>, found <{}>",
                    describe(node)
                ),
            ))
        }
    }

    fn warn(&mut self, source: &Source<'_>, node: roxmltree::Node, reason: impl Into<String>) {
        self.out.warnings.push(source.issue(node, reason));
    }

    /// Resolves an `<xi:include href='relative'/>` (§5) and hands the included root to `handle`.
    fn include(
        &mut self,
        source: &Source<'_>,
        node: roxmltree::Node,
        handle: &mut Handler<'_>,
    ) -> Result<(), ImportIssue> {
        let href = node
            .attribute("href")
            .ok_or_else(|| source.issue(node, "<include/> without href"))?;
        if node.attribute("parse").is_some() || node.attribute("xpointer").is_some() {
            return Err(source.issue(node, "only plain XML includes are supported"));
        }
        if href.contains("://") || Path::new(href).is_absolute() {
            return Err(source.issue(node, format!("include {href:?} is not a relative path")));
        }
        if source.depth >= MAX_INCLUDE_DEPTH {
            return Err(source.issue(node, "includes are nested too deeply"));
        }
        let path = source.path.parent().unwrap_or(Path::new(".")).join(href);
        self.file(&path, source.depth + 1, handle)
    }

    fn server_data(
        &mut self,
        source: &Source<'_>,
        node: roxmltree::Node,
    ) -> Result<(), ImportIssue> {
        for child in node.children().filter(|n| n.is_element()) {
            if is(child, "include", XINCLUDE_NS) {
                self.include(source, child, &mut |reader, source, root| {
                    reader.expect(source, root, "host")?;
                    reader.host(source, root)
                })?;
            } else if is(child, "host", PIE_NS) {
                self.host(source, child)?;
            } else {
                self.warn(source, child, format!("ignored <{}>", describe(child)));
            }
        }
        Ok(())
    }

    fn host(&mut self, source: &Source<'_>, node: roxmltree::Node) -> Result<(), ImportIssue> {
        let jid = node
            .attribute("jid")
            .ok_or_else(|| source.issue(node, "<host/> without jid"))?;
        let domain = match Jid::parse(jid) {
            Ok(jid) if jid.node().is_none() && jid.resource().is_none() => jid.domain().to_string(),
            _ => return Err(source.issue(node, format!("host jid {jid:?} is not a domain"))),
        };
        if !self.config.serves(&domain) {
            return Err(source.issue(
                node,
                format!("{domain} is not served here; add it to `domains` in the configuration"),
            ));
        }
        for child in node.children().filter(|n| n.is_element()) {
            if is(child, "include", XINCLUDE_NS) {
                let domain = domain.clone();
                self.include(source, child, &mut |reader, source, root| {
                    reader.expect(source, root, "user")?;
                    reader.user(source, root, &domain)
                })?;
            } else if is(child, "user", PIE_NS) {
                self.user(source, child, &domain)?;
            } else {
                self.warn(source, child, format!("ignored <{}>", describe(child)));
            }
        }
        Ok(())
    }

    fn user(
        &mut self,
        source: &Source<'_>,
        node: roxmltree::Node,
        domain: &str,
    ) -> Result<(), ImportIssue> {
        let name = node
            .attribute("name")
            .ok_or_else(|| source.issue(node, "<user/> without name"))?;
        let user = prepare_localpart(name)
            .map_err(|e| source.issue(node, format!("user name {name:?} is invalid: {e}")))?;
        let mut account = AccountData {
            user: user.to_string(),
            domain: domain.to_string(),
            ..AccountData::default()
        };
        let bare = Jid::parse(&format!("{user}@{domain}"))
            .map_err(|e| source.issue(node, format!("{user}@{domain}: {e}")))?;
        self.user_children(source, node, &bare, &mut account)?;
        if account.credentials.is_empty() {
            if let Some(password) = node.attribute("password") {
                account.credentials = ScramHash::ALL
                    .into_iter()
                    .map(|hash| {
                        ScramCredentials::generate(
                            hash,
                            password,
                            self.config.auth.scram_iterations,
                        )
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| source.issue(node, format!("password of {bare}: {e}")))?;
            } else {
                self.warn(
                    source,
                    node,
                    format!("{bare} has no credentials and cannot log in until `starling passwd`"),
                );
            }
        }
        let missing: Vec<&str> = ScramHash::ALL
            .into_iter()
            .filter(|hash| !account.credentials.iter().any(|c| c.hash == *hash))
            .map(|hash| hash.name())
            .collect();
        if !account.credentials.is_empty() && !missing.is_empty() {
            self.warn(
                source,
                node,
                format!(
                    "{bare} has no SCRAM-{} credentials: those mechanisms fail for this account until its password is set again",
                    missing.join("/SCRAM-")
                ),
            );
        }
        self.out.accounts.push(account);
        Ok(())
    }

    fn user_children(
        &mut self,
        source: &Source<'_>,
        node: roxmltree::Node,
        bare: &Jid,
        account: &mut AccountData,
    ) -> Result<(), ImportIssue> {
        for child in node.children().filter(|n| n.is_element()) {
            self.user_child(source, child, bare, account)?;
        }
        account.roster.sort_by(|a, b| a.jid.cmp(&b.jid));
        account.private_xml.sort();
        account.blocklist.sort();
        Ok(())
    }

    /// One piece of a user's data (§3.3–§3.9), or an include of one.
    fn user_child(
        &mut self,
        source: &Source<'_>,
        child: roxmltree::Node,
        bare: &Jid,
        account: &mut AccountData,
    ) -> Result<(), ImportIssue> {
        {
            match (
                child.tag_name().namespace().unwrap_or(""),
                child.tag_name().name(),
            ) {
                (XINCLUDE_NS, "include") => {
                    self.include(source, child, &mut |reader, source, root| {
                        reader.user_child(source, root, bare, account)
                    })?
                }
                (SCRAM_NS, "scram-credentials") => {
                    let credentials = scram_credentials(source, child)?;
                    if account
                        .credentials
                        .iter()
                        .any(|c| c.hash == credentials.hash)
                    {
                        return Err(source.issue(child, "the same SCRAM mechanism appears twice"));
                    }
                    account.credentials.push(credentials);
                }
                (ROSTER_NS, "query") => {
                    for item in child.children().filter(|n| n.is_element()) {
                        let item = roster_item(source, item)?;
                        if account.roster.iter().any(|i| i.jid == item.jid) {
                            return Err(
                                source.issue(child, format!("{} is on the roster twice", item.jid))
                            );
                        }
                        account.roster.push(item);
                    }
                }
                // Prosody writes requests without a namespace of their own.
                (ns::CLIENT | PIE_NS, "presence") => {
                    let (contact, xml) = subscription_request(source, child, bare)?;
                    account.subscription_requests.retain(|(c, _)| *c != contact);
                    account.subscription_requests.push((contact, xml));
                }
                (PIE_NS, "offline-messages") => {
                    for message in child.children().filter(|n| n.is_element()) {
                        account
                            .offline_messages
                            .push(offline_message(source, message, bare)?);
                    }
                }
                (VCARD_NS, "vCard") => account.vcard = Some(element(child).to_xml("")),
                (PRIVATE_NS, "query") => {
                    for stored in child.children().filter(|n| n.is_element()) {
                        let stored = element(stored);
                        let qname = format!("{{{}}}{}", stored.ns, stored.name);
                        account.private_xml.retain(|(q, _)| *q != qname);
                        account.private_xml.push((qname, stored.to_xml("")));
                    }
                }
                (BLOCKING_NS, "blocklist") => {
                    for item in child.children().filter(|n| n.is_element()) {
                        let jid = jid_attribute(source, item, "jid")?.to_string();
                        if !account.blocklist.contains(&jid) {
                            account.blocklist.push(jid);
                        }
                    }
                }
                _ => self.warn(
                    source,
                    child,
                    format!("{bare}: ignored <{}>", describe(child)),
                ),
            }
        }
        Ok(())
    }
}

fn is(node: roxmltree::Node, name: &str, ns: &str) -> bool {
    node.tag_name().name() == name && node.tag_name().namespace() == Some(ns)
}

fn describe(node: roxmltree::Node) -> String {
    match node.tag_name().namespace() {
        Some(ns) => format!("{} xmlns='{ns}'", node.tag_name().name()),
        None => node.tag_name().name().to_string(),
    }
}

/// The subtree as an [`Element`], the form the server stores.
fn element(node: roxmltree::Node) -> Element {
    let mut out = Element::new(
        node.tag_name().name(),
        node.tag_name().namespace().unwrap_or(""),
    );
    for attr in node.attributes() {
        let key = match attr.namespace() {
            None => attr.name().to_string(),
            Some(XML_NS) => format!("xml:{}", attr.name()),
            Some(ns) => format!("{{{ns}}}{}", attr.name()),
        };
        out.set_attr(key, attr.value());
    }
    for child in node.children() {
        if child.is_element() {
            out.push_child(element(child));
        } else if let Some(text) = child.text().filter(|_| child.is_text()) {
            out.children.push(Node::Text(text.to_string()));
        }
    }
    out
}

fn jid_attribute(
    source: &Source<'_>,
    node: roxmltree::Node,
    attr: &str,
) -> Result<Jid, ImportIssue> {
    let value = node
        .attribute(attr)
        .ok_or_else(|| source.issue(node, format!("<{}/> without {attr}", describe(node))))?;
    Jid::parse(value).map_err(|e| source.issue(node, format!("{attr} {value:?} is not a JID: {e}")))
}

fn scram_credentials(
    source: &Source<'_>,
    node: roxmltree::Node,
) -> Result<ScramCredentials, ImportIssue> {
    let mechanism = node.attribute("mechanism").unwrap_or_default();
    let hash = mechanism
        .strip_prefix("SCRAM-")
        .and_then(ScramHash::from_name)
        .ok_or_else(|| source.issue(node, format!("unsupported SCRAM mechanism {mechanism:?}")))?;
    let field = |name: &str| {
        let mut found = node.children().filter(|n| is(*n, name, SCRAM_NS));
        match (found.next(), found.next()) {
            (Some(child), None) => Ok((child, child.text().unwrap_or_default().trim().to_string())),
            _ => Err(source.issue(node, format!("{mechanism} needs exactly one <{name}/>"))),
        }
    };
    let (count_node, count) = field("iter-count")?;
    let iterations = count
        .parse::<u32>()
        .ok()
        .filter(|&n| n > 0 && !count.starts_with('0'))
        .ok_or_else(|| {
            source.issue(
                count_node,
                format!("iteration count {count:?} is not a positive integer"),
            )
        })?;
    let decode = |name: &str, length: Option<usize>| {
        let (child, text) = field(name)?;
        let bytes = BASE64
            .decode(&text)
            .map_err(|e| source.issue(child, format!("<{name}/> is not base64: {e}")))?;
        match length {
            Some(length) if bytes.len() != length => Err(source.issue(
                child,
                format!(
                    "<{name}/> of {mechanism} must be {length} bytes, not {}",
                    bytes.len()
                ),
            )),
            _ if bytes.is_empty() => Err(source.issue(child, format!("<{name}/> is empty"))),
            _ => Ok(bytes),
        }
    };
    Ok(ScramCredentials {
        hash,
        salt: decode("salt", None)?,
        iterations,
        stored_key: decode("stored-key", Some(digest_len(hash)))?,
        server_key: decode("server-key", Some(digest_len(hash)))?,
    })
}

fn digest_len(hash: ScramHash) -> usize {
    match hash {
        ScramHash::Sha1 => 20,
        ScramHash::Sha256 => 32,
        ScramHash::Sha512 => 64,
    }
}

fn roster_item(source: &Source<'_>, node: roxmltree::Node) -> Result<RosterItem, ImportIssue> {
    if !is(node, "item", ROSTER_NS) {
        return Err(source.issue(
            node,
            format!("expected a roster <item/>, found <{}>", describe(node)),
        ));
    }
    let jid = jid_attribute(source, node, "jid")?;
    if jid.resource().is_some() {
        return Err(source.issue(node, format!("roster item {jid} is not a bare JID")));
    }
    let subscription = node.attribute("subscription").unwrap_or("none");
    let subscription = Subscription::from_str_opt(subscription).ok_or_else(|| {
        source.issue(
            node,
            format!("subscription {subscription:?} is not none, to, from or both"),
        )
    })?;
    let ask = match node.attribute("ask") {
        None => false,
        Some("subscribe") => true,
        Some(other) => {
            return Err(source.issue(node, format!("ask {other:?} is not \"subscribe\"")))
        }
    };
    let approved = matches!(node.attribute("approved"), Some("true" | "1"));
    let groups = node
        .children()
        .filter(|n| is(*n, "group", ROSTER_NS))
        .map(|g| g.text().unwrap_or_default().to_string())
        .collect();
    Ok(RosterItem {
        jid: jid.to_string(),
        name: node.attribute("name").map(str::to_string),
        subscription,
        ask,
        approved,
        groups,
    })
}

fn subscription_request(
    source: &Source<'_>,
    node: roxmltree::Node,
    user: &Jid,
) -> Result<(String, String), ImportIssue> {
    if node.attribute("type") != Some("subscribe") {
        return Err(source.issue(
            node,
            "a <presence/> under <user/> must be a subscription request (type='subscribe')",
        ));
    }
    let contact = jid_attribute(source, node, "from")?.bare();
    let mut stanza = element(node);
    stanza.ns = ns::CLIENT.to_string();
    stanza.set_attr("from", contact.to_string());
    stanza.set_attr("to", user.to_string());
    Ok((contact.to_string(), stanza.to_xml(ns::CLIENT)))
}

/// A stored message keeps its XEP-0203 stamp, the time it was first stored; one
/// without a stamp is stamped now, as delivery expects one.
fn offline_message(
    source: &Source<'_>,
    node: roxmltree::Node,
    user: &Jid,
) -> Result<(String, i64), ImportIssue> {
    if !is(node, "message", ns::CLIENT) {
        return Err(source.issue(
            node,
            format!(
                "expected <message xmlns='{}'>, found <{}>",
                ns::CLIENT,
                describe(node)
            ),
        ));
    }
    let mut message = element(node);
    if message.attr("to").is_none() {
        message.set_attr("to", user.to_string());
    }
    let stamp = message
        .child("delay", DELAY_NS)
        .and_then(|d| d.attr("stamp"));
    let stored_at = match stamp {
        Some(stamp) => parse_datetime(stamp).ok_or_else(|| {
            source.issue(
                node,
                format!("delay stamp {stamp:?} is not a XEP-0082 date-time"),
            )
        })?,
        None => {
            let now = SystemTime::now();
            message.push_child(
                Element::new("delay", DELAY_NS)
                    .with_attr("from", user.domain())
                    .with_attr("stamp", format_datetime(now)),
            );
            now
        }
    };
    let stored_at_ms = stored_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok((message.to_xml(ns::CLIENT), stored_at_ms))
}

/// The accounts as one XEP-0227 document, one user's data item per line.
pub fn write_xep0227(accounts: &[AccountData]) -> Result<String, String> {
    let mut out = String::from("<?xml version='1.0' encoding='UTF-8'?>\n");
    out.push_str(&format!("<server-data xmlns='{PIE_NS}'>\n"));
    let mut current_host: Option<&str> = None;
    for account in accounts {
        if current_host != Some(account.domain.as_str()) {
            if current_host.is_some() {
                out.push_str("</host>\n");
            }
            let host = Element::new("host", PIE_NS).with_attr("jid", account.domain.as_str());
            out.push_str(open_tag(&host, PIE_NS).as_str());
            current_host = Some(&account.domain);
        }
        let user = Element::new("user", PIE_NS).with_attr("name", account.user.as_str());
        out.push_str(open_tag(&user, PIE_NS).as_str());
        for line in user_lines(account)? {
            out.push_str(&line.to_xml(PIE_NS));
            out.push('\n');
        }
        out.push_str("</user>\n");
    }
    if current_host.is_some() {
        out.push_str("</host>\n");
    }
    out.push_str("</server-data>\n");
    Ok(out)
}

/// `<name attrs>` with a newline: the element serialized, its closing tag cut off.
fn open_tag(element: &Element, parent_ns: &str) -> String {
    let xml = element.to_xml(parent_ns);
    let open = xml
        .strip_suffix("/>")
        .map_or(xml.clone(), |tag| format!("{tag}>"));
    format!("{open}\n")
}

fn stored(
    xml: &str,
    parent_ns: &str,
    what: &str,
    account: &AccountData,
) -> Result<Element, String> {
    Element::from_xml(xml, parent_ns).map_err(|e| {
        format!(
            "stored {what} of {}@{} is unreadable: {e}",
            account.user, account.domain
        )
    })
}

fn user_lines(account: &AccountData) -> Result<Vec<Element>, String> {
    let mut lines = Vec::new();
    for c in &account.credentials {
        lines.push(
            Element::new("scram-credentials", SCRAM_NS)
                .with_attr("mechanism", format!("SCRAM-{}", c.hash.name()))
                .with_child(
                    Element::new("iter-count", SCRAM_NS).with_text(c.iterations.to_string()),
                )
                .with_child(Element::new("salt", SCRAM_NS).with_text(BASE64.encode(&c.salt)))
                .with_child(
                    Element::new("server-key", SCRAM_NS).with_text(BASE64.encode(&c.server_key)),
                )
                .with_child(
                    Element::new("stored-key", SCRAM_NS).with_text(BASE64.encode(&c.stored_key)),
                ),
        );
    }
    if !account.roster.is_empty() {
        let mut query = Element::new("query", ROSTER_NS);
        for item in &account.roster {
            let mut e = Element::new("item", ROSTER_NS)
                .with_attr("jid", item.jid.as_str())
                .with_attr("subscription", item.subscription.as_str());
            if let Some(name) = &item.name {
                e.set_attr("name", name.as_str());
            }
            if item.ask {
                e.set_attr("ask", "subscribe");
            }
            if item.approved {
                e.set_attr("approved", "true");
            }
            for group in &item.groups {
                e.push_child(Element::new("group", ROSTER_NS).with_text(group.as_str()));
            }
            query.push_child(e);
        }
        lines.push(query);
    }
    for (_, xml) in &account.subscription_requests {
        lines.push(stored(xml, ns::CLIENT, "subscription request", account)?);
    }
    if !account.offline_messages.is_empty() {
        let mut messages = Element::new("offline-messages", PIE_NS);
        for (xml, _) in &account.offline_messages {
            messages.push_child(stored(xml, ns::CLIENT, "offline message", account)?);
        }
        lines.push(messages);
    }
    if let Some(vcard) = &account.vcard {
        lines.push(stored(vcard, "", "vCard", account)?);
    }
    if !account.private_xml.is_empty() {
        let mut query = Element::new("query", PRIVATE_NS);
        for (_, xml) in &account.private_xml {
            query.push_child(stored(xml, "", "private XML", account)?);
        }
        lines.push(query);
    }
    if !account.blocklist.is_empty() {
        let mut list = Element::new("blocklist", BLOCKING_NS);
        for jid in &account.blocklist {
            list.push_child(Element::new("item", BLOCKING_NS).with_attr("jid", jid.as_str()));
        }
        lines.push(list);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            domains: vec!["capulet.lit".into()],
            ..Config::default()
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(&path, text).expect("written");
        path
    }

    #[test]
    fn xinclude_layout_of_section_5_is_followed_from_main_to_host_to_user_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let main = write(
            dir.path(),
            "main.xml",
            "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>\
             <xi:include href='capulet.lit.xml'/></server-data>",
        );
        write(
            dir.path(),
            "capulet.lit.xml",
            "<host xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude' jid='capulet.lit'>\
             <xi:include href='capulet.lit/juliet.xml'/></host>",
        );
        write(
            dir.path(),
            "capulet.lit/juliet.xml",
            "<user xmlns='urn:xmpp:pie:0' name='Juliet'>\
             <query xmlns='jabber:iq:roster'><item jid='romeo@montague.lit' subscription='both'><group>Friends</group></item></query>\
             <vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN></vCard>\
             <offline-messages><message xmlns='jabber:client' from='romeo@montague.lit/orchard' type='chat'>\
             <body>Neither, fair saint</body><delay xmlns='urn:xmpp:delay' stamp='1469-07-21T00:32:29Z'/></message></offline-messages>\
             <pubsub xmlns='http://jabber.org/protocol/pubsub'/></user>",
        );
        let file = read_xep0227(&[main], &config()).expect("imports");
        let [juliet] = file.accounts.as_slice() else {
            panic!("one account: {:?}", file.accounts)
        };
        assert_eq!(
            (juliet.user.as_str(), juliet.domain.as_str()),
            ("juliet", "capulet.lit")
        );
        assert_eq!(juliet.roster[0].jid, "romeo@montague.lit");
        assert_eq!(juliet.roster[0].groups, vec!["Friends".to_string()]);
        assert!(juliet
            .vcard
            .as_deref()
            .is_some_and(|v| v.contains("Juliet Capulet")));
        let (message, _) = &juliet.offline_messages[0];
        assert!(message.contains("to='juliet@capulet.lit'"), "{message}");
        // The PEP data we do not keep is reported, with where it was, and no credentials either.
        let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("juliet.xml:1: juliet@capulet.lit: ignored <pubsub")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("no credentials")),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_file_that_includes_itself_is_refused_instead_of_looping() {
        let dir = tempfile::tempdir().expect("temp dir");
        let main = write(
            dir.path(),
            "main.xml",
            "<server-data xmlns='urn:xmpp:pie:0'><host jid='capulet.lit'><user name='juliet'>\
             <include xmlns='http://www.w3.org/2001/XInclude' href='part.xml'/></user></host></server-data>",
        );
        write(
            dir.path(),
            "part.xml",
            "<?xml version='1.0'?>\n<include xmlns='http://www.w3.org/2001/XInclude' href='part.xml'/>",
        );
        let issue = read_xep0227(&[main], &config()).expect_err("refused");
        assert!(issue.reason.contains("nested too deeply"), "{issue}");
        assert_eq!(issue.line, 2);
    }

    #[test]
    fn includes_outside_the_directory_tree_by_url_or_absolute_path_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        for href in ["/etc/passwd", "http://example.com/x.xml"] {
            let main = write(
                dir.path(),
                "main.xml",
                &format!(
                    "<server-data xmlns='urn:xmpp:pie:0'>\
                     <include xmlns='http://www.w3.org/2001/XInclude' href='{href}'/></server-data>"
                ),
            );
            let issue = read_xep0227(&[main], &config()).expect_err("refused");
            assert!(issue.reason.contains("not a relative path"), "{issue}");
        }
    }

    #[test]
    fn written_files_read_back_to_the_same_accounts() {
        let account = AccountData {
            user: "juliet".into(),
            domain: "capulet.lit".into(),
            credentials: vec![ScramCredentials {
                hash: ScramHash::Sha256,
                salt: vec![1; 16],
                iterations: 4096,
                stored_key: vec![2; 32],
                server_key: vec![3; 32],
            }],
            roster: vec![RosterItem {
                jid: "romeo@montague.lit".into(),
                name: Some("Romeo <3".into()),
                subscription: Subscription::From,
                ask: true,
                approved: false,
                groups: vec!["A & B".into(), "C".into()],
            }],
            subscription_requests: vec![(
                "nurse@capulet.lit".into(),
                "<presence from='nurse@capulet.lit' to='juliet@capulet.lit' type='subscribe'/>".into(),
            )],
            offline_messages: vec![(
                "<message to='juliet@capulet.lit'><body>hi</body><delay xmlns='urn:xmpp:delay' stamp='2026-01-02T03:04:05.678Z'/></message>".into(),
                1_767_323_045_678,
            )],
            vcard: Some("<vCard xmlns='vcard-temp'><FN>J</FN></vCard>".into()),
            private_xml: vec![("{a:b}c".into(), "<c xmlns='a:b'>x</c>".into())],
            blocklist: vec!["tybalt@capulet.lit".into()],
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let text = write_xep0227(std::slice::from_ref(&account)).expect("written");
        let path = write(dir.path(), "out.xml", &text);
        let file = read_xep0227(&[path], &config()).expect("read back");
        assert_eq!(file.accounts, vec![account]);
        let unexpected: Vec<String> = file
            .warnings
            .iter()
            .map(ToString::to_string)
            .filter(|w| !w.contains("no SCRAM-SHA-1/SCRAM-SHA-512"))
            .collect();
        assert!(unexpected.is_empty(), "{unexpected:?}");
    }
}

//! `starling adduser --bulk FILE`: many accounts at once, for migrations and load
//! tests. Key derivation (PBKDF2, slow by design) runs on every core, and the
//! accounts are stored in one transaction: all of them or, on any error, none.

use std::path::Path;

use starling_proto::sasl::{ScramCredentials, ScramHash};
use starling_server::Config;
use starling_store::AccountData;

/// One `user@domain password` line per account; the password is the rest of the
/// line after the first run of spaces or tabs. Blank lines and `#` comments are skipped.
pub fn read_accounts(file: &Path, config: &Config) -> Result<Vec<AccountData>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut wanted = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, line) in text.lines().enumerate() {
        let at = |reason: String| format!("{}:{}: {reason}", file.display(), index + 1);
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((jid, password)) = line.split_once([' ', '\t']) else {
            return Err(at("expected `user@domain password`".into()));
        };
        let password = password.trim_start_matches([' ', '\t']);
        if password.is_empty() {
            return Err(at("the password is empty".into()));
        }
        let (user, domain) = crate::account(config, jid).map_err(at)?;
        if !seen.insert((user.clone(), domain.clone())) {
            return Err(at(format!("{user}@{domain} appears twice")));
        }
        wanted.push((index + 1, user, domain, password.to_string()));
    }
    let iterations = config.auth.scram_iterations;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = wanted.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = wanted
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(line, user, domain, password)| {
                            let credentials = ScramHash::ALL
                                .into_iter()
                                .map(|hash| ScramCredentials::generate(hash, password, iterations))
                                .collect::<Result<Vec<_>, _>>()
                                .map_err(|e| {
                                    format!("{}:{line}: unusable password: {e}", file.display())
                                })?;
                            Ok(AccountData {
                                user: user.clone(),
                                domain: domain.clone(),
                                credentials,
                                ..AccountData::default()
                            })
                        })
                        .collect::<Result<Vec<_>, String>>()
                })
            })
            .collect();
        let mut accounts = Vec::with_capacity(wanted.len());
        for handle in handles {
            accounts.extend(handle.join().expect("key derivation does not panic")?);
        }
        Ok(accounts)
    })
}

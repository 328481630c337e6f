//! `enforcer policy show` and `enforcer check`: offline answers from the
//! merged policy and the daemon's last resolved state.

use std::{path::Path, process::ExitCode};

use serde_json::json;

use crate::{
    desired::{Action, compile},
    policy::{Policy, catalog},
    resolve::{Answers, answers::NameState, now_ms},
    snapshot::Snapshot,
};

/// The last resolved state, if the daemon has written one.
fn answers(state_dir: &Path) -> (Answers, Option<String>) {
    match Snapshot::read(state_dir) {
        Ok(s) => (s.answers, None),
        Err(e) => (
            Answers::default(),
            Some(format!(
                "no resolved state ({e}); is the daemon running with --state-dir {}?",
                state_dir.display()
            )),
        ),
    }
}

fn name_json(name: &str, s: &NameState) -> serde_json::Value {
    json!({
        "name": name,
        "status": s.status,
        "addresses": s.addrs.iter().map(|(a, st)| json!({
            "address": a.to_string(),
            "last_seen_ms": st.last_seen_ms,
            "grace_until_ms": st.expires_ms,
        })).collect::<Vec<_>>(),
        "ttl_s": s.ttl_s,
        "cnames": s.cnames,
        "last_success_ms": s.last_success_ms,
        "last_error": s.last_error,
        "failures": s.failures,
    })
}

fn shared_warning(entry: &str) -> Option<String> {
    let c = catalog::lookup(entry)?;
    (c.kind == catalog::Kind::Shared).then(|| {
        format!(
            "{entry} ({}) is served from shared front ends but banned as dedicated here: blocking its addresses may block unrelated sites; write {{\"name\": \"{entry}\", \"shared\": true}} to enforce it by name only",
            c.provider
        )
    })
}

pub fn show(
    policy: &std::sync::Arc<Policy>,
    state_dir: &Path,
    resolved: bool,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let (answers, missing) = if resolved {
        answers(state_dir)
    } else {
        (Answers::default(), None)
    };
    let mut warnings = policy.warnings.clone();
    if resolved {
        warnings.extend(
            policy
                .deny
                .domain_values()
                .filter(|d| !policy.deny.is_shared(d))
                .filter_map(|d| shared_warning(&d.to_string())),
        );
    }
    if let Some(m) = &missing {
        warnings.push(m.clone());
    }
    let (_, rules) = compile(policy, &answers.addrs());
    let collateral = resolved.then(|| crate::collateral::report(policy, &answers.addrs(), &rules));
    if as_json {
        let mut out = json!({
            "sources": policy.sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "mode": policy.mode.to_string(),
            "resolver": {
                "upstreams": policy.resolver.upstreams.as_ref().map(|u| u.iter().map(ToString::to_string).collect::<Vec<_>>()),
                "min_ttl_s": policy.resolver.min_ttl_s,
                "max_ttl_s": policy.resolver.max_ttl_s,
                "grace_s": policy.resolver.grace_s,
                "concurrency": policy.resolver.concurrency,
            },
            "nat64_prefixes": policy.nat64_prefixes.iter().map(|e| e.value.to_string()).collect::<Vec<_>>(),
            "rules": rules.iter().map(|r| json!({
                "id": r.id,
                "action": if r.action == Action::Deny { "deny" } else { "allow" },
                "target": r.target.to_string(),
                "origin": r.origin,
            })).collect::<Vec<_>>(),
            "warnings": warnings,
        });
        if let Some(c) = &collateral {
            out["collateral"] = serde_json::to_value(&c.collateral)?;
            out["collateral_summary"] = c.summary().into();
        }
        if resolved {
            out["names"] = answers
                .names
                .iter()
                .map(|(n, s)| name_json(n, s))
                .collect::<Vec<_>>()
                .into();
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "sources: {}",
        policy
            .sources
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("mode: {}", policy.mode);
    let r = &policy.resolver;
    let ups = r.upstreams.as_ref().map_or_else(
        || "/etc/resolv.conf".to_owned(),
        |u| {
            u.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    println!(
        "resolver: {ups}; ttl clamp {}..{} s, grace {} s, concurrency {}",
        r.min_ttl_s, r.max_ttl_s, r.grace_s, r.concurrency
    );
    if !policy.nat64_prefixes.is_empty() {
        let list: Vec<String> = policy
            .nat64_prefixes
            .iter()
            .map(|e| e.value.to_string())
            .collect();
        println!("nat64 prefixes: {} (and 64:ff9b::/96)", list.join(", "));
    }
    println!("rules:");
    for rule in rules.iter() {
        println!("  {rule}");
    }
    if resolved {
        println!("names:");
        let now = now_ms();
        for (name, s) in &answers.names {
            let status = serde_json::to_value(s.status)?;
            let ttl = s.ttl_s.map_or_else(|| "-".to_owned(), |t| format!("{t}s"));
            print!("  {name} [{}] ttl {ttl}", status.as_str().unwrap_or("?"));
            if !s.cnames.is_empty() {
                print!(" via {}", s.cnames.join(" -> "));
            }
            println!();
            for (addr, a) in &s.addrs {
                match a.expires_ms {
                    Some(t) => println!(
                        "    {addr} (gone from DNS; kept {} s more)",
                        t.saturating_sub(now) / 1000
                    ),
                    None => println!("    {addr}"),
                }
            }
            if let Some(e) = &s.last_error {
                println!("    last error: {e}");
            }
        }
    }
    if let Some(c) = &collateral {
        for line in c.lines() {
            println!("{line}");
        }
    }
    for w in &warnings {
        println!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit codes of `check`.
pub const NOT_BLOCKED: u8 = 0;
pub const BLOCKED: u8 = 1;

//! `enforcer policy show` and `enforcer check`: offline answers from the
//! merged policy and the daemon's last resolved state.

use std::{net::IpAddr, path::Path, process::ExitCode};

use anyhow::Context as _;
use serde_json::json;

use crate::{
    desired::{Action, RuleTable, Target, compile, lookup},
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
            "{entry} ({}) is served from shared front ends: blocking its addresses may block unrelated sites until name-level enforcement exists",
            c.provider
        )
    })
}

pub fn show(
    policy: &Policy,
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
                .filter_map(|d| shared_warning(&d.to_string())),
        );
    }
    if let Some(m) = &missing {
        warnings.push(m.clone());
    }
    let (_, rules) = compile(policy, &answers.addrs());
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
    for w in &warnings {
        println!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit codes of `check`.
pub const NOT_BLOCKED: u8 = 0;
pub const BLOCKED: u8 = 1;

pub fn check(
    policy: &Policy,
    state_dir: &Path,
    target: &str,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let (answers, missing) = answers(state_dir);
    let (desired, rules) = compile(policy, &answers.addrs());
    let verdict = match target.parse::<IpAddr>() {
        Ok(ip) => check_ip(&desired, &rules, ip),
        Err(_) => check_name(policy, &rules, &answers, target)?,
    };
    if as_json {
        let mut v = verdict.json.clone();
        v["note"] = missing.clone().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", verdict.text);
        if let Some(m) = missing {
            println!("note: {m}");
        }
    }
    Ok(ExitCode::from(if verdict.blocked {
        BLOCKED
    } else {
        NOT_BLOCKED
    }))
}

pub struct Verdict {
    pub blocked: bool,
    pub text: String,
    pub json: serde_json::Value,
}

/// Would `target` (a name or an address) be blocked under `policy` with
/// these answers, and by which rule.
pub fn verdict(policy: &Policy, answers: &Answers, target: &str) -> anyhow::Result<Verdict> {
    let (desired, rules) = compile(policy, &answers.addrs());
    match target.parse::<IpAddr>() {
        Ok(ip) => Ok(check_ip(&desired, &rules, ip)),
        Err(_) => check_name(policy, &rules, answers, target),
    }
}

fn rule_text(rules: &RuleTable, id: u32) -> String {
    rules
        .get(id)
        .map_or_else(|| format!("#{id}"), ToString::to_string)
}

fn check_ip(desired: &crate::desired::Desired, rules: &RuleTable, ip: IpAddr) -> Verdict {
    match lookup(desired, ip) {
        None => Verdict {
            blocked: false,
            text: format!("not blocked: no rule covers {ip}"),
            json: json!({"target": ip.to_string(), "blocked": false}),
        },
        Some((ban, Some(exception))) => Verdict {
            blocked: false,
            text: format!(
                "not blocked: {ip} is banned by {} but excepted by {}",
                rule_text(rules, ban),
                rule_text(rules, exception)
            ),
            json: json!({"target": ip.to_string(), "blocked": false, "rule": ban, "exception": exception}),
        },
        Some((ban, None)) => Verdict {
            blocked: true,
            text: format!("blocked: {ip} by {}", rule_text(rules, ban)),
            json: json!({"target": ip.to_string(), "blocked": true, "rule": ban}),
        },
    }
}

fn check_name(
    policy: &Policy,
    rules: &RuleTable,
    answers: &Answers,
    raw: &str,
) -> anyhow::Result<Verdict> {
    let name = raw.trim_end_matches('.').to_ascii_lowercase();
    // Validates the name with the policy's own rules.
    let _: crate::policy::DomainPattern = name
        .parse()
        .map_err(anyhow::Error::msg)
        .context("not an IP address or a DNS name")?;
    let matching = |action: Action| {
        rules.iter().find(|r| {
            r.action == action && matches!(&r.target, Target::Domain(d) if d.matches(&name))
        })
    };
    let ban = matching(Action::Deny);
    let exception = matching(Action::Allow);
    let addrs_of = |rule: &crate::desired::Rule| -> Vec<String> {
        let Target::Domain(d) = &rule.target else {
            return vec![];
        };
        answers
            .names
            .get(d.resolvable())
            .map(|s| s.addrs.keys().map(ToString::to_string).collect())
            .unwrap_or_default()
    };
    let _ = policy;
    Ok(match (ban, exception) {
        (None, _) => Verdict {
            blocked: false,
            text: format!(
                "not blocked: no domain rule matches {name} (its addresses may still fall in a banned network: check them by IP)"
            ),
            json: json!({"target": name, "blocked": false}),
        },
        (Some(b), Some(e)) => Verdict {
            blocked: false,
            text: format!("not blocked: {name} matches {b} but is excepted by {e}"),
            json: json!({"target": name, "blocked": false, "rule": b.id, "exception": e.id}),
        },
        (Some(b), None) => {
            let addrs = addrs_of(b);
            let Target::Domain(d) = &b.target else {
                unreachable!("domain rules only")
            };
            let enforced = if addrs.is_empty() {
                format!("no addresses resolved for {} yet", d.resolvable())
            } else {
                format!(
                    "enforced on the addresses of {}: {}",
                    d.resolvable(),
                    addrs.join(", ")
                )
            };
            Verdict {
                blocked: true,
                text: format!("blocked: {name} matches {b}; {enforced}"),
                json: json!({"target": name, "blocked": true, "rule": b.id, "resolved_name": d.resolvable(), "addresses": addrs}),
            }
        }
    })
}

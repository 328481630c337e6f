//! `check NAME|IP`: what the kernel will do with a destination. A name is
//! resolved now (with the policy's resolver, as an application would get
//! it) and each of its addresses is judged by the pinned maps with the
//! programs' own lookups; the policy only explains which rule matched.
//! A name is reported blocked when it is a banned name (not excepted): the
//! kernel bans the addresses of every DNS answer for it, whatever they are;
//! otherwise only when the kernel denies every address it resolves to.

use std::{net::IpAddr, path::Path};

use anyhow::Context as _;
use serde_json::json;

use crate::{
    bpf::{
        Pins,
        judge::{Judge, KernelVerdict},
    },
    desired::{Action, RuleTable, Target, compile},
    policy::{DomainPattern, Policy},
    resolve::{answers::Resolution, dns},
};

pub struct Verdict {
    pub blocked: bool,
    pub text: String,
    pub json: serde_json::Value,
}

/// Resolves (for a name) and judges against the maps of `pins`. `rules`:
/// the rule table of `policy` (the daemon's own, or [`rules_of`]).
pub async fn live(
    policy: &Policy,
    rules: &RuleTable,
    pins: &Pins,
    resolv_conf: &Path,
    target: &str,
) -> anyhow::Result<Verdict> {
    if let Ok(ip) = target.parse::<IpAddr>() {
        let judge = open_judge(pins)?;
        return judge_addrs(rules, &judge, target, &[ip], None);
    }
    let name = target.trim_end_matches('.').to_ascii_lowercase();
    let _: DomainPattern = name
        .parse()
        .map_err(anyhow::Error::msg)
        .context("not an IP address or a DNS name")?;
    let upstreams = dns::upstreams(policy.resolver.upstreams.as_deref(), resolv_conf)?;
    let resolver = dns::build(&upstreams)?;
    // No address is filtered here: an application connects to whatever it
    // gets, and the kernel judges each.
    let resolution = dns::resolve(&resolver, &name, policy.resolver.min_ttl_s, &[]).await;
    let judge = open_judge(pins)?;
    let (addrs, note) = match resolution {
        Resolution::Addresses {
            addrs,
            ignored,
            partial,
            ..
        } => {
            let mut all: Vec<IpAddr> = addrs.into_iter().collect();
            all.extend(ignored.iter().map(|i| i.addr));
            (all, partial.map(|e| format!("half an answer: {e}")))
        }
        Resolution::NxDomain => (Vec::new(), Some("NXDOMAIN".to_owned())),
        Resolution::Failed(e) => (Vec::new(), Some(format!("cannot resolve: {e}"))),
    };
    judge_addrs(rules, &judge, &name, &addrs, note)
}

/// The rule ids of `policy` as the daemon numbers them (resolved names do
/// not change the numbering), for a check without a daemon.
pub fn rules_of(policy: &Policy) -> RuleTable {
    compile(policy, &Default::default()).1
}

fn open_judge(pins: &Pins) -> anyhow::Result<Judge> {
    Judge::open(pins).with_context(|| {
        format!(
            "no enforcement to ask at {}: is the daemon running with --bpffs {}?",
            pins.root().display(),
            pins.root().display()
        )
    })
}

fn rule_text(rules: &RuleTable, id: u32) -> String {
    rules
        .get(id)
        .map_or_else(|| format!("#{id}"), ToString::to_string)
}

/// The rule of `policy` naming `name`, for the explanation only.
fn name_rule(rules: &RuleTable, name: &str, action: Action) -> Option<String> {
    rules
        .iter()
        .find(|r| r.action == action && matches!(&r.target, Target::Domain(d) if d.matches(name)))
        .map(ToString::to_string)
}

fn judge_addrs(
    rules: &RuleTable,
    judge: &Judge,
    target: &str,
    addrs: &[IpAddr],
    note: Option<String>,
) -> anyhow::Result<Verdict> {
    let audit = judge.audit()?;
    let mut lines = Vec::new();
    let mut per_addr = Vec::new();
    let mut denied = 0;
    for &addr in addrs {
        let v = judge.verdict(addr)?;
        let (word, detail) = match v {
            KernelVerdict::Pass => ("passes", "no ban covers it".to_owned()),
            KernelVerdict::Excepted { rule, exception } => (
                "passes",
                format!(
                    "banned by {} but excepted by {}",
                    rule_text(rules, rule),
                    rule_text(rules, exception)
                ),
            ),
            KernelVerdict::Banned { rule } => {
                denied += 1;
                (
                    if audit { "audited" } else { "denied" },
                    format!("by {}", rule_text(rules, rule)),
                )
            }
        };
        lines.push(format!("  {addr}: {word} ({detail})"));
        per_addr.push(json!({"address": addr.to_string(), "verdict": word, "detail": detail}));
    }
    let all_denied = !addrs.is_empty() && denied == addrs.len();
    let is_name = target.parse::<IpAddr>().is_err();
    let deny_rule = is_name
        .then(|| name_rule(rules, target, Action::Deny))
        .flatten();
    let allow_rule = is_name
        .then(|| name_rule(rules, target, Action::Allow))
        .flatten();
    // A banned name (not excepted) is judged on every answer an
    // application in the enforced cgroup gets: whatever it resolves to is
    // banned before the application reads it.
    let by_name = deny_rule.is_some() && allow_rule.is_none();
    let blocked = (all_denied || by_name) && !audit;
    let head = match (addrs.len(), denied) {
        _ if by_name && audit => format!(
            "not blocked (audit mode): {target} is a banned name; the kernel reports but lets it through"
        ),
        _ if by_name => format!(
            "blocked: {target} is a banned name; the kernel bans the addresses of every DNS answer for it before the application reads them"
        ),
        (0, _) => format!("not blocked: {target} has no address to judge"),
        (n, d) if d == n && audit => {
            format!(
                "not blocked (audit mode): the kernel reports but lets through every address of {target}"
            )
        }
        (n, d) if d == n => format!("blocked: the kernel denies every address of {target}"),
        (n, 0) => format!("not blocked: the kernel lets through all {n} addresses of {target}"),
        (n, d) => format!(
            "not blocked: the kernel denies {d} of {n} addresses of {target}; the others pass"
        ),
    };
    let mut text = head;
    if let Some(r) = &deny_rule {
        text.push_str(&format!("\n  the name matches {r}"));
    }
    if let Some(r) = &allow_rule {
        text.push_str(&format!("\n  the name matches the exception {r}"));
    }
    if is_name && !lines.is_empty() {
        text.push_str("\n  its addresses now, as the maps judge them:");
    }
    for l in &lines {
        text.push('\n');
        text.push_str(l);
    }
    if let Some(n) = &note {
        text.push_str(&format!("\n  note: {n}"));
    }
    Ok(Verdict {
        blocked,
        text,
        json: json!({
            "target": target,
            "blocked": blocked,
            "audit": audit,
            "addresses": per_addr,
            "note": note,
        }),
    })
}

//! `check NAME|IP`: what the kernel will do with a destination. A name is
//! resolved now (with the policy's resolver, as an application would get
//! it) and each of its addresses is judged by the pinned maps with the
//! programs' own lookups; the policy only explains which rule matched.
//! A name is reported blocked when it is a banned name (not excepted): the
//! kernel bans the addresses of every DNS answer for it, whatever they are;
//! otherwise only when the kernel denies every address it resolves to.
//!
//! With a port (`IP:PORT[/tcp|/udp]`, `[IPv6]:PORT`, `NAME:PORT`) each
//! address is judged for traffic to that port (both protocols unless one
//! is given), the rules with a port included.

use std::{net::IpAddr, path::Path};

use anyhow::Context as _;
use serde_json::json;

use crate::{
    bpf::{
        Pins,
        judge::{Judge, KernelVerdict},
    },
    desired::{Action, RuleTable, Target},
    policy::{DomainPattern, Policy, PortSpec, PortTarget},
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
    let (host, on) = split_port(target)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        let judge = open_judge(pins)?;
        return judge_addrs(rules, &judge, host, &[], on, &[ip], None);
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
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
    let (addrs, cnames, note) = match resolution {
        Resolution::Addresses {
            addrs,
            cnames,
            ignored,
            partial,
            ..
        } => {
            let mut all: Vec<IpAddr> = addrs.into_iter().collect();
            all.extend(ignored.iter().map(|i| i.addr));
            (all, cnames, partial.map(|e| format!("half an answer: {e}")))
        }
        Resolution::NxDomain => (Vec::new(), Vec::new(), Some("NXDOMAIN".to_owned())),
        Resolution::Failed(e) => (Vec::new(), Vec::new(), Some(format!("cannot resolve: {e}"))),
    };
    judge_addrs(rules, &judge, &name, &cnames, on, &addrs, note)
}

/// `host` and the port to judge, from `8.8.8.8`, `8.8.8.8:853/tcp`,
/// `[2001:db8::1]:853`, `2001:db8::1`, `dns.google:443`.
pub fn split_port(target: &str) -> anyhow::Result<(&str, Option<PortSpec>)> {
    let spec = |s: &str| {
        s.parse::<PortSpec>()
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{target:?}: expected HOST, HOST:PORT or HOST:PORT/tcp|udp"))
    };
    if target.parse::<IpAddr>().is_ok() {
        return Ok((target, None));
    }
    if let Some(rest) = target.strip_prefix('[') {
        let (v6, after) = rest
            .split_once("]:")
            .with_context(|| format!("{target:?}: expected [IPv6]:PORT"))?;
        return Ok((v6, Some(spec(after)?)));
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((host, Some(spec(port)?))),
        _ => Ok((target, None)),
    }
}

/// The rule ids of `policy` as the daemon numbers them (resolved names do
/// not change the numbering), for a check without a daemon.
pub fn rules_of(policy: &std::sync::Arc<Policy>) -> RuleTable {
    RuleTable::new(policy.clone())
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
        .map_or_else(|| format!("#{id}"), |r| r.to_string())
}

/// The rule that decides for `name` (on the port checked, for a name rule
/// with a port), for the explanation and the by-name verdict: among the
/// rules naming it, the most specific (`DomainPattern::specificity`), an
/// exception on a tie, as the DNS program decides.
fn name_rule(rules: &RuleTable, name: &str, on: Option<PortSpec>) -> Option<(Action, String)> {
    name_rule_of(rules, name, on).map(|r| (r.action, r.to_string()))
}

fn name_rule_of<'a>(
    rules: &'a RuleTable,
    name: &str,
    on: Option<PortSpec>,
) -> Option<crate::desired::Rule<'a>> {
    rules
        .iter()
        .filter_map(|r| {
            let pattern = match &r.target {
                Target::Domain(d) if d.matches(name) => d,
                Target::Port(p) => match (&p.target, on) {
                    (PortTarget::Domain(d), Some(on))
                        if d.matches(name)
                            && on.protos().all(|proto| p.spec.covers(on.port, proto)) =>
                    {
                        d
                    }
                    _ => return None,
                },
                _ => return None,
            };
            Some((pattern.specificity(), r.action == Action::Allow, r))
        })
        .max_by_key(|(spec, allow, _)| (*spec, *allow))
        .map(|(_, _, r)| r)
}

/// `cnames`: the CNAME chain the answer led through (the DNS program
/// matches every name on it, as it matches the question).
fn judge_addrs(
    rules: &RuleTable,
    judge: &Judge,
    target: &str,
    cnames: &[String],
    on: Option<PortSpec>,
    addrs: &[IpAddr],
    note: Option<String>,
) -> anyhow::Result<Verdict> {
    let audit = judge.audit()?;
    let mut lines = Vec::new();
    let mut per_addr = Vec::new();
    let mut denied = 0;
    // Each address, or each address on each protocol of the port asked.
    let mut judged = Vec::new();
    for &addr in addrs {
        match on {
            None => judged.push((addr, judge.verdict(addr)?, String::new())),
            Some(spec) => {
                for proto in spec.protos() {
                    let v = judge.verdict_on(addr, spec.port, proto.number())?;
                    judged.push((addr, v, format!(" port {}/{proto}", spec.port)));
                }
            }
        }
    }
    for &(addr, v, ref where_) in &judged {
        let (word, detail) = match v {
            KernelVerdict::Pass => ("passes", "no ban covers it".to_owned()),
            KernelVerdict::PortExcepted { exception } => (
                "passes",
                format!("excepted by {}", rule_text(rules, exception)),
            ),
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
        lines.push(format!("  {addr}{where_}: {word} ({detail})"));
        let mut one = json!({"address": addr.to_string(), "verdict": word, "detail": detail});
        if let Some(spec) = on {
            one["port"] = json!(spec.port);
            one["protocol"] = json!(where_.rsplit('/').next());
        }
        per_addr.push(one);
    }
    let all_denied = !judged.is_empty() && denied == judged.len();
    let is_name = target.parse::<IpAddr>().is_err();
    // The first name on the chain a rule names, as the DNS program takes
    // the first ban and the first exception along the chain.
    let chain: Vec<&str> = is_name
        .then_some(target)
        .into_iter()
        .chain(cnames.iter().map(String::as_str))
        .collect();
    let on_chain = |action| {
        chain.iter().find_map(|n| match name_rule(rules, n, on) {
            Some((a, r)) if a == action => Some(if *n == target {
                r
            } else {
                format!("{r} (through the CNAME {n})")
            }),
            _ => None,
        })
    };
    let deny_rule = on_chain(Action::Deny);
    let allow_rule = on_chain(Action::Allow);
    // A banned name (not excepted) is judged on every answer an
    // application in the enforced cgroup gets: whatever it resolves to is
    // banned before the application reads it.
    let by_name = deny_rule.is_some() && allow_rule.is_none();
    let blocked = (all_denied || by_name) && !audit;
    // A shared name (`"shared": true`): enforced by name, never by address.
    let shared = match chain
        .iter()
        .find_map(|n| name_rule_of(rules, n, on).filter(|r| r.action == Action::Deny))
    {
        Some(r) if by_name => judge.shared(r.id)?,
        _ => false,
    };
    let head = match (judged.len(), denied) {
        _ if shared && audit => format!(
            "not blocked (audit mode): {target} is a banned shared name; the kernel reports connections that name it but lets them through"
        ),
        _ if shared => format!(
            "blocked by name: {target} is a banned shared name (its front end serves other names): its addresses are never banned, and a TCP connection to them that names it (TLS server_name, HTTP Host, a proxy request) is refused at its first write; QUIC to them is refused"
        ),
        _ if by_name && audit => format!(
            "not blocked (audit mode): {target} is a banned name; the kernel reports but lets it through"
        ),
        _ if by_name
            && deny_rule
                .as_ref()
                .is_some_and(|r| r.contains("(through the CNAME")) =>
        {
            format!(
                "blocked: {target} is an alias of a banned name ({target} -> {}); the kernel bans the addresses of every DNS answer through it before the application reads them",
                cnames.join(" -> ")
            )
        }
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
    if shared {
        text.push_str("\n  mode: shared (enforced by the name each connection sends)");
    } else if by_name {
        text.push_str("\n  mode: dedicated (its addresses are banned)");
    }
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
            "port": on.map(|s| s.to_string()),
            "blocked": blocked,
            "audit": audit,
            "mode": if shared {
                json!("shared")
            } else if by_name {
                json!("dedicated")
            } else {
                serde_json::Value::Null
            },
            "addresses": per_addr,
            "note": note,
        }),
    })
}

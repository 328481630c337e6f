//! `enforcer status`: the daemon's state for people, or as JSON.

use std::{path::Path, process::ExitCode};

use super::{remote::request, table};
use crate::{
    control::{
        protocol::Command,
        status::{ReloadOutcome, Reloads, Status},
    },
    resolve::now_ms,
};

pub fn run(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let s: Status = request(socket, Command::Status)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        for line in text(&s, now_ms()) {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn or_dash(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |n| n.to_string())
}

fn list(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.into()
    } else {
        items.join(", ")
    }
}

/// The status as lines of text, at `now_ms`.
pub fn text(s: &Status, now_ms: u64) -> Vec<String> {
    let mut out = vec![
        format!(
            "enforcer {} — {} mode, up {}",
            s.version,
            s.mode,
            table::duration(s.uptime_s)
        ),
        format!("cgroup:    {}", s.cgroup),
        format!("xdp:       {}", list(&s.xdp_interfaces, "none")),
        format!("pins:      {}", s.pins),
        format!(
            "policy:    {} (loaded {} ago)",
            list(&s.policy.sources, "-"),
            table::duration(s.policy.age_s)
        ),
    ];
    if let Some(line) = reload_line(&s.reload, now_ms) {
        out.push(line);
    }
    let m = |k: &str| s.maps.get(k).copied().unwrap_or(0);
    out.push(format!(
        "maps:      {} exact v4, {} exact v6, {} ranges v4, {} ranges v6, {} exceptions v4, {} exceptions v6",
        m("deny_v4"),
        m("deny_v6"),
        m("deny_lpm_v4"),
        m("deny_lpm_v6"),
        m("allow_lpm_v4"),
        m("allow_lpm_v6")
    ));
    let n = &s.names;
    out.push(format!(
        "names:     {} ({} fresh, {} stale, {} nxdomain, {} pending)",
        n.total, n.fresh, n.stale, n.nxdomain, n.pending
    ));
    for (hook, v) in &s.events.per_hook {
        let c = |k: &str| v.get(k).copied().unwrap_or(0);
        out.push(format!(
            "  {hook:<11} {} denied, {} audited, {} passed, {} allowed, {} error",
            c("denied"),
            c("audited"),
            c("pass"),
            c("allowed"),
            c("error")
        ));
    }
    let e = &s.events;
    out.push(format!(
        "events:    {} lost (ring buffer full), {} XDP suppressed, {} skb coalesced",
        or_dash(e.lost_ringbuf_full),
        or_dash(e.xdp_suppressed),
        or_dash(e.skb_coalesced)
    ));
    let d = &s.dns;
    let c = |k: &str| or_dash(d.counters.as_ref().and_then(|c| c.get(k).copied()));
    out.push(format!(
        "dns:       {} learned v4, {} learned v6, {} learned for one cgroup now; {} responses, {} learned, {} malformed, {} learn_failed; {} reports ({} unparsed)",
        d.learned_v4,
        d.learned_v6,
        d.learned_scoped,
        c("responses"),
        c("learned"),
        c("malformed"),
        c("learn_failed"),
        d.reports.received,
        d.reports.unparsed
    ));
    if !s.agents.selectors.is_empty() {
        out.push(format!(
            "agents:    {} selectors ({}), {} processes contained",
            s.agents.selectors.len(),
            s.agents.selectors.join(", "),
            s.agents.contained.len()
        ));
        for c in &s.agents.contained {
            out.push(format!(
                "  {:>7} {:<16} {} (from {} {})",
                c.pid,
                table::fit(&c.agent, 16, table::Cut::End),
                table::fit(&c.cmdline, 60, table::Cut::End),
                c.root,
                c.root_exe
            ));
        }
    }
    for w in &s.policy.warnings {
        out.push(format!("warning:   {w}"));
    }
    out
}

/// The last reload, when there was one: a rejected one says why and that
/// the policy in force stays.
fn reload_line(r: &Reloads, now_ms: u64) -> Option<String> {
    let last = r.last.as_ref()?;
    let ago = table::duration(now_ms.saturating_sub(last.at_ms) / 1000);
    let earlier = if r.rejected > 0 {
        format!(" ({} rejected since start)", r.rejected)
    } else {
        String::new()
    };
    Some(match last.outcome {
        ReloadOutcome::Rejected => format!(
            "reload:    rejected {ago} ago: {}; the policy in force stays{earlier}",
            last.message
        ),
        o => format!("reload:    {} {ago} ago{earlier}", o.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::status::LastReload;

    #[test]
    fn the_text_shows_every_verdict_the_uptime_dns_and_a_rejected_reload() {
        let mut s = Status {
            version: "0.1.0".into(),
            mode: "enforce".into(),
            uptime_s: 3 * 3600 + 12 * 60,
            ..Status::default()
        };
        s.events.per_hook.insert(
            "connect4".into(),
            [("denied", 3), ("allowed", 2), ("error", 1), ("pass", 9)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        );
        s.dns.learned_v4 = 4;
        s.dns.counters = Some([("learn_failed".to_owned(), 7)].into_iter().collect());
        s.reload = Reloads {
            last: Some(LastReload {
                at_ms: 1_000,
                outcome: ReloadOutcome::Rejected,
                message: "policy.json:3:5: unknown field `dney`".into(),
            }),
            rejected: 2,
        };
        let shown = text(&s, 121_000).join("\n");
        for want in [
            "enforce mode, up 3 h 12 min",
            "connect4    3 denied, 0 audited, 9 passed, 2 allowed, 1 error",
            "dns:       4 learned v4, 0 learned v6, 0 learned for one cgroup now; - responses, - learned, - malformed, 7 learn_failed",
            "reload:    rejected 2 min ago: policy.json:3:5: unknown field `dney`; the policy in force stays (2 rejected since start)",
        ] {
            assert!(shown.contains(want), "{want:?} not in\n{shown}");
        }
        s.reload.last = None;
        assert!(!text(&s, 0).join("\n").contains("reload:"));
    }
}

//! Prometheus text exposition, served on an opt-in loopback address
//! (`report.metrics_listen` in the policy). The daemon renders the text
//! every few seconds; the HTTP side only hands out the latest rendering, so
//! a scraper never touches the daemon's state.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::watch,
};

/// What one rendering needs.
pub struct Snapshot<'a> {
    /// (hook, verdict, count)
    pub verdicts: Vec<(&'a str, &'a str, u64)>,
    pub lost: u64,
    pub xdp_suppressed: u64,
    pub skb_coalesced: u64,
    pub owner_unknown: u64,
    /// map name → entries
    pub maps: BTreeMap<&'a str, u64>,
    /// name state → names
    pub names: BTreeMap<&'a str, u64>,
    /// rule id → (rule text, blocked attempts recorded)
    pub rules: BTreeMap<u32, (String, u64)>,
    pub flows: u64,
    pub uptime_s: u64,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(s: &Snapshot<'_>) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut o,
        "enforcer_verdicts_total",
        "counter",
        "Verdicts taken by the kernel programs, per hook and verdict.",
    );
    for (hook, verdict, n) in &s.verdicts {
        let _ = writeln!(
            o,
            "enforcer_verdicts_total{{hook=\"{hook}\",verdict=\"{verdict}\"}} {n}"
        );
    }
    for (name, help, v) in [
        (
            "enforcer_events_lost_total",
            "Events not reported because the ring buffer was full.",
            s.lost,
        ),
        (
            "enforcer_xdp_events_suppressed_total",
            "XDP events over the per-CPU budget (counted, not reported).",
            s.xdp_suppressed,
        ),
        (
            "enforcer_skb_events_coalesced_total",
            "skb events for a socket reported within the interval.",
            s.skb_coalesced,
        ),
        (
            "enforcer_owner_unknown_total",
            "skb verdicts whose socket had no recorded owner.",
            s.owner_unknown,
        ),
    ] {
        family(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {v}");
    }
    family(
        &mut o,
        "enforcer_rule_blocks_total",
        "counter",
        "Blocked (or audited) attempts recorded per rule since the daemon started.",
    );
    for (id, (text, n)) in &s.rules {
        let _ = writeln!(
            o,
            "enforcer_rule_blocks_total{{rule=\"{id}\",target=\"{}\"}} {n}",
            escape(text)
        );
    }
    family(
        &mut o,
        "enforcer_map_entries",
        "gauge",
        "Entries in each verdict map.",
    );
    for (map, n) in &s.maps {
        let _ = writeln!(o, "enforcer_map_entries{{map=\"{map}\"}} {n}");
    }
    family(
        &mut o,
        "enforcer_names",
        "gauge",
        "Policy names per resolution state.",
    );
    for (state, n) in &s.names {
        let _ = writeln!(o, "enforcer_names{{state=\"{state}\"}} {n}");
    }
    family(
        &mut o,
        "enforcer_flows_recorded",
        "gauge",
        "Distinct flows recorded since the daemon started.",
    );
    let _ = writeln!(o, "enforcer_flows_recorded {}", s.flows);
    family(
        &mut o,
        "enforcer_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    let _ = writeln!(o, "enforcer_uptime_seconds {}", s.uptime_s);
    o
}

/// Serves the latest rendering to every HTTP request until `latest`'s
/// sender is dropped. Requests are bounded in size and time.
pub async fn serve(listener: TcpListener, latest: watch::Receiver<String>) {
    // Out of file descriptors (EMFILE) and the like: back off rather than
    // spin on an accept that fails at once.
    let mut backoff = Duration::from_millis(10);
    loop {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                stream
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let body = latest.borrow().clone();
        tokio::spawn(async move {
            let mut head = vec![0u8; 8192];
            let mut used = 0;
            let read = tokio::time::timeout(Duration::from_secs(2), async {
                while used < head.len() {
                    let n = stream.read(&mut head[used..]).await?;
                    if n == 0 {
                        break;
                    }
                    used += n;
                    if head[..used].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let first = String::from_utf8_lossy(&head[..used]);
            let path_ok = first
                .lines()
                .next()
                .is_some_and(|l| l.starts_with("GET /metrics ") || l.starts_with("GET / "));
            let (status, body) = if path_ok {
                ("200 OK", body)
            } else {
                ("404 Not Found", "try GET /metrics\n".to_owned())
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ =
                tokio::time::timeout(Duration::from_secs(2), stream.write_all(reply.as_bytes()))
                    .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_exposition_format() {
        let text = everything();
        assert!(text.contains("# TYPE enforcer_verdicts_total counter\n"));
        assert!(text.contains("enforcer_verdicts_total{hook=\"connect4\",verdict=\"denied\"} 5\n"));
        assert!(
            text.contains("enforcer_rule_blocks_total{rule=\"1\",target=\"deny \\\"x\\\"\"} 3\n")
        );
        assert!(text.contains("enforcer_map_entries{map=\"deny_v4\"} 7\n"));
        assert!(text.ends_with("enforcer_uptime_seconds 9\n"));
    }

    /// A rendering with a sample in every family (the rule's target has
    /// quotes, which the label value must escape).
    fn everything() -> String {
        let mut rules = BTreeMap::new();
        rules.insert(1, ("deny \"x\"".to_owned(), 3));
        render(&Snapshot {
            verdicts: vec![("connect4", "denied", 5), ("xdp", "audited", 1)],
            lost: 1,
            xdp_suppressed: 1,
            skb_coalesced: 1,
            owner_unknown: 1,
            maps: [("deny_v4", 7)].into_iter().collect(),
            names: [("stale", 2)].into_iter().collect(),
            rules,
            flows: 4,
            uptime_s: 9,
        })
    }

    /// Metric name → the label names its samples carry.
    fn families(text: &str) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let series = line.split_whitespace().next().unwrap();
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let keys = out.entry(name.to_owned()).or_default();
            for pair in labels
                .trim_end_matches('}')
                .split(',')
                .filter(|p| !p.is_empty())
            {
                let key = pair.split('=').next().unwrap().to_owned();
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        out
    }

    /// Every PromQL text of a Grafana dashboard (targets and variables).
    fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone());
                        }
                        _ => queries(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| queries(v, out)),
            _ => {}
        }
    }

    /// Each `enforcer_*` name in a query with the label names of its
    /// selector, and the label names of its `by (...)` clauses.
    fn used(query: &str) -> (Vec<(String, Vec<String>)>, Vec<String>) {
        let mut metrics = Vec::new();
        let mut rest = query;
        while let Some(at) = rest.find("enforcer_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let mut labels = Vec::new();
            if let Some(sel) = tail[end..].strip_prefix('{') {
                let close = sel.find('}').expect("a closed selector");
                for m in sel[..close].split(',') {
                    let key = m.split(['=', '!']).next().unwrap().trim();
                    labels.push(key.to_owned());
                }
            }
            metrics.push((tail[..end].to_owned(), labels));
            rest = &tail[end..];
        }
        let mut by = Vec::new();
        let mut rest = query;
        while let Some(at) = rest.find("by (") {
            let inner = &rest[at + 4..];
            let close = inner.find(')').expect("a closed by clause");
            by.extend(inner[..close].split(',').map(|l| l.trim().to_owned()));
            rest = &inner[close..];
        }
        (metrics, by)
    }

    #[test]
    fn the_grafana_dashboard_queries_only_what_is_exported_and_shows_all_of_it() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana/enforcer.json"
        );
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let exported = families(&everything());
        let mut texts = Vec::new();
        queries(&dashboard, &mut texts);
        assert!(texts.len() >= 10, "{texts:?}");
        let mut shown = Vec::new();
        check_queries(path, &texts, &exported, &mut shown);
        for name in exported.keys() {
            assert!(shown.contains(name), "{path} shows no panel of {name}");
        }
    }

    #[test]
    fn the_alerting_rules_query_only_what_is_exported() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/prometheus/enforcer-rules.yml"
        );
        let texts: Vec<String> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr:").map(|e| e.trim().to_owned()))
            .collect();
        assert!(texts.len() >= 5, "{texts:?}");
        check_queries(path, &texts, &families(&everything()), &mut Vec::new());
    }

    /// Each query's metrics and labels exist in `exported`; the metrics
    /// used are added to `shown`.
    fn check_queries(
        path: &str,
        texts: &[String],
        exported: &BTreeMap<String, Vec<String>>,
        shown: &mut Vec<String>,
    ) {
        // Added by the scrape, not by the daemon.
        let target_labels = ["instance", "job"];
        for q in texts {
            let (metrics, by) = used(q);
            for (name, labels) in &metrics {
                let have = exported
                    .get(name)
                    .unwrap_or_else(|| panic!("{path}: {q}: no metric {name} is exported"));
                for l in labels {
                    assert!(
                        have.contains(l) || target_labels.contains(&l.as_str()),
                        "{path}: {q}: {name} has no label {l} (it has {have:?})"
                    );
                }
                shown.push(name.clone());
            }
            for l in by {
                assert!(
                    target_labels.contains(&l.as_str())
                        || metrics.iter().any(|(n, _)| exported[n].contains(&l)),
                    "{path}: {q}: grouped by {l}, which none of its metrics has"
                );
            }
        }
    }
}

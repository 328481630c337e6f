//! `policy show --resolved` from the user's side: the binary reads a
//! resolved.json in the daemon's snapshot format and prints which banned
//! addresses also serve other names or shared front ends. Offline: no
//! daemon, no kernel, no traffic.

use std::process::Command;

use enforcer_tests::{TempDir, daemon::enforcer_bin};

/// One name of the snapshot's `answers.names`, as the daemon writes it.
fn name(addrs: &[&str]) -> serde_json::Value {
    let addrs: serde_json::Map<String, serde_json::Value> = addrs
        .iter()
        .map(|a| {
            (
                (*a).to_owned(),
                serde_json::json!({"last_seen_ms": 1_700_000_000_000u64, "expires_ms": null}),
            )
        })
        .collect();
    serde_json::json!({
        "status": "fresh",
        "addrs": addrs,
        "cnames": [],
        "ttl_s": 300,
        "last_success_ms": 1_700_000_000_000u64,
        "last_attempt_ms": 1_700_000_000_000u64,
        "last_error": null,
        "failures": 0,
        "ignored": [],
    })
}

fn show(tmp: &TempDir, policy: &std::path::Path, json: bool) -> String {
    let mut cmd = Command::new(enforcer_bin());
    cmd.args(["policy", "show", "--resolved", "--policy"])
        .arg(policy)
        .arg("--state-dir")
        .arg(tmp.path());
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{:?}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn policy_show_resolved_reports_banned_addresses_that_serve_more_than_the_ban() {
    let tmp = TempDir::new("collateral");
    let policy = tmp.write(
        "policy.json",
        r#"{"version": 1,
            "deny": {"domains": ["api.ai.test", "chatgpt.com", "front.ai.test", "own.ai.test"]},
            "allow": {"domains": ["docs.ai.test"]}}"#,
    );
    let snapshot = serde_json::json!({
        "updated_ms": 1_700_000_000_000u64,
        "sources": [policy.display().to_string()],
        "mode": "enforce",
        "answers": {"names": {
            // Shares its address with an allowed name.
            "api.ai.test": name(&["192.0.2.10"]),
            "docs.ai.test": name(&["192.0.2.10"]),
            // Shared in the catalog, banned as dedicated here.
            "chatgpt.com": name(&["198.51.100.7"]),
            // Inside Cloudflare's published 104.16.0.0/13.
            "front.ai.test": name(&["104.16.0.1"]),
            // The provider's own address: no collateral.
            "own.ai.test": name(&["203.0.113.5"]),
        }},
    });
    tmp.write("resolved.json", &snapshot.to_string());

    let text = show(&tmp, &policy, false);
    assert!(
        text.contains(&format!(
            "192.0.2.10 banned by api.ai.test (#{} ",
            enforcer_tests::harness::rule_id(
                &std::fs::read_to_string(&policy).unwrap(),
                "api.ai.test"
            )
        )) && text.contains("also serves docs.ai.test (allowed"),
        "{text}"
    );
    assert!(
        text.contains("104.16.0.1 banned by front.ai.test")
            && text.contains("in the shared front end 104.16.0.0/13 (Cloudflare"),
        "{text}"
    );
    assert!(
        text.contains("198.51.100.7 banned by chatgpt.com")
            && text.contains("chatgpt.com is shared in the catalog"),
        "{text}"
    );
    assert!(!text.contains("203.0.113.5 banned"), "{text}");
    assert!(
        text.contains(
            "collateral: 3 of 4 addresses banned by 4 dedicated names (1 serving other names, 1 in shared front ends, 1 of catalog-shared names)"
        ),
        "{text}"
    );

    let v: serde_json::Value = serde_json::from_str(&show(&tmp, &policy, true)).unwrap();
    let list = v["collateral"].as_array().expect("a collateral array");
    let entry = |addr: &str| {
        list.iter()
            .find(|c| c["address"] == addr)
            .unwrap_or_else(|| panic!("{addr} missing: {list:?}"))
    };
    assert_eq!(list.len(), 3, "{list:?}");
    let c = entry("192.0.2.10");
    assert_eq!(c["banned_by"][0]["name"], "api.ai.test");
    assert_eq!(
        c["banned_by"][0]["origin"],
        format!("{}: deny.domains[0]", policy.display())
    );
    assert_eq!(c["why"][0]["kind"], "other_names");
    assert_eq!(c["why"][0]["names"][0], "docs.ai.test");
    assert_eq!(entry("104.16.0.1")["why"][0]["kind"], "front_end");
    assert!(
        entry("104.16.0.1")["why"][0]["source"]
            .as_str()
            .unwrap()
            .contains("cloudflare.com/ips")
    );
    assert_eq!(entry("198.51.100.7")["why"][0]["kind"], "catalog_shared");
    assert!(
        v["collateral_summary"]
            .as_str()
            .unwrap()
            .starts_with("collateral: 3 of 4")
    );
}

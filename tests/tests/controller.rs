//! The controller end to end: a real DNS server on loopback, the daemon
//! binary, names turned into enforced addresses and kept current.

use std::time::{Duration, Instant};

use enforcer::resolve::NameStatus;
use enforcer_tests::{
    daemon::{Daemon, enforcer},
    resolving::{wait_for, world},
};

#[test]
fn a_banned_names_a_and_aaaa_are_enforced_before_ready() {
    let w = world("na");
    w.dns
        .set_addrs("banned.test", &["10.77.0.2", "fd77::2"], 60);
    let daemon = Daemon::start(&w.args(w.policy(r#""deny": {"domains": ["banned.test"]},"#, 60)));
    // READY comes after the first resolution is in the maps.
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    assert_eq!(w.probe("[fd77::2]:0"), "EPERM");
    assert_eq!(w.probe("10.77.0.1:0"), "ok");
    let snap = w.snapshot();
    let name = &snap.answers.names["banned.test"];
    assert_eq!(name.status, NameStatus::Fresh);
    assert_eq!(name.addrs.len(), 2);
    assert!(name.ttl_s.is_some_and(|t| t <= 60));

    // `check` asks the daemon, which judges against the kernel maps.
    let (code, out, _) = w.check("banned.test");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("blocked: banned.test is a banned name")
            && out.contains("10.77.0.2: denied")
            && out.contains("fd77::2: denied"),
        "{out}"
    );
    let (code, out, _) = w.check("10.77.0.2");
    assert_eq!(code, 1, "{out}");
    let (code, _, _) = w.check("10.77.0.1");
    assert_eq!(code, 0);
    daemon.stop();
}

#[test]
fn a_cname_chain_is_followed_to_its_addresses() {
    let w = world("cn");
    w.dns.set_cname("alias.test", "cdn.test", 60);
    w.dns.set_cname("cdn.test", "edge.test", 60);
    w.dns.set_addrs("edge.test", &["10.77.0.3"], 60);
    let daemon = Daemon::start(&w.args(w.policy(r#""deny": {"domains": ["alias.test"]},"#, 60)));
    assert_eq!(w.probe("10.77.0.3:0"), "EPERM");
    let snap = w.snapshot();
    assert_eq!(
        snap.answers.names["alias.test"].cnames,
        ["cdn.test", "edge.test"]
    );
    daemon.stop();
}

#[test]
fn a_changed_address_is_enforced_after_the_ttl_and_the_old_one_kept_for_grace() {
    let w = world("tt");
    w.dns.set_addrs("moving.test", &["10.77.0.2"], 1);
    let daemon = Daemon::start(&w.args(w.policy(r#""deny": {"domains": ["moving.test"]},"#, 3)));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    w.dns.set_addrs("moving.test", &["10.77.0.3"], 1);
    wait_for(10, "the new address to be enforced", || {
        w.probe("10.77.0.3:0") == "EPERM"
    });
    let moved = Instant::now();
    // Clients may still hold the old answer: it stays banned for grace.
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    let snap = w.snapshot();
    let old = &snap.answers.names["moving.test"].addrs[&"10.77.0.2".parse().unwrap()];
    assert!(old.expires_ms.is_some(), "{old:?}");
    wait_for(15, "the old address to be released", || {
        w.probe("10.77.0.2:0") == "ok"
    });
    // Seen gone within ~one refresh (<= 2 s) of the change, released 3 s later.
    assert!(
        moved.elapsed() >= Duration::from_millis(1500),
        "released too early: {:?}",
        moved.elapsed()
    );
    assert_eq!(w.probe("10.77.0.3:0"), "EPERM");
    daemon.stop();
}

#[test]
fn when_the_dns_server_fails_the_addresses_stay_and_the_name_is_stale() {
    let mut w = world("st");
    w.dns.set_addrs("banned.test", &["10.77.0.2"], 1);
    let daemon = Daemon::start(&w.args(w.policy(r#""deny": {"domains": ["banned.test"]},"#, 0)));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    // SERVFAIL: an answer that says nothing. Grace is 0, so only the
    // stale rule keeps the address.
    w.dns.set_servfail(true);
    wait_for(15, "the name to turn stale", || {
        w.snapshot().answers.names["banned.test"].status == NameStatus::Stale
    });
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    // The server goes away entirely.
    w.dns.stop();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    let state = w.tmp.path().to_str().unwrap();
    let policy = w.tmp.path().join("policy.json");
    let (code, out, err) = enforcer(&[
        "policy",
        "show",
        "--resolved",
        "--json",
        "--policy",
        policy.to_str().unwrap(),
        "--state-dir",
        state,
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let name = &v["names"][0];
    assert_eq!(name["name"], "banned.test");
    assert_eq!(name["status"], "stale");
    assert_eq!(name["addresses"][0]["address"], "10.77.0.2");
    assert!(
        name["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{name}"
    );
    assert!(name["failures"].as_u64().unwrap() >= 1);
    daemon.stop();
}

#[test]
fn a_wildcard_rule_does_not_ban_its_apex() {
    let w = world("wc");
    w.dns.set_all(
        &[
            ("wild.test", &["10.77.0.4"]),
            ("deep.sub.wild.test", &["10.77.0.4"]),
        ],
        60,
    );
    let daemon = Daemon::start(&w.args(w.policy(r#""deny": {"domains": ["*.wild.test"]},"#, 60)));
    // `*.wild.test` names what is below wild.test: the apex is another
    // name, reachable (subdomains are banned on the answers applications
    // get: tests/tests/dns_answers.rs).
    assert_eq!(w.probe("10.77.0.4:0"), "ok");
    let (code, out, _) = w.check("deep.sub.wild.test");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("*.wild.test"), "{out}");
    let (code, out, _) = w.check("wild.test");
    assert_eq!(code, 0, "{out}");
    daemon.stop();
}

#[test]
fn an_internal_name_inside_a_banned_range_is_excepted() {
    let w = world("ex");
    w.dns.set_addrs("llm.corp.test", &["10.77.0.5"], 60);
    let daemon = Daemon::start(&w.args(w.policy(
        r#""deny": {"cidrs": ["10.77.0.0/24"]}, "allow": {"domains": ["llm.corp.test"]},"#,
        60,
    )));
    assert_eq!(w.probe("10.77.0.5:0"), "ok");
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    daemon.stop();
}

#[test]
fn a_drop_in_written_while_running_is_applied_in_order() {
    let w = world("di");
    w.dns.set_addrs("late.test", &["10.77.0.3"], 60);
    let daemon = Daemon::start(&w.args(w.policy(r#""deny": {"cidrs": ["10.77.0.2"]},"#, 60)));
    assert_eq!(w.probe("10.77.0.3:0"), "ok");
    // Config management drops files; no signal is sent.
    w.tmp.write(
        "policy.d/20-names.json",
        r#"{"version":1,"deny":{"domains":["late.test"]}}"#,
    );
    wait_for(10, "the drop-in to be applied", || {
        w.probe("10.77.0.3:0") == "EPERM"
    });
    // A later drop-in's scalar wins: audit mode lets traffic through.
    w.tmp.write(
        "policy.d/10-enforce.json",
        r#"{"version":1,"mode":"enforce"}"#,
    );
    w.tmp
        .write("policy.d/30-audit.json", r#"{"version":1,"mode":"audit"}"#);
    wait_for(10, "audit mode from the last drop-in", || {
        w.probe("10.77.0.2:0") == "ok"
    });
    assert_eq!(w.snapshot().mode, "audit");
    daemon.stop();
}

/// (file name relative to the policy dir, contents, the line, the field
/// the error must name). Each is written over a good policy while the
/// daemon runs.
fn malformed(dns: &str) -> Vec<(&'static str, String, usize, &'static str)> {
    let up = format!(r#""resolver": {{"upstreams": ["{dns}"]}}"#);
    vec![
        (
            "policy.json",
            format!("{{\"version\": 1,\n\"modes\": \"audit\", {up}}}"),
            2,
            "modes",
        ),
        (
            "policy.json",
            format!("{{\"version\": 1,\n\"mode\": \"block\", {up}}}"),
            2,
            "mode",
        ),
        (
            "policy.json",
            format!("{{\"version\": 1, {up},\n\"deny\": {{\"cidrs\": [\"10.0.0.300/8\"]}}}}"),
            2,
            "deny.cidrs[0]",
        ),
        (
            "policy.json",
            format!("{{\"version\": 1, {up},\n\"deny\": {{\"cidrs\": [\"10.77.0.1/24\"]}}}}"),
            2,
            "deny.cidrs[0]",
        ),
        (
            "policy.json",
            format!(
                "{{\"version\": 1, {up},\n\"deny\": {{\"cidrs\": [\"10.0.0.0/8\",\n \"10.0.0.0/33\"]}}}}"
            ),
            3,
            "deny.cidrs[1]",
        ),
        (
            "policy.json",
            format!("{{\"version\": 1, {up},\n\"deny\": {{\"domains\": [\"api.*.test\"]}}}}"),
            2,
            "deny.domains[0]",
        ),
        (
            "policy.json",
            format!("{{\"version\": 1, {up},\n\"allow\": {{\"domains\": [\"a..test\"]}}}}"),
            2,
            "allow.domains[0]",
        ),
        (
            "policy.json",
            format!("{{\"version\": 2, {up}}}"),
            1,
            "version",
        ),
        (
            "policy.json",
            format!("{{{up},\n\"deny\": {{}}}}"),
            2,
            "(top level)",
        ),
        (
            "policy.json",
            format!(
                "{{\"version\": 1,\n\"resolver\": {{\"upstreams\": [\"{dns}\"], \"min_ttl_s\": 90, \"max_ttl_s\": 60}}}}"
            ),
            2,
            "resolver",
        ),
        (
            "policy.json",
            "{\"version\": 1,\n\"resolver\": {\"upstreams\": [\"dns.test:53\"]}}".into(),
            2,
            "resolver.upstreams[0]",
        ),
        (
            "policy.json",
            format!(
                "{{\"version\": 1,\n\"resolver\": {{\"upstreams\": [\"{dns}\"], \"concurrency\": 0}}}}"
            ),
            2,
            "resolver",
        ),
        (
            "policy.json",
            format!("{{\"version\": 1, {up}}}\n}}"),
            2,
            "(after the policy)",
        ),
        (
            "policy.json",
            format!("{{\"version\": 1 {up}}}"),
            1,
            "(syntax)",
        ),
        (
            "policy.json",
            format!("{{\"version\": 1, {up},\n\"deny\": {{\"cidrs\": \"10.0.0.0/8\"}}}}"),
            2,
            "deny.cidrs",
        ),
        (
            "policy.json",
            format!(
                "{{\"version\": 1,\n\"resolver\": {{\"upstreams\": [\"{dns}\"], \"ttl\": 5}}}}"
            ),
            2,
            "resolver.ttl",
        ),
        (
            "policy.d/50-bad.json",
            "{\"version\": 1,\n\"deny\": {\"cidrs\": [\"10.77.0.1/24\"]}}".into(),
            2,
            "deny.cidrs[0]",
        ),
        (
            "policy.d/50-bad.json",
            "{\"version\": 1,\n\"allow\": {\"cidr\": []}}".into(),
            2,
            "allow.cidr",
        ),
    ]
}

#[test]
fn every_malformed_reload_is_rejected_precisely_and_the_maps_stay_as_they_were() {
    let w = world("mf");
    w.dns.set_addrs("banned.test", &["10.77.0.2"], 60);
    let good = w.policy(
        r#""deny": {"domains": ["banned.test"], "cidrs": ["10.77.0.4"]},"#,
        60,
    );
    let good_text = std::fs::read_to_string(&good).unwrap();
    let daemon = Daemon::start(&w.args(good.clone()));
    let before = w.maps();
    assert!(!before.is_empty());
    let cases = malformed(&w.dns.addr().to_string());
    assert!(cases.len() >= 15);
    for (file, text, line, field) in cases {
        let offset = daemon.log_text().len();
        let path = w.tmp.write(file, &text);
        let expected = format!("{}:{line}:", path.display());
        let field_text = format!(": {field}: ");
        wait_for(10, &format!("the rejection of {file}: {text}"), || {
            let log = daemon.log_text();
            log[offset..].lines().any(|l| {
                l.contains("reload rejected") && l.contains(&expected) && l.contains(&field_text)
            })
        });
        assert_eq!(w.maps(), before, "maps changed after rejecting {text}");
        assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
        // Put the good files back for the next case.
        if file.starts_with("policy.d/") {
            std::fs::remove_file(&path).unwrap();
        }
        w.tmp.write("policy.json", &good_text);
    }
    // And a good change still goes through.
    w.tmp
        .write("policy.json", &good_text.replace("10.77.0.4", "10.77.0.5"));
    wait_for(10, "the good policy", || w.probe("10.77.0.5:0") == "EPERM");
    assert_eq!(w.probe("10.77.0.4:0"), "ok");
    daemon.stop();
}

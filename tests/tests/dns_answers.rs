//! In-kernel DNS answers: an application that resolves a banned name with
//! its own DNS server and connects the instant it reads the answer gets
//! EPERM; wildcards at any depth, CNAME chains, learned exceptions, TTL
//! expiry, scoping of answers from servers that are not the host's, and
//! hostile or malformed answers. Real daemon, real DNS servers in the test
//! namespace, real processes in the test cgroup; malformed packets through
//! BPF_PROG_TEST_RUN on the real program.

use enforcer_tests::{
    Probe, World,
    daemon::{Daemon, enforcer},
    dns::DnsServer,
};

/// The namespace's loopback addresses: answers point here, and the DNS
/// servers the applications ask listen here.
const LO: &[&str] = &[
    "10.77.0.1/32",
    "10.77.0.2/32",
    "10.77.0.3/32",
    "10.77.0.4/32",
    "10.77.0.5/32",
    "10.77.0.9/32",
    "10.77.0.10/32",
    "10.77.0.53/32",
    "10.77.0.54/32",
    "fd77::2/128",
    "fd77::53/128",
];

/// A DNS server on port 53 at `addr` inside the world's namespace.
fn server_in(w: &World, addr: &str) -> DnsServer {
    let addr = addr.parse().unwrap();
    w.ns.enter(|| DnsServer::start_on(addr))
}

/// `NAME` resolved through `server` by a process in `cgroup`, then at once
/// a TCP connect to the first address.
fn resolve_connect(
    w: &World,
    cgroup: &std::path::Path,
    server: &str,
    name: &str,
    rtype: &str,
) -> String {
    Probe::new()
        .cgroup(cgroup)
        .netns(w.ns.name())
        .run(&format!("dns-tcp:{name}:{rtype}"), server)
        .result
}

/// A policy: `rules`, and the daemon's own resolver at `upstream` (which
/// it cannot reach from the host's namespace: its own resolutions fail,
/// and what is learned comes from the applications' answers).
fn policy(w: &World, rules: &str, upstream: &str, grace_s: u32) -> std::path::PathBuf {
    w.tmp.write(
        "policy.json",
        &format!(
            r#"{{"version": 1, {rules}
  "resolver": {{"upstreams": ["{upstream}"], "min_ttl_s": 1, "max_ttl_s": 60, "grace_s": {grace_s}}}}}"#
        ),
    )
}

fn status(w: &World) -> serde_json::Value {
    let (code, out, err) =
        enforcer(&["status", "--json", "--socket", w.socket().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn a_name_resolved_by_the_application_itself_is_denied_the_instant_it_has_the_answer() {
    let mut w = World::new("da", LO);
    let dns = server_in(&w, "10.77.0.53:53");
    let dns6 = server_in(&w, "[fd77::53]:53");
    for d in [&dns, &dns6] {
        d.set_addrs("api.banned.test", &["10.77.0.2", "fd77::2"], 60);
        d.set_addrs("deep.x.y.wild.test", &["10.77.0.3"], 60);
        d.set_addrs("wild.test", &["10.77.0.1"], 60);
        d.set_cname("innocent.test", "cdn.wild.test", 60);
        d.set_addrs("cdn.wild.test", &["10.77.0.4"], 60);
        d.set_addrs("llm.corp.test", &["10.77.0.9"], 60);
        d.set_addrs("sink.test", &["127.0.0.1"], 60);
        // Every answer also carries a record for another name.
        d.add_extra("victim.test", "10.77.0.5");
    }
    let p = policy(
        &w,
        r#""deny": {"domains": ["api.banned.test", "*.wild.test", "sink.test"], "cidrs": ["10.77.0.8/30"]},
           "allow": {"domains": ["llm.corp.test"]},"#,
        "10.77.0.54:53",
        60,
    );
    let daemon = Daemon::start(&w.args(&p));
    let other = w.cg.child("other");
    let cg = w.cg.path().to_owned();
    let ask = |server: &str, name: &str, rtype: &str| resolve_connect(&w, &cg, server, name, rtype);
    // The daemon never resolved these: what is banned comes from the
    // answers the application got.
    let first = ask("10.77.0.53:53", "api.banned.test", "A");
    assert_eq!(
        first,
        "EPERM",
        "{}\n{}",
        status(&w)["dns"],
        daemon.log_text()
    );
    assert_eq!(ask("10.77.0.53:53", "api.banned.test", "AAAA"), "EPERM");
    assert_eq!(
        ask("[fd77::53]:53", "api.banned.test", "AAAA"),
        "EPERM",
        "AAAA over IPv6"
    );
    // A wildcard covers any depth below it, not the apex.
    assert_eq!(ask("10.77.0.53:53", "deep.x.y.wild.test", "A"), "EPERM");
    assert_eq!(ask("10.77.0.53:53", "wild.test", "A"), "ok");
    // An innocent name whose chain ends at a banned one.
    assert_eq!(ask("10.77.0.53:53", "innocent.test", "A"), "EPERM");
    // An allowed internal name inside a banned range: its answer excepts it.
    assert_eq!(
        w.probe("10.77.0.9:0"),
        "EPERM",
        "banned range before the answer"
    );
    assert_eq!(ask("10.77.0.53:53", "llm.corp.test", "A"), "ok");
    assert_eq!(
        w.probe("10.77.0.10:0"),
        "EPERM",
        "the rest of the range stays banned"
    );
    // Records for other names and sinkhole answers are never banned.
    assert_eq!(w.probe("10.77.0.5:0"), "ok");
    assert_eq!(ask("10.77.0.53:53", "sink.test", "A"), "ok");
    // Learned from a server that is not the host's: only for the cgroup
    // whose socket received the answer.
    let r = Probe::new()
        .cgroup(&other)
        .netns(w.ns.name())
        .run("tcp", "10.77.0.2:0")
        .result;
    assert_eq!(
        r, "ok",
        "a process in another cgroup is not bound by that answer"
    );
    let s = status(&w);
    let dns_status = &s["dns"];
    assert!(
        dns_status["learned_v4"].as_u64().unwrap() >= 3,
        "{dns_status}"
    );
    assert!(
        dns_status["counters"]["ignored"].as_u64().unwrap() >= 1,
        "{dns_status}"
    );
    assert_eq!(dns_status["counters"]["malformed"], 0, "{dns_status}");
    daemon.stop();
}

//! Names must never silently stop being enforced: restarts without DNS,
//! half answers, hostile answers, a dead resolver at start, `check` against
//! the kernel, reloads on content changes only, resolv.conf followed, and
//! a loop that survives transient errors. Real daemon, real DNS servers on
//! loopback, real connects from a process in the test cgroup.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use enforcer::resolve::NameStatus;
use enforcer_tests::{
    daemon::{Daemon, enforcer},
    dns::DnsServer,
    resolving::{Resolving, wait_for, world},
};
use hickory_proto::rr::RecordType;

fn status(w: &Resolving) -> serde_json::Value {
    let socket = w.socket();
    let (code, out, err) = enforcer(&["status", "--json", "--socket", socket.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

#[test]
fn a_restart_without_dns_keeps_every_name_ban() {
    let mut w = world("rs");
    w.dns.set_addrs("banned.test", &["10.77.0.2", "fd77::2"], 1);
    let args = w.args(w.policy(r#""deny": {"domains": ["banned.test"]},"#, 1));
    let daemon = Daemon::start(&args);
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    daemon.kill9();
    w.dns.stop();
    // Restart offline: the previous answers are the starting point.
    let daemon = Daemon::start(&args);
    // Past grace (1 s) and several refresh rounds (TTL clamp 1..2 s).
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM", "{}", daemon.log_text());
    assert_eq!(w.probe("[fd77::2]:0"), "EPERM");
    let names = &status(&w)["names"];
    assert_eq!(names["stale"], 1, "{names}");
    // The same after a clean stop.
    daemon.stop();
    let daemon = Daemon::start(&args);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM", "{}", daemon.log_text());
    let snap = w.snapshot();
    assert_eq!(snap.answers.names["banned.test"].addrs.len(), 2);
    daemon.stop();
}

#[test]
fn a_half_answer_enforces_what_answered() {
    let w = world("hf");
    // A resolver that refuses AAAA: A answers, the name is partial.
    w.dns.refuse(RecordType::AAAA);
    w.dns.set_addrs("new.test", &["10.77.0.2", "fd77::2"], 60);
    w.dns.set_addrs("llm.corp.test", &["10.77.0.5"], 60);
    let daemon = Daemon::start(&w.args(w.policy(
        r#""deny": {"domains": ["new.test"], "cidrs": ["10.77.0.4/30"]},
           "allow": {"domains": ["llm.corp.test"]},"#,
        60,
    )));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM", "{}", daemon.log_text());
    assert_eq!(
        w.probe("10.77.0.5:0"),
        "ok",
        "the exception from the A answer"
    );
    assert_eq!(w.probe("10.77.0.4:0"), "EPERM");
    let snap = w.snapshot();
    for name in ["new.test", "llm.corp.test"] {
        let s = &snap.answers.names[name];
        assert_eq!(s.status, NameStatus::Partial, "{name}: {s:?}");
        assert!(
            s.last_error.as_deref().is_some_and(|e| e.contains("AAAA")),
            "{s:?}"
        );
    }
    assert_eq!(status(&w)["names"]["partial"], 2);
    daemon.stop();
}

#[test]
fn records_for_other_names_and_sinkholes_are_never_banned() {
    let w = world("hs");
    w.dns.set_addrs("banned.test", &["10.77.0.2"], 60);
    // Every answer also carries a record for another name.
    w.dns.add_extra("victim.test", "10.77.0.3");
    // Sinkholes, and a name pointing at the resolver's own address.
    w.dns
        .set_addrs("sink.test", &["0.0.0.0", "::", "169.254.0.1"], 60);
    w.dns.set_addrs("self.test", &["127.0.0.1", "::1"], 60);
    let daemon = Daemon::start(&w.args(w.policy(
        r#""deny": {"domains": ["banned.test", "sink.test", "self.test"]},"#,
        60,
    )));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    assert_eq!(w.probe("10.77.0.3:0"), "ok", "{}", daemon.log_text());
    assert_ne!(w.probe("127.0.0.1:0"), "EPERM");
    let maps = w.maps();
    let banned: Vec<IpAddr> = maps
        .deny_v4
        .keys()
        .map(|k| IpAddr::from(k.to_ne_bytes()))
        .collect();
    assert_eq!(banned, ["10.77.0.2".parse::<IpAddr>().unwrap()]);
    assert!(maps.deny_v6.is_empty(), "{:?}", maps.deny_v6);
    // 5 sinkhole/self addresses, plus the other name's record each time.
    let ignored = status(&w)["names"]["ignored_addresses"].as_u64().unwrap();
    assert!(ignored >= 6, "{ignored}");
    // The resolver keeps working: a change is still picked up.
    w.dns.set_addrs("banned.test", &["10.77.0.4"], 60);
    let socket = w.socket();
    let (code, _, err) = enforcer(&["reload", "--socket", socket.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    wait_for(10, "the new address", || w.probe("10.77.0.4:0") == "EPERM");
    daemon.stop();
}

/// A loopback port nothing listens on (bound, then released).
fn dead_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn with_dns_down_at_start_the_daemon_says_so_and_reload_retries_at_once() {
    let w = world("dd");
    let dead = dead_port();
    let policy = w.tmp.write(
        "policy.json",
        &format!(
            r#"{{"version": 1, "deny": {{"domains": ["banned.test"]}},
  "resolver": {{"upstreams": ["{dead}"], "min_ttl_s": 1, "max_ttl_s": 3600, "grace_s": 60}}}}"#
        ),
    );
    let daemon = Daemon::start(&w.args(policy));
    let names = &status(&w)["names"];
    assert_eq!(names["never_answered"], 1, "{names}");
    assert!(
        names["summary"]
            .as_str()
            .is_some_and(|s| s.contains("never answered")),
        "{names}"
    );
    let log = daemon.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("did not answer")),
        "{log}"
    );
    assert!(!log.contains("first resolution of every name is in the maps"));
    // Failures back off (1, 2, 4 s, then 8 s): let it get there.
    std::thread::sleep(Duration::from_secs(8));
    let mut dns = DnsServer::start_on(dead);
    dns.set_addrs("banned.test", &["10.77.0.2"], 60);
    let socket = w.socket();
    let asked = Instant::now();
    let (code, out, err) = enforcer(&["reload", "--socket", socket.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("resolved again"), "{out}");
    wait_for(10, "the name to resolve after reload", || {
        w.probe("10.77.0.2:0") == "EPERM"
    });
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "reload did not retry at once: {:?}",
        asked.elapsed()
    );
    dns.stop();
    daemon.stop();
}

#[test]
fn check_reports_what_the_kernel_does() {
    let w = world("ck");
    w.dns.set_all(
        &[
            ("wild.test", &["10.77.0.4"]),
            ("deep.sub.wild.test", &["10.77.0.3"]),
            ("banned.test", &["10.77.0.2"]),
            ("unlisted.test", &["10.77.0.5"]),
        ],
        60,
    );
    let policy = w.policy(
        r#""deny": {"domains": ["*.wild.test", "banned.test", "nothing.test"], "cidrs": ["10.77.0.5"]},"#,
        60,
    );
    let daemon = Daemon::start(&w.args(policy));
    // (target, blocked?, the address a real connect tries)
    let cases = [
        ("banned.test", true, Some("10.77.0.2:0")),
        // Banned names: whatever an application's answer holds is banned
        // before it reads it (tests/tests/dns_answers.rs connects).
        ("deep.sub.wild.test", true, None),
        ("nothing.test", true, None),
        // A wildcard's apex is another name.
        ("wild.test", false, Some("10.77.0.4:0")),
        // Not named anywhere, but its address is banned.
        ("unlisted.test", true, Some("10.77.0.5:0")),
        ("10.77.0.5", true, None),
        // Its NAT64 form is judged by the IPv4 rules, as in the kernel.
        ("64:ff9b::a4d:5", true, None),
        ("10.77.0.1", false, Some("10.77.0.1:0")),
    ];
    w.expect_checks(&cases);
    let (_, out, _) = w.check("banned.test");
    assert!(
        out.contains("10.77.0.2: denied") && out.contains("banned.test"),
        "{out}"
    );
    daemon.stop();
}

#[test]
fn one_edit_is_one_reload_and_reads_are_none() {
    let w = world("ed");
    std::fs::remove_dir(w.tmp.path().join("policy.d")).unwrap();
    let policy = w.policy(r#""deny": {"cidrs": ["10.77.0.2"]},"#, 60);
    let daemon = Daemon::start(&w.args(policy.clone()));
    // Reads: `cat`, `policy show`, the daemon's own reads.
    let _ = std::fs::read_to_string(&policy).unwrap();
    let (code, _, err) = enforcer(&["policy", "show", "--policy", policy.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&daemon.log_text(), "policy reloaded"), 0);
    // One edit.
    let text = std::fs::read_to_string(&policy).unwrap();
    w.tmp
        .write("policy.json", &text.replace("10.77.0.2", "10.77.0.3"));
    std::thread::sleep(Duration::from_secs(5));
    let log = daemon.log_text();
    assert_eq!(count(&log, "policy reloaded"), 1, "{log}");
    assert_eq!(w.probe("10.77.0.3:0"), "EPERM");
    assert_eq!(w.probe("10.77.0.2:0"), "ok");
    // A drop-in directory created after start is followed.
    std::fs::create_dir(w.tmp.path().join("policy.d")).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    w.tmp.write(
        "policy.d/10-more.json",
        r#"{"version": 1, "deny": {"cidrs": ["10.77.0.4"]}}"#,
    );
    wait_for(10, "the late drop-in", || w.probe("10.77.0.4:0") == "EPERM");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&daemon.log_text(), "policy reloaded"), 2);
    daemon.stop();
}

#[test]
fn resolv_conf_changes_are_followed() {
    let w = world("rc");
    // resolv.conf names servers on port 53 only: two loopback addresses
    // of our own (127/8 is all loopback), unique to this test run.
    let net = 100 + (std::process::id() % 100) as u8;
    let first: SocketAddr = format!("127.53.{net}.1:53").parse().unwrap();
    let second: SocketAddr = format!("127.53.{net}.2:53").parse().unwrap();
    let mut dns1 = DnsServer::start_on(first);
    let mut dns2 = DnsServer::start_on(second);
    dns1.set_addrs("banned.test", &["10.77.0.2"], 1);
    dns2.set_addrs("banned.test", &["10.77.0.3"], 1);
    // /etc/resolv.conf is usually a symlink into /run.
    std::fs::create_dir_all(w.tmp.path().join("run")).unwrap();
    w.tmp
        .write("run/resolv.conf", &format!("nameserver {}\n", first.ip()));
    let link = w.tmp.path().join("resolv.conf");
    std::os::unix::fs::symlink(w.tmp.path().join("run/resolv.conf"), &link).unwrap();
    let policy = w.tmp.write(
        "policy.json",
        r#"{"version": 1, "deny": {"domains": ["banned.test"]},
  "resolver": {"min_ttl_s": 1, "max_ttl_s": 2, "grace_s": 1}}"#,
    );
    let mut args = w.args(policy);
    args.extra = vec!["--resolv-conf".into(), link.to_str().unwrap().into()];
    let daemon = Daemon::start(&args);
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM", "{}", daemon.log_text());
    // The laptop moves: the old server is gone, the file is replaced by
    // rename, as network managers do.
    dns1.stop();
    w.tmp.write(
        "run/.resolv.conf.new",
        &format!("nameserver {}\n", second.ip()),
    );
    std::fs::rename(
        w.tmp.path().join("run/.resolv.conf.new"),
        w.tmp.path().join("run/resolv.conf"),
    )
    .unwrap();
    wait_for(15, "the answer of the new server", || {
        w.probe("10.77.0.3:0") == "EPERM"
    });
    dns2.stop();
    daemon.stop();
}

#[test]
fn the_loop_survives_transient_errors_and_every_exit_removes_the_socket() {
    let w = world("te");
    let policy = w.policy(r#""deny": {"cidrs": ["10.77.0.2"]},"#, 60);
    let daemon = Daemon::start(&w.args(policy.clone()));
    // A pin vanishes under a live daemon (the map lives on in the
    // programs): every read of the counters fails from now on.
    let stats = w.pins().map(enforcer_common::maps::STATS);
    std::fs::remove_file(&stats).unwrap();
    std::thread::sleep(Duration::from_secs(11));
    assert!(
        daemon.log_text().contains("reading the counters failed"),
        "{}",
        daemon.log_text()
    );
    let socket = w.socket();
    let (code, _, err) = enforcer(&["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(
        code,
        0,
        "the daemon must still answer: {err}\n{}",
        daemon.log_text()
    );
    daemon.stop();
    assert!(!socket.exists(), "a clean stop removes the socket");
    // An error exit after the socket was bound removes it too: pins on a
    // directory that is not a bpffs cannot be made.
    let not_bpffs = w.tmp.path().join("not-bpffs");
    std::fs::create_dir_all(&not_bpffs).unwrap();
    let sock = w.tmp.path().join("err.sock");
    let (code, _, err) = enforcer(&[
        "daemon",
        "--policy",
        policy.to_str().unwrap(),
        "--cgroup",
        w.cg.path().to_str().unwrap(),
        "--bpffs",
        not_bpffs.to_str().unwrap(),
        "--state-dir",
        w.tmp.path().join("state2").to_str().unwrap(),
        "--socket",
        sock.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{err}");
    assert!(!sock.exists(), "socket left behind after: {err}");
}

/// `check` agrees with the kernel about names the daemon never resolves
/// itself: an alias (CNAME) of a banned name is reported blocked, and an
/// address the DNS program learned from an application's answer is
/// reported banned once, and only once, the kernel holds it.
#[test]
fn check_follows_aliases_and_what_the_kernel_learned_from_answers() {
    let w = world("cl");
    // The host's DNS server on port 53 (the DNS program reads answers from
    // port 53 only), so its answers bind everyone.
    let dns = DnsServer::start_on("127.0.9.5:53".parse().unwrap());
    dns.set_addrs("real.banned.test", &["10.77.0.3"], 60);
    dns.set_cname("innocent.test", "real.banned.test", 60);
    let policy = w.tmp.write(
        "policy.json",
        r#"{"version": 1, "deny": {"domains": ["*.banned.test"]},
            "resolver": {"upstreams": ["127.0.9.5:53"], "min_ttl_s": 30, "max_ttl_s": 60, "grace_s": 60}}"#,
    );
    let daemon = Daemon::start(&w.args(policy));
    let (code, out, err) = w.check("innocent.test");
    assert_eq!(code, 1, "{out}{err}\n{}", daemon.log_text());
    assert!(out.contains("alias of a banned name"), "{out}");
    // Nobody asked yet: the wildcard's subdomain is not resolved by the
    // daemon, so its address is free, and check says so.
    let (code, out, _) = w.check("10.77.0.3");
    assert_eq!(code, 0, "{out}");
    assert_eq!(w.probe("10.77.0.3:0"), "ok");
    // An application in the enforced cgroup asks the host's DNS server
    // (from the host's namespace, where the address is not local: only
    // the answer matters here).
    let asked = enforcer_tests::Probe::new()
        .cgroup(w.cg.path())
        .run("dns-tcp:innocent.test:A", "127.0.9.5:53")
        .result;
    assert!(asked.starts_with("listen 10.77.0.3"), "{asked}");
    for (how, (code, out, err)) in [
        ("live", w.check("10.77.0.3")),
        ("offline", w.check_offline("10.77.0.3")),
    ] {
        assert_eq!(code, 1, "{how}: {out}{err}");
        assert!(out.contains("10.77.0.3: denied"), "{how}: {out}");
    }
    assert_eq!(w.probe("10.77.0.3:0"), "EPERM");
    daemon.stop();
}

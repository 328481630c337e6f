//! In-kernel DNS answers: an application that resolves a banned name with
//! its own DNS server and connects the instant it reads the answer gets
//! EPERM; wildcards at any depth, CNAME chains, learned exceptions, TTL
//! expiry, scoping of answers from servers that are not the host's, and
//! hostile or malformed answers. Real daemon, real DNS servers in the test
//! namespace, real processes in the test cgroup; malformed packets through
//! BPF_PROG_TEST_RUN on the real program.

use std::time::{Duration, Instant};

use enforcer_tests::{
    Probe, World,
    daemon::{Daemon, enforcer, flows_json},
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
    "10.77.0.6/32",
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

/// DNS servers on port 53 at `addrs` inside the world's namespace, all
/// answering `names` with TTL 60.
fn servers_in<const N: usize>(
    w: &World,
    addrs: [&str; N],
    names: &[(&str, &[&str])],
) -> [DnsServer; N] {
    addrs.map(|addr| {
        let d = server_in(w, addr);
        d.set_all(names, 60);
        d
    })
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
    let [dns, dns6] = servers_in(
        &w,
        ["10.77.0.53:53", "[fd77::53]:53"],
        &[
            ("api.banned.test", &["10.77.0.2", "fd77::2"]),
            ("deep.x.y.wild.test", &["10.77.0.3"]),
            ("wild.test", &["10.77.0.1"]),
            ("cdn.wild.test", &["10.77.0.4"]),
            ("tcp.wild.test", &["10.77.0.6"]),
            ("llm.corp.test", &["10.77.0.9"]),
            ("sink.test", &["127.0.0.1"]),
        ],
    );
    for d in [&dns, &dns6] {
        d.set_cname("innocent.test", "cdn.wild.test", 60);
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
    // DNS over TCP: the answer in the first segment is parsed the same.
    let over_tcp = Probe::new()
        .cgroup(&cg)
        .netns(w.ns.name())
        .run("dnstcp-tcp:tcp.wild.test:A", "10.77.0.53:53")
        .result;
    assert_eq!(over_tcp, "EPERM", "{}", status(&w)["dns"]);
    // A wildcard covers any depth below it, not the apex.
    assert_eq!(ask("10.77.0.53:53", "deep.x.y.wild.test", "A"), "EPERM");
    assert_eq!(ask("10.77.0.53:53", "wild.test", "A"), "ok");
    // An innocent name whose chain ends at a banned one.
    assert_eq!(ask("10.77.0.53:53", "innocent.test", "A"), "EPERM");
    // An allowed internal name inside a banned range: the answer of the
    // host's DNS server (the daemon's upstream) excepts it. The same
    // answer from any other server must not: a process answering itself
    // could otherwise lift any ban (static ones included) for itself.
    assert_eq!(
        w.probe("10.77.0.9:0"),
        "EPERM",
        "banned range before the answer"
    );
    assert_eq!(
        ask("10.77.0.53:53", "llm.corp.test", "A"),
        "EPERM",
        "an exception learned from a server that is not the host's"
    );
    let host_dns = server_in(&w, "10.77.0.54:53");
    host_dns.set_addrs("llm.corp.test", &["10.77.0.9"], 60);
    assert_eq!(ask("10.77.0.54:53", "llm.corp.test", "A"), "ok");
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
    // Learned from the host's server: for everyone; from the other: bans
    // for the receiving cgroup only, kept apart per cgroup.
    assert!(
        dns_status["learned_v4"].as_u64().unwrap() >= 1,
        "{dns_status}"
    );
    assert!(
        dns_status["learned_scoped"].as_u64().unwrap() >= 3,
        "{dns_status}"
    );
    assert!(
        dns_status["counters"]["ignored"].as_u64().unwrap() >= 1,
        "{dns_status}"
    );
    assert_eq!(dns_status["counters"]["malformed"], 0, "{dns_status}");
    daemon.stop();
}

#[test]
fn a_learned_address_leaves_after_its_ttl_and_grace_unless_refreshed() {
    let w = World::new("dt", LO);
    let dns = server_in(&w, "10.77.0.53:53");
    dns.set_addrs("short.banned.test", &["10.77.0.3"], 2);
    let p = policy(
        &w,
        r#""deny": {"domains": ["*.banned.test"]},"#,
        "10.77.0.54:53",
        3,
    );
    let daemon = Daemon::start(&w.args(&p));
    let cg = w.cg.path().to_owned();
    assert_eq!(
        resolve_connect(&w, &cg, "10.77.0.53:53", "short.banned.test", "A"),
        "EPERM"
    );
    let learned = Instant::now();
    // TTL 2 s + grace 3 s: still banned at 4 s ...
    std::thread::sleep(Duration::from_millis(4000));
    assert_eq!(w.probe("10.77.0.3:0"), "EPERM");
    // ... and gone after 5 s.
    let deadline = learned + Duration::from_secs(8);
    while w.probe("10.77.0.3:0") == "EPERM" {
        assert!(
            Instant::now() < deadline,
            "still banned 8 s after a 2 s TTL with 3 s grace"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        learned.elapsed() >= Duration::from_millis(4800),
        "{:?}",
        learned.elapsed()
    );
    // A new answer brings it back, and refreshes it.
    assert_eq!(
        resolve_connect(&w, &cg, "10.77.0.53:53", "short.banned.test", "A"),
        "EPERM"
    );
    daemon.stop();
}

#[test]
fn a_fake_answer_cannot_ban_an_allowed_range_a_dns_server_or_for_others() {
    let mut w = World::new("df", LO);
    // The host's DNS server (the daemon's upstream) and a fake one that a
    // local process runs.
    let [_system, fake] = servers_in(
        &w,
        ["10.77.0.54:53", "10.77.0.53:53"],
        // An address inside an allowed range, and the host's DNS server.
        &[
            ("api.banned.test", &["10.77.0.9", "10.77.0.54"]),
            ("web.banned.test", &["10.77.0.4"]),
        ],
    );
    fake.set_addrs("x.banned.test", &["10.77.0.2"], 60);
    let p = policy(
        &w,
        r#""deny": {"domains": ["*.banned.test"]}, "allow": {"cidrs": ["10.77.0.8/30"]},"#,
        "10.77.0.54:53",
        60,
    );
    let daemon = Daemon::start(&w.args(&p));
    let other = w.cg.child("other");
    let cg = w.cg.path().to_owned();
    // The allowed range and the DNS server stay reachable, whatever the
    // answer says.
    assert_eq!(
        resolve_connect(&w, &cg, "10.77.0.53:53", "api.banned.test", "A"),
        "ok"
    );
    assert_eq!(w.probe("10.77.0.54:0"), "ok");
    // A fake answer binds only the cgroup that received it.
    assert_eq!(
        resolve_connect(&w, &cg, "10.77.0.53:53", "x.banned.test", "A"),
        "EPERM"
    );
    let elsewhere = |addr: &str| {
        Probe::new()
            .cgroup(&other)
            .netns(w.ns.name())
            .run("tcp", addr)
            .result
    };
    assert_eq!(elsewhere("10.77.0.2:0"), "ok");
    // The host's own DNS server's answer binds everyone.
    assert_eq!(
        resolve_connect(&w, &cg, "10.77.0.54:53", "web.banned.test", "A"),
        "EPERM"
    );
    assert_eq!(elsewhere("10.77.0.4:0"), "EPERM");
    let ignored = status(&w)["dns"]["counters"]["ignored"].as_u64().unwrap();
    assert!(
        ignored >= 1,
        "the DNS server's own address was ignored: {ignored}"
    );
    daemon.stop();
}

#[test]
fn a_first_label_wildcard_bans_the_names_whose_first_label_ends_with_it() {
    let w = World::new("dh", LO);
    let dns = server_in(&w, "10.77.0.53:53");
    dns.set_all(
        &[
            ("us-x1-region.test", &["10.77.0.2"]),
            ("tcp-x-region.test", &["10.77.0.3"]),
            ("a-b-c-d-e-f-region.test", &["10.77.0.6"]),
            ("region.test", &["10.77.0.1"]),
            ("a.b-region.test", &["10.77.0.4"]),
            ("x-regionx.test", &["10.77.0.5"]),
            ("eu-ok-region.test", &["10.77.0.9"]),
        ],
        60,
    );
    let p = policy(
        &w,
        r#""deny": {"domains": ["*-region.test"], "cidrs": ["10.77.0.8/30"]},
           "allow": {"domains": ["*-ok-region.test"]},"#,
        // The application's server is the host's DNS server: exceptions
        // are learned from those only.
        "10.77.0.53:53",
        60,
    );
    let daemon = Daemon::start(&w.args(&p));
    let cg = w.cg.path().to_owned();
    let ask = |name: &str| resolve_connect(&w, &cg, "10.77.0.53:53", name, "A");
    assert_eq!(
        ask("us-x1-region.test"),
        "EPERM",
        "{}\n{}",
        status(&w)["dns"],
        daemon.log_text()
    );
    // DNS over TCP, and a first label with more hyphens than the kernel
    // keeps tails for (it keeps the last ones).
    let over_tcp = Probe::new()
        .cgroup(&cg)
        .netns(w.ns.name())
        .run("dnstcp-tcp:tcp-x-region.test:A", "10.77.0.53:53")
        .result;
    assert_eq!(over_tcp, "EPERM", "{}", status(&w)["dns"]);
    assert_eq!(ask("a-b-c-d-e-f-region.test"), "EPERM");
    // Only the first label is wild, and it must end with the tail.
    assert_eq!(ask("region.test"), "ok");
    assert_eq!(ask("a.b-region.test"), "ok");
    assert_eq!(ask("x-regionx.test"), "ok");
    // A longer tail allowed: an exception inside a banned range.
    assert_eq!(w.probe("10.77.0.9:0"), "EPERM", "banned range first");
    assert_eq!(ask("eu-ok-region.test"), "ok");
    assert_eq!(status(&w)["dns"]["counters"]["malformed"], 0);
    daemon.stop();
}

/// `enforcer flows --json` through the daemon, with `extra` filters.
fn flows(w: &World, extra: &[&str]) -> Vec<serde_json::Value> {
    let socket = w.socket();
    flows_json(&[&["--socket", socket.to_str().unwrap()], extra].concat())
}

#[test]
fn flows_name_the_asked_name_and_the_cname_chain_an_address_came_from() {
    let mut lo = LO.to_vec();
    lo.push("192.0.2.7/32");
    let w = World::new("dn", &lo);
    let dns = server_in(&w, "10.77.0.53:53");
    dns.set_addrs("real.banned.test", &["192.0.2.7"], 60);
    dns.set_cname("innocent.test", "real.banned.test", 60);
    let p = policy(
        &w,
        r#""deny": {"domains": ["real.banned.test"]},"#,
        "10.77.0.54:53",
        60,
    );
    let daemon = Daemon::start(&w.args(&p));
    let cg = w.cg.path().to_owned();
    assert_eq!(
        resolve_connect(&w, &cg, "10.77.0.53:53", "innocent.test", "A"),
        "EPERM"
    );
    // Another hook, another process: a datagram to the same address.
    let sent = Probe::new()
        .cgroup(&cg)
        .netns(w.ns.name())
        .run("udp-sendto", "192.0.2.7:9")
        .result;
    assert_eq!(sent, "EPERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let named = loop {
        let f = flows(&w, &["--name", "innocent.test"]);
        if f.len() >= 2 || Instant::now() > deadline {
            break f;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let all = flows(&w, &[]);
    assert_eq!(named.len(), 2, "{all:#?}\n{}", daemon.log_text());
    let mut hooks: Vec<&str> = named.iter().map(|f| f["hooks"].as_str().unwrap()).collect();
    hooks.sort_unstable();
    assert_eq!(hooks, ["connect4", "sendmsg4"]);
    for f in &named {
        assert_eq!(f["dst"], "192.0.2.7", "{f}");
        assert_eq!(f["name"], "innocent.test", "{f}");
        assert_eq!(f["chain"], "innocent.test -> real.banned.test", "{f}");
    }
    // A name on the chain finds them too; another name does not.
    assert_eq!(flows(&w, &["--name", "real.banned.test"]).len(), 2);
    assert!(flows(&w, &["--name", "banned.test"]).is_empty());
    // The table says it.
    let socket = w.socket();
    let (code, table, err) = enforcer(&["flows", "--socket", socket.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("name: innocent.test -> real.banned.test"),
        "{table}"
    );
    let dns_status = &status(&w)["dns"];
    let counters = &dns_status["counters"];
    assert!(counters["reported"].as_u64().unwrap() >= 1, "{counters}");
    assert_eq!(counters["report_lost"], 0, "{counters}");
    let reports = &dns_status["reports"];
    assert!(reports["received"].as_u64().unwrap() >= 1, "{reports}");
    assert_eq!(reports["unparsed"], 0, "{reports}");
    daemon.stop();
}

/// Malformed and hostile answers through the real program
/// (BPF_PROG_TEST_RUN): none stalls or crashes anything, each is counted.
mod malformed {
    use enforcer::bpf::CgroupHook;
    use enforcer_common::{
        STAT_DNS_LEARNED, STAT_DNS_MALFORMED, STAT_DNS_RESPONSES, STAT_DNS_TRUNCATED,
    };
    use enforcer_tests::dnswire;
    use enforcer_tests::{
        CgroupGuard, Harness,
        dnswire::{a_record, header},
        frame,
    };

    /// `dns` in a UDP datagram from 192.0.2.53:53 to 192.0.2.1:40000.
    fn run(h: &mut Harness, dns: &[u8]) {
        let frame = frame::ipv4_udp([192, 0, 2, 53], [192, 0, 2, 1], 53, 40000, dns);
        let passed = h.test_run(enforcer_common::programs::DNS_INGRESS, &frame);
        assert_eq!(passed, 1, "DNS answers always pass");
    }

    fn message(an: u16, body: &[u8]) -> Vec<u8> {
        dnswire::message("api.banned.test", an, body)
    }

    #[test]
    fn malformed_answers_are_counted_and_never_stall() {
        let cg = CgroupGuard::new("dm");
        let mut h = Harness::new(
            "dm",
            &cg,
            r#"{"version": 1, "deny": {"domains": ["api.banned.test", "*-region.test"]}}"#,
            &[CgroupHook::DnsIngress],
        );
        let count = |h: &Harness, i: u32| h.stats().counter(i);
        // A good one first: parsed, nothing malformed. (Counted as deltas:
        // the test run may run the program more than once per call.)
        run(&mut h, &message(1, &a_record([192, 0, 2, 7])));
        assert!(count(&h, STAT_DNS_RESPONSES) >= 1);
        assert_eq!(count(&h, STAT_DNS_MALFORMED), 0);
        let mut label_too_long = header(0);
        label_too_long.push(64);
        label_too_long.extend_from_slice(&[b'a'; 64]);
        label_too_long.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut loop_ptr = header(0);
        loop_ptr.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let mut forward_ptr = header(0);
        forward_ptr.extend_from_slice(&[0xc0, 200, 0, 1, 0, 1]);
        let mut long_name = header(0);
        for _ in 0..100 {
            long_name.extend_from_slice(&[3, b'a', b'b', b'c']);
        }
        long_name.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut past_end = message(1, &a_record([192, 0, 2, 8]));
        past_end.truncate(past_end.len() - 3);
        let rdlen_past_end = {
            let mut r = a_record([192, 0, 2, 9]);
            r[10] = 0x40;
            message(1, &r)
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("label over 63", label_too_long),
            ("pointer to itself", loop_ptr),
            ("pointer forward, out of bounds", forward_ptr),
            ("name over 255 bytes", long_name),
            ("record cut short", past_end),
            ("rdata past the end", rdlen_past_end),
            ("header only", vec![0x12, 0x34, 0x81]),
        ];
        for (what, dns) in &cases {
            let before = count(&h, STAT_DNS_MALFORMED);
            run(&mut h, dns);
            assert!(
                count(&h, STAT_DNS_MALFORMED) > before,
                "{what} was not counted"
            );
        }
        // First labels of 63 bytes of hyphens: never stall, nothing is
        // malformed; one that ends with a banned tail is learned.
        let malformed = count(&h, STAT_DNS_MALFORMED);
        let learned = count(&h, STAT_DNS_LEARNED);
        let all_hyphens = format!("{}.region.test", "-".repeat(63));
        run(
            &mut h,
            &dnswire::message(&all_hyphens, 1, &a_record([192, 0, 2, 10])),
        );
        assert_eq!(count(&h, STAT_DNS_LEARNED), learned, "no tail matches");
        let hyphens_then_tail = format!("{}-region.test", "-".repeat(56));
        run(
            &mut h,
            &dnswire::message(&hyphens_then_tail, 1, &a_record([192, 0, 2, 11])),
        );
        assert!(count(&h, STAT_DNS_LEARNED) > learned, "the tail matches");
        assert_eq!(count(&h, STAT_DNS_MALFORMED), malformed);
        // 200 answers: the first ones are walked, the rest counted.
        let malformed = count(&h, STAT_DNS_MALFORMED);
        let many: Vec<u8> = (0..200u8).flat_map(|i| a_record([192, 0, 2, i])).collect();
        run(&mut h, &message(200, &many));
        assert!(count(&h, STAT_DNS_TRUNCATED) >= 1);
        assert_eq!(count(&h, STAT_DNS_MALFORMED), malformed);
    }
}

/// The most specific name rule decides, as in the policy (an exact ban
/// inside an allowed wildcard stays banned; an exact exception inside a
/// banned wildcard passes); two cgroups that each got a ban for one
/// address from their own servers both keep it; an AAAA answer in the
/// `::ffff:a.b.c.d` form bans the IPv4 address; and a name exception with
/// a port inside a banned wildcard never lifts the ban on other ports.
#[test]
fn the_most_specific_rule_decides_and_scoped_bans_never_overwrite_each_other() {
    let mut w = World::new("dp", LO);
    // The host's DNS server (the daemon's upstream) and another one.
    let host = server_in(&w, "10.77.0.54:53");
    let own = server_in(&w, "10.77.0.53:53");
    for d in [&host, &own] {
        d.set_all(
            &[
                ("exact.y.test", &["10.77.0.1"]),
                ("other.y.test", &["10.77.0.2"]),
                ("ok.x.test", &["10.77.0.3"]),
                ("a.x.test", &["10.77.0.4"]),
                ("gw.p.test", &["10.77.0.6"]),
                ("mapped.x.test", &["::ffff:10.77.0.5"]),
            ],
            60,
        );
    }
    let p = policy(
        &w,
        r#""deny": {"domains": ["*.x.test", "exact.y.test", "*.p.test"]},
           "allow": {"domains": ["*.y.test", "ok.x.test", "gw.p.test:443"]},"#,
        "10.77.0.54:53",
        60,
    );
    let daemon = Daemon::start(&w.args(&p));
    let cg = w.cg.path().to_owned();
    let via_host = |name: &str| resolve_connect(&w, &cg, "10.77.0.54:53", name, "A");
    assert_eq!(
        via_host("exact.y.test"),
        "EPERM",
        "an exact ban inside an allowed wildcard\n{}",
        daemon.log_text()
    );
    assert_eq!(
        via_host("ok.x.test"),
        "ok",
        "an exact exception inside a banned wildcard"
    );
    assert_eq!(via_host("other.y.test"), "ok");
    // `check` decides by the same rule.
    let socket = w.socket();
    let check = |name: &str| enforcer(&["check", name, "--socket", socket.to_str().unwrap()]);
    let (code, out, err) = check("exact.y.test");
    assert_eq!(code, 1, "{out}{err}");
    let (code, out, err) = check("ok.x.test");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("exception"), "{out}");
    // The exception is for 443 only: other ports stay banned.
    let gw80 = Probe::new()
        .cgroup(&cg)
        .netns(w.ns.name())
        .run("dns-tcp:gw.p.test:A:80", "10.77.0.54:53")
        .result;
    assert_eq!(
        gw80, "EPERM",
        "a port exception lifted a wildcard ban on port 80"
    );
    // ::ffff:10.77.0.5 in an AAAA answer: IPv4 connects are refused too.
    let mapped = Probe::new()
        .cgroup(&cg)
        .netns(w.ns.name())
        .run("dns-tcp:mapped.x.test:AAAA", "10.77.0.54:53")
        .result;
    assert_eq!(mapped, "EPERM");
    assert_eq!(
        w.probe("10.77.0.5:0"),
        "EPERM",
        "the IPv4 form of a mapped answer"
    );

    // Two cgroups, each asking its own (not the host's) server for the
    // same banned name: each keeps its ban, and a third is not bound.
    let first = w.cg.child("first");
    let second = w.cg.child("second");
    let third = w.cg.child("third");
    for c in [&first, &second] {
        assert_eq!(
            resolve_connect(&w, c, "10.77.0.53:53", "a.x.test", "A"),
            "EPERM",
            "{}",
            c.display()
        );
    }
    let connect = |c: &std::path::Path| {
        Probe::new()
            .cgroup(c)
            .netns(w.ns.name())
            .run("tcp", "10.77.0.4:0")
            .result
    };
    assert_eq!(connect(&first), "EPERM", "the first cgroup lost its ban");
    assert_eq!(connect(&second), "EPERM");
    assert_eq!(connect(&third), "ok", "a scoped ban bound another cgroup");
    daemon.stop();
}

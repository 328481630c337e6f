//! Rules with a port and protocol, judged in the kernel: `*:853` at
//! connect and sendmsg (TCP and UDP, IPv4 and IPv6) while other ports of
//! the same address pass; an exception with a port; a DoH name banned on
//! 443/tcp only, learned from the application's own DNS answer and from
//! the daemon's resolution; the cgroup_skb layer on its own; XDP on the
//! remote's source port; `check HOST:PORT` agreeing with real connects.
//! Destinations are documentation addresses on the loopback of the test's
//! own network namespace, with listeners, so "not refused" is a real `ok`.

use std::net::{TcpListener, UdpSocket};

use enforcer::bpf::CgroupHook;
use enforcer_tests::{
    CgroupGuard, Harness, NetnsGuard, Probe, World,
    daemon::Daemon,
    dns::DnsServer,
    frame,
    resolving::{Resolving, wait_for, world},
};

const DOC: &[&str] = &[
    "192.0.2.10/32",
    "192.0.2.11/32",
    "192.0.2.20/32",
    "2001:db8::10/128",
    "10.77.0.53/32",
];

/// TCP listeners and UDP sockets inside the world's namespace on `addrs`
/// (kept open for the test).
fn listen(ns: &NetnsGuard, addrs: &[&str]) -> Listeners {
    ns.enter(|| {
        let tcp = addrs
            .iter()
            .map(|a| TcpListener::bind(a).unwrap_or_else(|e| panic!("listen {a}: {e}")))
            .collect();
        let udp = addrs
            .iter()
            .map(|a| UdpSocket::bind(a).unwrap_or_else(|e| panic!("bind {a}: {e}")))
            .collect();
        (tcp, udp)
    })
}

/// The resolving world with `lo` on its loopback and listeners on `open`
/// (kept open for the test).
fn resolving(tag: &str, lo: &[&str], open: &[&str]) -> (Resolving, Listeners) {
    let w = world(tag);
    for a in lo {
        w.base.ns.add_lo_addr(a);
    }
    let open = listen(&w.base.ns, open);
    (w, open)
}

type Listeners = (Vec<TcpListener>, Vec<UdpSocket>);

fn run(w: &World, op: &str, addr: &str) -> String {
    Probe::new()
        .cgroup(w.cg.path())
        .netns(w.ns.name())
        .run(op, addr)
        .result
}

/// Each (op, addr, want): the probe's result, with the daemon's log on a
/// mismatch.
fn expect(w: &World, daemon: &Daemon, cases: &[(&str, &str, &str)]) {
    for &(op, addr, want) in cases {
        assert_eq!(run(w, op, addr), want, "{op} {addr}\n{}", daemon.log_text());
    }
}

/// The applications' DNS server inside `ns` (10.77.0.53:53), answering
/// `names` with a TTL of 60 s.
fn app_dns(ns: &NetnsGuard, names: &[(&str, &[&str])]) -> DnsServer {
    let dns = ns.enter(|| DnsServer::start_on("10.77.0.53:53".parse().unwrap()));
    dns.set_all(names, 60);
    dns
}

/// `op` (`dns-tcp:NAME:TYPE:PORT`: ask, then connect to the answer on
/// PORT) against [`app_dns`], from the world's cgroup and namespace.
fn ask(w: &World, op: &str) -> String {
    run(w, op, "10.77.0.53:53")
}

fn policy(w: &World, rules: &str) -> std::path::PathBuf {
    w.tmp.write(
        "policy.json",
        &format!(
            r#"{{"version": 1, {rules}
  "resolver": {{"upstreams": ["10.77.0.54:53"], "min_ttl_s": 1, "max_ttl_s": 60, "grace_s": 60}}}}"#
        ),
    )
}

#[test]
fn any_destination_on_853_is_denied_over_tcp_and_udp_and_other_ports_pass() {
    let w = World::new("pa", DOC);
    let _open = listen(
        &w.ns,
        &[
            "192.0.2.10:853",
            "192.0.2.10:443",
            "192.0.2.10:53",
            "192.0.2.11:853",
            "[2001:db8::10]:853",
            "[2001:db8::10]:443",
            "192.0.2.10:8853",
        ],
    );
    let p = policy(
        &w,
        r#""deny": {"cidrs": ["*:853", "*:8853/tcp"]},
           "allow": {"cidrs": ["192.0.2.11:853"]},"#,
    );
    let daemon = Daemon::start(&w.args(&p));
    let cases = [
        ("tcp", "192.0.2.10:853", "EPERM"),
        ("udp-sendto", "192.0.2.10:853", "EPERM"),
        ("udp-connect-send", "192.0.2.10:853", "connect:EPERM"),
        ("tcp", "[2001:db8::10]:853", "EPERM"),
        ("udp-sendto", "[2001:db8::10]:853", "EPERM"),
        // An AF_INET6 socket reaching the IPv4 address.
        ("tcp", "[::ffff:192.0.2.10]:853", "EPERM"),
        // The same addresses on other ports are not refused.
        ("tcp", "192.0.2.10:443", "ok"),
        ("tcp", "192.0.2.10:53", "ok"),
        ("udp-sendto", "192.0.2.10:53", "ok"),
        ("udp-connect-send", "192.0.2.10:443", "ok"),
        ("tcp", "[2001:db8::10]:443", "ok"),
        // An exception with a port wins over *:853.
        ("tcp", "192.0.2.11:853", "ok"),
        ("udp-sendto", "192.0.2.11:853", "ok"),
        // /tcp only: UDP to that port passes.
        ("tcp", "192.0.2.10:8853", "EPERM"),
        ("udp-sendto", "192.0.2.10:8853", "ok"),
    ];
    expect(&w, &daemon, &cases);
    daemon.stop();
}

#[test]
fn a_doh_name_is_denied_on_443_from_the_applications_own_answer_and_its_address_on_53_is_not() {
    let w = World::new("pd", DOC);
    let _dns = app_dns(
        &w.ns,
        &[
            ("doh.test", &["192.0.2.20"]),
            ("x.y.dot.test", &["192.0.2.11"]),
        ],
    );
    let p = policy(
        &w,
        r#""deny": {"domains": ["doh.test:443/tcp", "*.dot.test:853"]},"#,
    );
    let daemon = Daemon::start(&w.args(&p));
    // Learned from the answer the application itself got: banned on 443 at
    // the instant it connects, and only there.
    assert_eq!(
        ask(&w, "dns-tcp:doh.test:A:443"),
        "EPERM",
        "{}",
        daemon.log_text()
    );
    assert_eq!(ask(&w, "dns-tcp:doh.test:A:53"), "ok");
    assert_eq!(ask(&w, "dns-tcp:doh.test:A:8443"), "ok");
    // UDP to 443 is not banned by a /tcp rule.
    assert_eq!(run(&w, "udp-sendto", "192.0.2.20:443"), "ok");
    // A wildcard with a port: a subdomain at any depth, on that port only.
    assert_eq!(ask(&w, "dns-tcp:x.y.dot.test:A:853"), "EPERM");
    assert_eq!(ask(&w, "dns-tcp:x.y.dot.test:A:53"), "ok");
    assert_eq!(run(&w, "udp-sendto", "192.0.2.11:853"), "EPERM");
    daemon.stop();
}

#[test]
fn a_doh_name_resolved_by_the_daemon_is_denied_on_443_before_any_application_asks() {
    let (w, _open) = resolving(
        "pr",
        &["192.0.2.21/32", "2001:db8::21/128"],
        &[
            "192.0.2.21:443",
            "192.0.2.21:53",
            "[2001:db8::21]:443",
            "[2001:db8::21]:53",
        ],
    );
    w.dns
        .set_all(&[("doh.test", &["192.0.2.21", "2001:db8::21"])], 60);
    let p = w.policy(r#""deny": {"domains": ["doh.test:443"]},"#, 60);
    let daemon = Daemon::start(&w.args(p));
    // The daemon's own resolution puts the addresses into the port tries.
    wait_for(10, "the daemon's resolution of doh.test", || {
        w.probe("192.0.2.21:443") == "EPERM"
    });
    let cases = [
        ("tcp", "192.0.2.21:443", "EPERM"),
        ("udp-sendto", "192.0.2.21:443", "EPERM"),
        ("tcp", "[2001:db8::21]:443", "EPERM"),
        ("tcp", "192.0.2.21:53", "ok"),
        ("udp-sendto", "192.0.2.21:53", "ok"),
        ("tcp", "[2001:db8::21]:53", "ok"),
    ];
    expect(&w, &daemon, &cases);
    daemon.stop();
}

#[test]
fn check_with_a_port_matches_real_connects() {
    let (w, _open) = resolving(
        "pc",
        &["192.0.2.10/32", "192.0.2.11/32", "2001:db8::10/128"],
        &[
            "192.0.2.10:853",
            "192.0.2.10:53",
            "192.0.2.11:853",
            "[2001:db8::10]:853",
        ],
    );
    w.dns.set_all(&[("doh.test", &["192.0.2.10"])], 60);
    let p = w.policy(
        r#""deny": {"cidrs": ["*:853/tcp"], "domains": ["doh.test:443/tcp"]},
           "allow": {"cidrs": ["192.0.2.11:853"]},"#,
        60,
    );
    let daemon = Daemon::start(&w.args(p.clone()));
    // (target, blocked?, the TCP connect that shows it)
    let cases = [
        ("192.0.2.10:853/tcp", true, Some("192.0.2.10:853")),
        ("192.0.2.10:853", false, None),
        ("192.0.2.10:853/udp", false, None),
        ("192.0.2.10:53/tcp", false, Some("192.0.2.10:53")),
        ("192.0.2.10", false, None),
        ("192.0.2.11:853/tcp", false, Some("192.0.2.11:853")),
        ("[2001:db8::10]:853/tcp", true, Some("[2001:db8::10]:853")),
        ("doh.test:443/tcp", true, None),
        ("doh.test:53/tcp", false, None),
    ];
    wait_for(10, "the daemon's first reconcile", || {
        w.check("192.0.2.10:853/tcp").0 == 1
    });
    w.expect_checks(&cases);
    let (_, out, _) = w.check("192.0.2.11:853/tcp");
    let id =
        enforcer_tests::harness::rule_id(&std::fs::read_to_string(&p).unwrap(), "192.0.2.11:853");
    assert!(
        out.contains(&format!(
            "192.0.2.11 port 853/tcp: passes (excepted by #{id} allow 192.0.2.11:853"
        )),
        "{out}"
    );
    let (code, _, err) = w.check("192.0.2.10:0");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("port 0 is outside 1-65535"), "{err}");
    daemon.stop();
}

/// The cgroup_skb layer alone (no syscall hooks): a UDP datagram to the
/// banned port is dropped on egress (the sender sees EPERM), another port
/// of the same address is not.
#[test]
fn the_skb_layer_alone_judges_the_destination_port() {
    let cg = CgroupGuard::new("ps");
    let ns = NetnsGuard::new("ps");
    for a in ["192.0.2.10/32", "2001:db8::10/128"] {
        ns.add_lo_addr(a);
    }
    let _h = Harness::new(
        "ps",
        &cg,
        r#"{"version":1,"deny":{"cidrs":["*:853/udp","[2001:db8::/32]:443"]}}"#,
        &[CgroupHook::SockCreate, CgroupHook::SkbEgress],
    );
    let probe = Probe::new().cgroup(cg.path()).netns(ns.name());
    assert_eq!(probe.run("udp-sendto", "192.0.2.10:853").result, "EPERM");
    assert_eq!(probe.run("udp-sendto", "192.0.2.10:53").result, "ok");
    assert_eq!(
        probe.run("udp-sendto", "[2001:db8::10]:853").result,
        "EPERM"
    );
    assert_eq!(
        probe.run("udp-sendto", "[2001:db8::10]:443").result,
        "EPERM"
    );
    assert_eq!(probe.run("udp-sendto", "[2001:db8::10]:53").result, "ok");
}

/// XDP on ingress: a frame from a remote's banned port (its source port)
/// or to a banned port is dropped; other ports pass. With no port rules the
/// same frames pass.
#[test]
fn xdp_judges_the_remote_source_port_and_the_destination_port() {
    const XDP_DROP: u32 = 1;
    const XDP_PASS: u32 = 2;
    let cg = CgroupGuard::new("px");
    let mut h = Harness::new(
        "px",
        &cg,
        r#"{"version":1,"deny":{"cidrs":["*:853","[2001:db8::/32]:443/udp"]}}"#,
        &[],
    );
    let xdp = enforcer_common::programs::XDP;
    let remote = [192, 0, 2, 10];
    let local = [10, 0, 0, 2];
    let v4 = |sport, dport| frame::ipv4_udp(remote, local, sport, dport, &[]);
    assert_eq!(h.test_run(xdp, &v4(853, 40000)), XDP_DROP, "from :853");
    assert_eq!(h.test_run(xdp, &v4(53, 40000)), XDP_PASS, "from :53");
    assert_eq!(
        h.test_run(xdp, &frame::ipv4_udp(local, remote, 40000, 853, &[])),
        XDP_DROP,
        "to :853"
    );
    let v6 = |sport, dport| frame::ipv6_udp("2001:db8::10", "fd00::2", sport, dport, &[]);
    assert_eq!(
        h.test_run(xdp, &v6(443, 40000)),
        XDP_DROP,
        "from [2001:db8::10]:443"
    );
    assert_eq!(h.test_run(xdp, &v6(853, 40000)), XDP_DROP);
    assert_eq!(h.test_run(xdp, &v6(53, 40000)), XDP_PASS);
    // Extension headers do not hide the port: destination options and a
    // first fragment in front of UDP to :853 are judged like plain UDP, at
    // XDP and at the skb layer; a later fragment carries no port (its
    // first fragment was dropped).
    use frame::Ext::{DstOpts, FirstFragment, LaterFragment};
    let skb = enforcer_common::programs::SKB_EGRESS;
    for (exts, want_xdp, want_skb) in [
        (&[DstOpts][..], XDP_DROP, 0),
        (&[FirstFragment][..], XDP_DROP, 0),
        (&[DstOpts, FirstFragment][..], XDP_DROP, 0),
        (&[LaterFragment][..], XDP_PASS, 1),
    ] {
        let to_853 = frame::ipv6_udp_behind("fd00::2", "2001:db8::10", exts, 40000, 853);
        assert_eq!(h.test_run(xdp, &to_853), want_xdp, "xdp {exts:?}");
        assert_eq!(h.test_run(skb, &to_853), want_skb, "skb {exts:?}");
        let to_53 = frame::ipv6_udp_behind("fd00::2", "2001:db8::10", exts, 40000, 53);
        assert_eq!(h.test_run(xdp, &to_53), XDP_PASS, "xdp {exts:?} :53");
    }
    h.apply(r#"{"version":1}"#);
    assert_eq!(
        h.test_run(xdp, &v4(853, 40000)),
        XDP_PASS,
        "no port rules left"
    );
    assert_eq!(h.test_run(xdp, &v6(443, 40000)), XDP_PASS);
}

/// An address learned for a name banned on one port and for a name banned
/// on every port stays banned on every port, whichever answer came first.
#[test]
fn an_address_learned_for_a_port_name_and_an_all_ports_name_keeps_the_broader_ban() {
    let w = World::new("pm", DOC);
    let _dns = app_dns(
        &w.ns,
        &[
            ("doh.test", &["192.0.2.20"]),
            ("api.test", &["192.0.2.20"]),
            ("doh2.test", &["192.0.2.10"]),
            ("api2.test", &["192.0.2.10"]),
        ],
    );
    let p = policy(
        &w,
        r#""deny": {"domains": ["doh.test:443/tcp", "doh2.test:443/tcp", "api.test", "api2.test"]},"#,
    );
    let daemon = Daemon::start(&w.args(&p));
    // The port name first, then the all-ports name.
    assert_eq!(
        ask(&w, "dns-tcp:doh.test:A:53"),
        "ok",
        "{}",
        daemon.log_text()
    );
    assert_eq!(ask(&w, "dns-tcp:api.test:A:53"), "EPERM");
    assert_eq!(
        ask(&w, "dns-tcp:doh.test:A:53"),
        "EPERM",
        "the broader ban stays"
    );
    // The all-ports name first, then the port name.
    assert_eq!(ask(&w, "dns-tcp:api2.test:A:53"), "EPERM");
    assert_eq!(
        ask(&w, "dns-tcp:doh2.test:A:53"),
        "EPERM",
        "the broader ban stays"
    );
    assert_eq!(ask(&w, "dns-tcp:doh2.test:A:443"), "EPERM");
    daemon.stop();
}

/// The embedded default itself (`enforcer policy default`): DoT and DoQ
/// refused to any destination, public DoH resolvers refused on 443 (TCP
/// and UDP) by address and by name, while their port 53 stays a plain
/// resolver; an internal DoT resolver opened with an allow entry. The
/// daemon resolves through a loopback DNS server, so nothing leaves the
/// host; the resolvers' addresses live on the test namespace's loopback.
#[test]
fn the_embedded_default_closes_encrypted_dns_and_keeps_public_resolvers_on_53() {
    let w = World::new(
        "pe",
        &[
            "1.1.1.1/32",
            "8.8.8.8/32",
            "2606:4700:4700::1111/128",
            "192.0.2.10/32",
            "192.0.2.20/32",
            "10.77.0.53/32",
        ],
    );
    let _open = listen(
        &w.ns,
        &[
            "1.1.1.1:443",
            "1.1.1.1:53",
            "8.8.8.8:443",
            "8.8.8.8:53",
            "[2606:4700:4700::1111]:443",
            "[2606:4700:4700::1111]:53",
            "192.0.2.10:853",
        ],
    );
    let _dns = app_dns(&w.ns, &[("dns.google", &["192.0.2.20"])]);
    let (code, default, err) = enforcer_tests::daemon::enforcer(&["policy", "default"]);
    assert_eq!(code, 0, "{err}");
    // The daemon's resolver: a loopback server that knows none of the
    // default's names (NXDOMAIN at once, so the start is quick).
    let host_dns = DnsServer::start_on("127.0.9.98:53".parse().unwrap());
    let resolv = w.tmp.write(
        "resolv.conf",
        &format!("nameserver {}\n", host_dns.addr().ip()),
    );
    let start = |policy: &str| {
        let mut args = w.args(&w.tmp.write("policy.json", policy));
        args.extra = vec!["--resolv-conf".into(), resolv.to_str().unwrap().into()];
        Daemon::start(&args)
    };
    let daemon = start(&default);
    let cases = [
        // DoT (TCP) and DoQ (UDP) to any destination.
        ("tcp", "192.0.2.10:853", "EPERM"),
        ("udp-sendto", "192.0.2.10:853", "EPERM"),
        // DoH by the resolvers' published addresses, HTTP/2 and HTTP/3.
        ("tcp", "1.1.1.1:443", "EPERM"),
        ("udp-sendto", "1.1.1.1:443", "EPERM"),
        ("tcp", "8.8.8.8:443", "EPERM"),
        ("tcp", "[2606:4700:4700::1111]:443", "EPERM"),
        // The same resolvers as plain DNS.
        ("tcp", "1.1.1.1:53", "ok"),
        ("udp-sendto", "1.1.1.1:53", "ok"),
        ("udp-sendto", "8.8.8.8:53", "ok"),
        ("udp-sendto", "[2606:4700:4700::1111]:53", "ok"),
    ];
    expect(&w, &daemon, &cases);
    // DoH by name: the application's own answer for dns.google.
    assert_eq!(
        ask(&w, "dns-tcp:dns.google:A:443"),
        "EPERM",
        "{}",
        daemon.log_text()
    );
    assert_eq!(ask(&w, "dns-tcp:dns.google:A:53"), "ok");
    daemon.stop();

    // An internal DoT resolver, opened by an allow entry with its port.
    let mut with_allow: serde_json::Value = serde_json::from_str(&default).unwrap();
    with_allow["allow"]["cidrs"] = serde_json::json!(["192.0.2.10:853"]);
    let daemon = start(&with_allow.to_string());
    assert_eq!(
        run(&w, "tcp", "192.0.2.10:853"),
        "ok",
        "{}",
        daemon.log_text()
    );
    assert_eq!(run(&w, "udp-sendto", "192.0.2.20:853"), "EPERM");
    daemon.stop();
}

/// `check HOST:PORT` agrees with the kernel on addresses learned for a
/// wildcard name with a port (no trie rule for that port at all), live and
/// offline.
#[test]
fn check_with_a_port_sees_what_was_learned_for_a_wildcard_with_that_port() {
    let (w, _open) = resolving(
        "pw",
        &["192.0.2.11/32", "10.77.0.53/32"],
        &["192.0.2.11:53"],
    );
    // The application's server is the host's (answers bind everyone).
    let _dns = app_dns(&w.base.ns, &[("x.y.dot.test", &["192.0.2.11"])]);
    let p = w.tmp.write(
        "policy.json",
        r#"{"version": 1, "deny": {"domains": ["*.dot.test:853"]},
            "resolver": {"upstreams": ["10.77.0.53:53"], "min_ttl_s": 30, "max_ttl_s": 60, "grace_s": 60}}"#,
    );
    let daemon = Daemon::start(&w.args(p));
    assert_eq!(w.check("192.0.2.11:853").0, 0, "nothing learned yet");
    let asked = ask(&w, "dns-tcp:x.y.dot.test:A:853");
    assert_eq!(asked, "EPERM", "{}", daemon.log_text());
    w.expect_checks(&[
        ("192.0.2.11:853", true, None),
        ("192.0.2.11:53", false, Some("192.0.2.11:53")),
    ]);
    daemon.stop();
}

//! cgroup_skb egress: the layer behind the syscall hooks.

use enforcer::bpf::{
    CgroupHook,
    events::{Hook, Verdict, Via},
};
use enforcer_common::{HOOK_SKB_EGRESS, VERDICT_DENIED};
use enforcer_tests::{CgroupGuard, Harness, NetnsGuard, Probe};

const BANNED: &str = r#"{"version":1,"deny":{"cidrs":["10.77.0.2","fd77::2"]}}"#;
const NOTHING: &str = r#"{"version":1}"#;

fn netns(tag: &str) -> NetnsGuard {
    let ns = NetnsGuard::new(tag);
    for a in ["10.77.0.1/32", "10.77.0.2/32", "fd77::2/128"] {
        ns.add_lo_addr(a);
    }
    ns
}

#[test]
fn skb_layer_alone_drops_and_attributes_through_the_socket_cookie() {
    let cg = CgroupGuard::new("sk");
    let ns = netns("sk");
    // No syscall hooks: only socket creation (for attribution) and skb.
    let h = Harness::new(
        "sk",
        &cg,
        BANNED,
        &[CgroupHook::SockCreate, CgroupHook::SkbEgress],
    );
    let probe = Probe::new().cgroup(cg.path()).netns(ns.name()).uid(4242);
    assert_eq!(probe.run("udp-sendto", "10.77.0.1:0").result, "ok");
    let v4 = probe.run("udp-sendto", "10.77.0.2:0");
    // The kernel turns an egress drop into EPERM for the sender.
    assert_eq!(v4.result, "EPERM");
    let v6 = probe.run("udp-sendto", "[fd77::2]:0");
    assert_eq!(v6.result, "EPERM");
    let events = h.events();
    assert_eq!(events.len(), 2, "{events:?}");
    for (ev, probe, addr) in [(&events[0], &v4, "10.77.0.2"), (&events[1], &v6, "fd77::2")] {
        assert_eq!(ev.hook, Hook::SkbEgress, "{ev:?}");
        assert_eq!(ev.verdict, Verdict::Denied);
        let rule = if addr.contains(':') {
            "fd77::2/128"
        } else {
            "10.77.0.2/32"
        };
        assert_eq!(ev.rule_id, h.rule_id(rule));
        assert_eq!(ev.addr, Some(addr.parse().unwrap()));
        assert_eq!(ev.port, probe.port);
        assert_eq!(ev.protocol, 17);
        // The owner was recorded by sock_create, in the process's context:
        // after the setuid, before the send.
        assert_eq!(
            (ev.tgid, ev.uid, ev.comm.as_str()),
            (probe.pid, 4242, "probe"),
            "{ev:?}"
        );
        assert_eq!(ev.cgroup_id, cg.id());
        assert!(!ev.owner_unknown);
    }
    assert_eq!(h.stats().get(HOOK_SKB_EGRESS, VERDICT_DENIED), 2);
}

#[test]
fn a_connection_made_before_the_ban_is_cut_on_the_wire() {
    let cg = CgroupGuard::new("sc");
    let ns = netns("sc");
    let mut h = Harness::new("sc", &cg, NOTHING, &CgroupHook::ALL);
    let probe = Probe::new().cgroup(cg.path()).netns(ns.name());
    // Connected while allowed: connect4 let it through.
    let connected = probe.start_connected_udp("10.77.0.2:0");
    let pid = connected.pid();
    // Banned now. A send on a connected socket gives no address to
    // sendmsg4, so only the skb layer can stop it.
    h.apply(BANNED);
    let sent = connected.finish();
    assert_eq!(sent.result, "EPERM");
    let events = h.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    assert_eq!(
        (ev.hook, ev.verdict, ev.rule_id),
        (Hook::SkbEgress, Verdict::Denied, h.rule_id("10.77.0.2/32"))
    );
    assert_eq!((ev.tgid, ev.comm.as_str()), (pid, "probe"));
    assert_eq!(ev.port, sent.port);
}

/// The owner record lives on the socket (socket-local storage), so no
/// number of sockets made since can push it out. It used to live in an LRU
/// table of 65 536 owners keyed by socket cookie: a process that opened a
/// connection, then many sockets (a crawler, a resolver), lost its name.
#[test]
fn attribution_survives_more_sockets_than_the_old_owner_table_held() {
    let cg = CgroupGuard::new("sl");
    let ns = netns("sl");
    let mut h = Harness::new("sl", &cg, NOTHING, &CgroupHook::ALL);
    let probe = Probe::new().cgroup(cg.path()).netns(ns.name());
    let connected = probe.start_connected_udp("10.77.0.2:0");
    let pid = connected.pid();
    // Three times the old table's whole size on each CPU, from another
    // process of the same cgroup; each socket connected, as real ones are
    // (an LRU evicts what was used least, so merely made ones would not do).
    let churn = probe.run("sockets:200000", "10.77.0.1:1");
    assert_eq!(churn.result, "ok");
    h.apply(BANNED);
    let sent = connected.finish();
    assert_eq!(sent.result, "EPERM");
    let events = h.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    assert_eq!(
        (ev.hook, ev.verdict, ev.rule_id),
        (Hook::SkbEgress, Verdict::Denied, h.rule_id("10.77.0.2/32"))
    );
    assert!(!ev.owner_unknown, "{ev:?}");
    assert_eq!((ev.tgid, ev.comm.as_str()), (pid, "probe"), "{ev:?}");
    assert_eq!(h.stats().owner_unknown(), 0);
}

#[test]
fn a_socket_older_than_the_programs_is_dropped_and_reported_as_unattributed() {
    let cg = CgroupGuard::new("su");
    let ns = netns("su");
    let mut h = Harness::new("su", &cg, NOTHING, &[]);
    let connected = Probe::new()
        .cgroup(cg.path())
        .netns(ns.name())
        .start_connected_udp("10.77.0.2:0");
    // Programs arrive after the socket was made and connected: no owner
    // record exists for its cookie.
    h.datapath
        .attach_cgroup(cg.path(), &[CgroupHook::SkbEgress])
        .expect("attach");
    h.apply(BANNED);
    assert_eq!(connected.finish().result, "EPERM");
    let events = h.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].owner_unknown, "{:?}", events[0]);
    assert_eq!(events[0].tgid, 0);
    assert_eq!(
        events[0].cgroup_id,
        cg.id(),
        "the socket's cgroup is still known"
    );
    assert_eq!(h.stats().owner_unknown(), 1);
}

#[test]
fn skb_layer_alone_drops_the_nat64_and_6to4_forms_of_a_banned_v4_address() {
    let cg = CgroupGuard::new("sn");
    let ns = netns("sn");
    // 10.77.0.1 (allowed) and 10.77.0.2 (banned) as NAT64 (well-known and
    // operator prefix) and 6to4 destinations.
    let (nat64_ok, nat64, operator, sixto4, sixto4_ok) = (
        "64:ff9b::a4d:1",
        "64:ff9b::a4d:2",
        "2001:db8:64::a4d:2",
        "2002:a4d:2::",
        "2002:a4d:1::",
    );
    for a in [nat64_ok, nat64, operator, sixto4, sixto4_ok] {
        ns.add_lo_addr(&format!("{a}/128"));
    }
    let policy = r#"{"version":1,"deny":{"cidrs":["10.77.0.2","fd77::2"]},
                     "nat64_prefixes":["2001:db8:64::/96"]}"#;
    let h = Harness::new(
        "sn",
        &cg,
        policy,
        &[CgroupHook::SockCreate, CgroupHook::SkbEgress],
    );
    let probe = Probe::new().cgroup(cg.path()).netns(ns.name());
    for ok in [nat64_ok, sixto4_ok] {
        assert_eq!(probe.run("udp-sendto", &format!("[{ok}]:0")).result, "ok");
    }
    for (addr, via) in [
        (nat64, Via::Nat64),
        (operator, Via::Nat64),
        (sixto4, Via::SixToFour),
    ] {
        let r = probe.run("udp-sendto", &format!("[{addr}]:0"));
        assert_eq!(r.result, "EPERM", "{addr}");
        let events = h.events();
        assert_eq!(events.len(), 1, "{addr}: {events:?}");
        let ev = &events[0];
        assert_eq!(
            (ev.hook, ev.verdict, ev.rule_id),
            (Hook::SkbEgress, Verdict::Denied, h.rule_id("10.77.0.2/32")),
            "{ev:?}"
        );
        assert_eq!(ev.addr, Some("10.77.0.2".parse().unwrap()), "{ev:?}");
        assert_eq!(ev.via, Some(via), "{ev:?}");
        assert_eq!((ev.tgid, ev.port, ev.protocol), (r.pid, r.port, 17));
    }
    assert_eq!(h.stats().get(HOOK_SKB_EGRESS, VERDICT_DENIED), 3);
}

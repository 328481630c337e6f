//! connect4/6 and sendmsg4/6: EPERM at the syscall, with attributed events.

use enforcer::bpf::{
    CgroupHook,
    events::{BlockEvent, Hook, Verdict, Via},
};
use enforcer::policy::Mode;
use enforcer_common::{
    HOOK_CONNECT4, HOOK_CONNECT6, HOOK_SENDMSG4, HOOK_SKB_EGRESS, VERDICT_AUDITED, VERDICT_DENIED,
    VERDICT_PASS,
};
use enforcer_tests::{CgroupGuard, Harness, NetnsGuard, Probe};

const POLICY: &str = r#"{"version": 1,
  "deny":  {"cidrs": ["10.77.0.2", "10.78.0.0/16", "fd77::2", "fd78::/32"]},
  "allow": {"cidrs": ["10.78.5.0/24", "fd78:5::/48"]}}"#;
// The bans above, by target; events carry their ids (`deny_id`).
const RULE_V4_EXACT: &str = "10.77.0.2/32";
const RULE_V4_RANGE: &str = "10.78.0.0/16";
const RULE_V6_EXACT: &str = "fd77::2/128";
const RULE_V6_RANGE: &str = "fd78::/32";

/// The id of the ban of `cidr`: ids follow a rule's content
/// (`enforcer::rules`), so it is the same in every policy holding it.
fn deny_id(cidr: &str) -> u32 {
    let p = enforcer_tests::harness::policy(&format!(
        r#"{{"version":1,"deny":{{"cidrs":["{cidr}"]}}}}"#
    ));
    enforcer::rules::RuleTable::new(std::sync::Arc::new(p))
        .id_of(cidr)
        .expect("the one rule")
}

struct Fixture {
    h: Harness,
    ns: NetnsGuard,
    cg: CgroupGuard,
}

fn fixture(tag: &str) -> Fixture {
    fixture_with(tag, POLICY)
}

fn fixture_with(tag: &str, policy: &str) -> Fixture {
    let cg = CgroupGuard::new(tag);
    let ns = NetnsGuard::new(tag);
    for a in [
        "10.77.0.1/32",
        "10.77.0.2/32",
        "10.78.1.1/32",
        "10.78.5.5/32",
        "fd77::1/128",
        "fd77::2/128",
        "fd78::1/128",
        "fd78:5::5/128",
    ] {
        ns.add_lo_addr(a);
    }
    let h = Harness::new(tag, &cg, policy, &CgroupHook::ALL);
    Fixture { h, ns, cg }
}

impl Fixture {
    fn probe(&self) -> Probe {
        Probe::new().cgroup(self.cg.path()).netns(self.ns.name())
    }

    /// The single event of process `pid`.
    fn event_of(&self, pid: u32) -> BlockEvent {
        let events: Vec<_> = self
            .h
            .events()
            .into_iter()
            .filter(|e| e.tgid == pid)
            .collect();
        assert_eq!(
            events.len(),
            1,
            "expected one event for pid {pid}: {events:?}"
        );
        events.into_iter().next().unwrap()
    }
}

fn assert_event(ev: &BlockEvent, hook: Hook, rule: &str, addr: &str, port: u16, pid: u32, cg: u64) {
    assert_eq!(ev.hook, hook, "{ev:?}");
    assert_eq!(ev.verdict, Verdict::Denied, "{ev:?}");
    assert_eq!(ev.rule_id, deny_id(rule), "{rule}: {ev:?}");
    assert_eq!(ev.addr, Some(addr.parse().unwrap()), "{ev:?}");
    assert_eq!(ev.port, port, "{ev:?}");
    assert_eq!(
        (ev.tgid, ev.pid),
        (pid, pid),
        "single-threaded probe: {ev:?}"
    );
    assert_eq!(ev.comm, "probe", "{ev:?}");
    assert_eq!(ev.cgroup_id, cg, "{ev:?}");
    assert!(ev.cookie != 0, "{ev:?}");
}

#[test]
fn tcp_v4_exact_ban_is_eperm_and_an_allowed_address_connects() {
    let f = fixture("c4");
    let allowed = f.probe().run("tcp", "10.77.0.1:0");
    assert_eq!(allowed.result, "ok");
    let denied = f.probe().uid(65534).run("tcp", "10.77.0.2:0");
    assert_eq!(denied.result, "EPERM");
    let ev = f.event_of(denied.pid);
    assert_event(
        &ev,
        Hook::Connect4,
        RULE_V4_EXACT,
        "10.77.0.2",
        denied.port,
        denied.pid,
        f.cg.id(),
    );
    assert_eq!((ev.uid, ev.gid), (65534, 65534));
    assert_eq!(ev.protocol, 6);
    let stats = f.h.stats();
    assert_eq!(stats.get(HOOK_CONNECT4, VERDICT_DENIED), 1);
    assert!(stats.get(HOOK_CONNECT4, VERDICT_PASS) >= 1);
}

#[test]
fn tcp_v4_range_ban_and_its_allow_exception() {
    let f = fixture("r4");
    let denied = f.probe().run("tcp", "10.78.1.1:0");
    assert_eq!(denied.result, "EPERM");
    let ev = f.event_of(denied.pid);
    assert_event(
        &ev,
        Hook::Connect4,
        RULE_V4_RANGE,
        "10.78.1.1",
        denied.port,
        denied.pid,
        f.cg.id(),
    );
    // Inside the banned /16 but in the allowed /24: connects, no event.
    let excepted = f.probe().run("tcp", "10.78.5.5:0");
    assert_eq!(excepted.result, "ok");
    assert!(f.h.events().is_empty());
    assert_eq!(
        f.h.stats()
            .get(HOOK_CONNECT4, enforcer_common::VERDICT_ALLOWED),
        1
    );
}

#[test]
fn tcp_v6_exact_and_range_bans_and_exception() {
    let f = fixture("c6");
    assert_eq!(f.probe().run("tcp", "[fd77::1]:0").result, "ok");
    let exact = f.probe().run("tcp", "[fd77::2]:0");
    assert_eq!(exact.result, "EPERM");
    assert_event(
        &f.event_of(exact.pid),
        Hook::Connect6,
        RULE_V6_EXACT,
        "fd77::2",
        exact.port,
        exact.pid,
        f.cg.id(),
    );
    let range = f.probe().run("tcp", "[fd78::1]:0");
    assert_eq!(range.result, "EPERM");
    assert_event(
        &f.event_of(range.pid),
        Hook::Connect6,
        RULE_V6_RANGE,
        "fd78::1",
        range.port,
        range.pid,
        f.cg.id(),
    );
    assert_eq!(f.probe().run("tcp", "[fd78:5::5]:0").result, "ok");
    assert_eq!(f.h.stats().get(HOOK_CONNECT6, VERDICT_DENIED), 2);
}

#[test]
fn v4_mapped_v6_is_judged_against_the_v4_maps() {
    let f = fixture("m6");
    assert_eq!(f.probe().run("tcp", "[::ffff:10.77.0.1]:0").result, "ok");
    let denied = f.probe().run("tcp", "[::ffff:10.77.0.2]:0");
    assert_eq!(denied.result, "EPERM");
    let ev = f.event_of(denied.pid);
    assert_event(
        &ev,
        Hook::Connect6,
        RULE_V4_EXACT,
        "10.77.0.2",
        denied.port,
        denied.pid,
        f.cg.id(),
    );
    assert_eq!(ev.via, Some(Via::V4Mapped));
    // For UDP the kernel itself hands a v4-mapped destination to the v4
    // path (udpv6_sendmsg → udp_sendmsg), so sendmsg4 judges it.
    let range = f.probe().run("udp-sendto", "[::ffff:10.78.1.1]:0");
    assert_eq!(range.result, "EPERM");
    let ev = f.event_of(range.pid);
    assert_event(
        &ev,
        Hook::Sendmsg4,
        RULE_V4_RANGE,
        "10.78.1.1",
        range.port,
        range.pid,
        f.cg.id(),
    );
}

impl Fixture {
    /// Puts `addrs` on the namespace's loopback, so that an allowed
    /// attempt really connects and a refusal can only come from a hook.
    fn with_lo(self, addrs: &[&str]) -> Fixture {
        for a in addrs {
            self.ns.add_lo_addr(&format!("{a}/128"));
        }
        self
    }

    /// `op` to `[addr]:0` is refused by `hook` under `rule`, and the event
    /// names the IPv4 address and the form it was reached through.
    fn assert_refused(&self, op: &str, addr: &str, hook: Hook, rule: &str, v4: &str, via: Via) {
        let r = self.probe().run(op, &format!("[{addr}]:0"));
        assert_eq!(r.result, "EPERM", "{op} {addr}");
        let ev = self.event_of(r.pid);
        assert_event(&ev, hook, rule, v4, r.port, r.pid, self.cg.id());
        assert_eq!(ev.via, Some(via), "{ev:?}");
    }
}

// 10.77.0.1 (allowed), 10.77.0.2 (banned), 10.78.1.1 (in the banned
// range), 10.78.5.5 (excepted) in NAT64 and 6to4 form.
const NAT64_OK: &str = "64:ff9b::a4d:1";
const NAT64_BANNED: &str = "64:ff9b::a4d:2";
const NAT64_RANGE: &str = "64:ff9b::a4e:101";
const NAT64_EXCEPTED: &str = "64:ff9b::10.78.5.5";
const SIX_TO_FOUR_OK: &str = "2002:a4d:1::";
const SIX_TO_FOUR_BANNED: &str = "2002:a4d:2::";
const SIX_TO_FOUR_RANGE: &str = "2002:a4e:101::7";
// The same addresses under an operator prefix.
const OPERATOR_OK: &str = "2001:db8:64::a4d:1";
const OPERATOR_BANNED: &str = "2001:db8:64::a4d:2";

#[test]
fn nat64_and_6to4_forms_of_a_banned_v4_address_are_eperm_for_tcp_and_udp() {
    let f = fixture("n6").with_lo(&[
        NAT64_OK,
        NAT64_BANNED,
        NAT64_RANGE,
        NAT64_EXCEPTED,
        SIX_TO_FOUR_OK,
        SIX_TO_FOUR_BANNED,
        SIX_TO_FOUR_RANGE,
        OPERATOR_BANNED,
    ]);
    for ok in [NAT64_OK, SIX_TO_FOUR_OK] {
        assert_eq!(f.probe().run("tcp", &format!("[{ok}]:0")).result, "ok");
        assert_eq!(
            f.probe().run("udp-sendto", &format!("[{ok}]:0")).result,
            "ok"
        );
    }
    let (c6, s6) = (Hook::Connect6, Hook::Sendmsg6);
    let (exact, range) = ("10.77.0.2", "10.78.1.1");
    f.assert_refused("tcp", NAT64_BANNED, c6, RULE_V4_EXACT, exact, Via::Nat64);
    f.assert_refused(
        "udp-sendto",
        NAT64_BANNED,
        s6,
        RULE_V4_EXACT,
        exact,
        Via::Nat64,
    );
    f.assert_refused("tcp", NAT64_RANGE, c6, RULE_V4_RANGE, range, Via::Nat64);
    f.assert_refused(
        "udp-sendto",
        NAT64_RANGE,
        s6,
        RULE_V4_RANGE,
        range,
        Via::Nat64,
    );
    let sixto4 = Via::SixToFour;
    f.assert_refused("tcp", SIX_TO_FOUR_BANNED, c6, RULE_V4_EXACT, exact, sixto4);
    f.assert_refused(
        "udp-sendto",
        SIX_TO_FOUR_BANNED,
        s6,
        RULE_V4_EXACT,
        exact,
        sixto4,
    );
    f.assert_refused("tcp", SIX_TO_FOUR_RANGE, c6, RULE_V4_RANGE, range, sixto4);
    f.assert_refused(
        "udp-sendto",
        SIX_TO_FOUR_RANGE,
        s6,
        RULE_V4_RANGE,
        range,
        sixto4,
    );
    // The v4 allow exception holds in every form.
    let excepted = f.probe().run("tcp", &format!("[{NAT64_EXCEPTED}]:0"));
    assert_eq!(excepted.result, "ok");
    assert!(f.h.events().is_empty());
    // No operator prefix in this policy: 2001:db8:64::/96 is just IPv6.
    let unjudged = f.probe().run("tcp", &format!("[{OPERATOR_BANNED}]:0"));
    assert_eq!(unjudged.result, "ok");
    let stats = f.h.stats();
    assert_eq!(stats.get(HOOK_CONNECT6, VERDICT_DENIED), 4);
    assert_eq!(stats.get(enforcer_common::HOOK_SENDMSG6, VERDICT_DENIED), 4);
}

#[test]
fn an_operator_nat64_prefix_from_the_policy_is_judged_until_removed() {
    let with_prefix = POLICY.replacen(
        "{\"version\": 1,",
        r#"{"version": 1, "nat64_prefixes": ["2001:db8:64::/96"],"#,
        1,
    );
    let mut f = fixture_with("op", &with_prefix).with_lo(&[OPERATOR_OK, OPERATOR_BANNED]);
    assert_eq!(
        f.probe().run("tcp", &format!("[{OPERATOR_OK}]:0")).result,
        "ok"
    );
    let (c6, s6) = (Hook::Connect6, Hook::Sendmsg6);
    let exact = "10.77.0.2";
    f.assert_refused("tcp", OPERATOR_BANNED, c6, RULE_V4_EXACT, exact, Via::Nat64);
    f.assert_refused(
        "udp-sendto",
        OPERATOR_BANNED,
        s6,
        RULE_V4_EXACT,
        exact,
        Via::Nat64,
    );
    // A prefix the policy drops is no longer judged.
    f.h.apply(POLICY);
    let after = f.probe().run("tcp", &format!("[{OPERATOR_BANNED}]:0"));
    assert_eq!(after.result, "ok");
}

#[test]
fn udp_sendto_and_connect_then_send_are_eperm() {
    let f = fixture("u4");
    assert_eq!(f.probe().run("udp-sendto", "10.77.0.1:0").result, "ok");
    let sendto = f.probe().run("udp-sendto", "10.77.0.2:0");
    assert_eq!(sendto.result, "EPERM");
    let ev = f.event_of(sendto.pid);
    assert_event(
        &ev,
        Hook::Sendmsg4,
        RULE_V4_EXACT,
        "10.77.0.2",
        sendto.port,
        sendto.pid,
        f.cg.id(),
    );
    assert_eq!(ev.protocol, 17);
    // UDP connect() is judged by connect4 and refused there.
    let connected = f.probe().run("udp-connect-send", "10.77.0.2:0");
    assert_eq!(connected.result, "connect:EPERM");
    assert_event(
        &f.event_of(connected.pid),
        Hook::Connect4,
        RULE_V4_EXACT,
        "10.77.0.2",
        connected.port,
        connected.pid,
        f.cg.id(),
    );
    let v6 = f.probe().run("udp-sendto", "[fd78::1]:0");
    assert_eq!(v6.result, "EPERM");
    assert_event(
        &f.event_of(v6.pid),
        Hook::Sendmsg6,
        RULE_V6_RANGE,
        "fd78::1",
        v6.port,
        v6.pid,
        f.cg.id(),
    );
    assert_eq!(f.h.stats().get(HOOK_SENDMSG4, VERDICT_DENIED), 1);
}

#[test]
fn a_nested_cgroup_and_a_fresh_netns_are_covered() {
    let mut f = fixture("ne");
    let child = f.cg.child("nested");
    let nested = Probe::new()
        .cgroup(&child)
        .netns(f.ns.name())
        .run("tcp", "10.77.0.2:0");
    assert_eq!(nested.result, "EPERM");
    let ev = f.event_of(nested.pid);
    assert_eq!(ev.cgroup_id, enforcer_tests::guards::cgroup_id(&child));
    // A process that makes its own, empty network namespace is still in
    // the cgroup, and the verdict comes before any routing.
    let fresh = Probe::new()
        .cgroup(f.cg.path())
        .unshare_net()
        .run("tcp", "10.77.0.2:443");
    assert_eq!(fresh.result, "EPERM");
    assert_eq!(f.event_of(fresh.pid).port, 443);
    // Control: the same attempt from a fresh netns outside the cgroup is not
    // refused by us (no route there, so the kernel says ENETUNREACH).
    let outside = Probe::new().unshare_net().run("tcp", "10.77.0.2:443");
    assert_eq!(outside.result, "ENETUNREACH");
}

#[test]
fn audit_mode_lets_traffic_through_and_still_reports() {
    let f = fixture("au");
    f.h.set_mode(Mode::Audit);
    let audited = f.probe().run("tcp", "10.77.0.2:0");
    assert_eq!(audited.result, "ok");
    // One event for the attempt. The skb hook sees every packet of the
    // audited connection (both ends are in the cgroup: the probe listens
    // on the banned address too) but reports each socket at most once per
    // interval, and never the one connect4 already reported.
    let events: Vec<_> =
        f.h.events()
            .into_iter()
            .filter(|e| e.tgid == audited.pid)
            .collect();
    let connects: Vec<_> = events.iter().filter(|e| e.hook == Hook::Connect4).collect();
    assert_eq!(connects.len(), 1, "{events:?}");
    let ev = connects[0];
    let mut skb_cookies: Vec<_> = events
        .iter()
        .filter(|e| e.hook == Hook::SkbEgress)
        .map(|e| e.cookie)
        .collect();
    assert!(!skb_cookies.contains(&ev.cookie), "{events:?}");
    let n = skb_cookies.len();
    skb_cookies.sort_unstable();
    skb_cookies.dedup();
    assert_eq!(skb_cookies.len(), n, "a socket reported twice: {events:?}");
    assert_eq!(ev.verdict, Verdict::Audited);
    assert_eq!(ev.rule_id, deny_id(RULE_V4_EXACT));
    let stats = f.h.stats();
    assert_eq!(stats.get(HOOK_CONNECT4, VERDICT_AUDITED), 1);
    assert!(stats.get(HOOK_SKB_EGRESS, VERDICT_AUDITED) >= 1);
    assert!(stats.skb_events_coalesced() >= 1);
    f.h.set_mode(Mode::Enforce);
    assert_eq!(f.probe().run("tcp", "10.77.0.2:0").result, "EPERM");
}

#[test]
fn removing_a_ban_opens_the_address_again() {
    let mut f = fixture("rm");
    assert_eq!(f.probe().run("tcp", "10.77.0.2:0").result, "EPERM");
    f.h.apply(r#"{"version":1,"deny":{"cidrs":["10.78.0.0/16"]}}"#);
    assert_eq!(f.probe().run("tcp", "10.77.0.2:0").result, "ok");
    assert_eq!(f.probe().run("tcp", "10.78.1.1:0").result, "EPERM");
}

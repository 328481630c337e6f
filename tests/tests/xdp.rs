//! XDP on a veth pair between two namespaces the test makes.

use enforcer::bpf::{
    events::{Hook, Verdict},
    stats::set_xdp_events_per_sec,
};
use enforcer_common::{HOOK_XDP, VERDICT_DENIED, VERDICT_PASS};
use enforcer_tests::{
    CgroupGuard, Harness, NetnsGuard,
    veth::{Pair, deliver, pair},
};

const POLICY: &str = r#"{"version":1,"deny":{"cidrs":["10.79.0.3","10.79.0.4","fd79::3"]}}"#;
const FRAMES: usize = 50;

fn harness(tag: &str, p: &Pair) -> (Harness, CgroupGuard) {
    let cg = CgroupGuard::new(tag);
    let mut h = Harness::new(tag, &cg, POLICY, &[]);
    let mode =
        p.b.enter(|| h.datapath.attach_xdp("vb").expect("attach XDP in B"));
    assert_eq!(mode, "native", "veth supports native XDP on this kernel");
    (h, cg)
}

#[test]
fn xdp_drops_frames_from_a_banned_source_and_passes_others() {
    let p = pair("xs");
    let (h, _cg) = harness("xs", &p);
    // Allowed traffic first: it also settles ARP/ND between A and B.
    assert_eq!(deliver(&p, "10.79.0.1:0", "10.79.0.2:0", FRAMES), FRAMES);
    assert_eq!(deliver(&p, "[fd79::1]:0", "[fd79::2]:0", FRAMES), FRAMES);
    let before = h.stats();
    assert_eq!(deliver(&p, "10.79.0.3:0", "10.79.0.2:0", FRAMES), 0);
    assert_eq!(deliver(&p, "[fd79::3]:0", "[fd79::2]:0", FRAMES), 0);
    let after = h.stats();
    assert_eq!(
        after.get(HOOK_XDP, VERDICT_DENIED) - before.get(HOOK_XDP, VERDICT_DENIED),
        2 * FRAMES as u64,
        "every banned frame was counted as dropped, nothing else"
    );
    assert!(before.get(HOOK_XDP, VERDICT_PASS) >= 2 * FRAMES as u64);
    let events = h.events();
    assert_eq!(
        events.len(),
        2 * FRAMES,
        "under the rate limit every drop is reported"
    );
    let ev = &events[0];
    assert_eq!(
        (ev.hook, ev.verdict, ev.rule_id),
        (Hook::Xdp, Verdict::Denied, h.rule_id("10.79.0.3/32"))
    );
    assert_eq!(ev.addr, Some("10.79.0.3".parse().unwrap()));
    assert!(ev.source_matched && ev.owner_unknown);
    assert_eq!(ev.protocol, 17);
    assert!(ev.port != 0, "the banned side's (source) port");
    assert_eq!(events[FRAMES].addr, Some("fd79::3".parse().unwrap()));
    assert_eq!(events[FRAMES].rule_id, h.rule_id("fd79::3/128"));
}

#[test]
fn xdp_drops_frames_to_a_banned_destination() {
    let p = pair("xd");
    let (h, _cg) = harness("xd", &p);
    assert_eq!(deliver(&p, "10.79.0.1:0", "10.79.0.2:0", 5), 5);
    assert_eq!(deliver(&p, "10.79.0.1:0", "10.79.0.4:0", FRAMES), 0);
    assert_eq!(h.stats().get(HOOK_XDP, VERDICT_DENIED), FRAMES as u64);
    let events = h.events();
    let rule = h.rule_id("10.79.0.4/32");
    assert!(
        events
            .iter()
            .all(|e| !e.source_matched && e.rule_id == rule)
    );
}

#[test]
fn xdp_events_are_rate_limited_and_the_rest_counted() {
    let p = pair("xr");
    let (h, _cg) = harness("xr", &p);
    set_xdp_events_per_sec(&h.pins, 5).unwrap();
    assert_eq!(deliver(&p, "10.79.0.1:0", "10.79.0.2:0", 5), 5);
    assert_eq!(deliver(&p, "10.79.0.3:0", "10.79.0.2:0", FRAMES), 0);
    let stats = h.stats();
    let events = h.events();
    // Per CPU budget: with 2 CPUs at most 10 within the second.
    assert!((5..=10).contains(&events.len()), "{} events", events.len());
    assert_eq!(stats.get(HOOK_XDP, VERDICT_DENIED), FRAMES as u64);
    assert_eq!(
        stats.xdp_events_suppressed() + events.len() as u64,
        FRAMES as u64,
        "every drop is either reported or counted as suppressed"
    );
}

#[test]
fn without_native_support_xdp_falls_back_to_generic_mode() {
    let ns = NetnsGuard::new("xg");
    // A bridge has no driver XDP (and this kernel has no dummy module).
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let cg = CgroupGuard::new("xg");
    let mut h = Harness::new("xg", &cg, POLICY, &[]);
    let mode = ns.enter(|| {
        h.datapath
            .attach_xdp("br0")
            .expect("generic XDP on a bridge")
    });
    assert_eq!(mode, "generic");
    assert!(h.pins.xdp_link("br0").exists());
}

/// The XDP program run by the kernel on frames the test builds
/// (BPF_PROG_TEST_RUN), for what a real link cannot easily carry.
mod test_run {
    use enforcer::{
        bpf::events::{Verdict, Via},
        policy::Mode,
    };
    use enforcer_common::{HOOK_XDP, VERDICT_DENIED, VERDICT_ERROR, VERDICT_PASS};
    use enforcer_tests::{
        CgroupGuard, Harness,
        frame::{self, ETH_P_IP, ethernet},
    };

    const XDP_DROP: u32 = 1;
    const XDP_PASS: u32 = 2;

    fn run(h: &mut Harness, frame: &[u8]) -> u32 {
        h.test_run(enforcer_common::programs::XDP, frame)
    }

    /// UDP 8080 → 443.
    fn ipv4_udp(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        frame::ipv4_udp(src, dst, 8080, 443, &[])
    }

    fn ipv6_udp(src: &str, dst: &str) -> Vec<u8> {
        frame::ipv6_udp(src, dst, 8080, 443, &[])
    }

    #[test]
    fn nat64_and_6to4_forms_of_banned_v4_addresses_drop_either_way() {
        let cg = CgroupGuard::new("x6");
        let policy = r#"{"version":1,"deny":{"cidrs":["10.79.0.3","10.79.0.4","fd79::3"]},
                         "nat64_prefixes":["2001:db8:64::/96"]}"#;
        let mut h = Harness::new("x6", &cg, policy, &[]);
        // 10.79.0.2 is not banned, 10.79.0.3 and .4 are.
        for (src, dst) in [
            ("fd79::1", "64:ff9b::a4f:2"),
            ("fd79::1", "2002:a4f:2::"),
            ("fd79::1", "2001:db8:64::a4f:2"),
            // Not a configured prefix.
            ("fd79::1", "2001:db8:65::a4f:4"),
        ] {
            assert_eq!(run(&mut h, &ipv6_udp(src, dst)), XDP_PASS, "{src} -> {dst}");
        }
        assert!(h.events().is_empty());
        // (src, dst, the banned v4, form, whether the source matched)
        let cases = [
            ("fd79::1", "64:ff9b::a4f:4", "10.79.0.4", Via::Nat64, false),
            (
                "fd79::1",
                "2001:db8:64::a4f:4",
                "10.79.0.4",
                Via::Nat64,
                false,
            ),
            (
                "fd79::1",
                "2002:a4f:4:1::1",
                "10.79.0.4",
                Via::SixToFour,
                false,
            ),
            ("64:ff9b::a4f:3", "fd79::2", "10.79.0.3", Via::Nat64, true),
            ("2002:a4f:3::", "fd79::2", "10.79.0.3", Via::SixToFour, true),
        ];
        for (src, dst, v4, via, source) in cases {
            let rule = h.rule_id(&format!("{v4}/32"));
            assert_eq!(run(&mut h, &ipv6_udp(src, dst)), XDP_DROP, "{src} -> {dst}");
            let events = h.events();
            assert_eq!(events.len(), 1, "{src} -> {dst}: {events:?}");
            let ev = &events[0];
            assert_eq!((ev.verdict, ev.rule_id), (Verdict::Denied, rule), "{ev:?}");
            assert_eq!(ev.addr, Some(v4.parse().unwrap()), "{ev:?}");
            assert_eq!((ev.via, ev.source_matched), (Some(via), source), "{ev:?}");
            let port = if source { 8080 } else { 443 };
            assert_eq!((ev.port, ev.protocol), (port, 17), "{ev:?}");
        }
        let stats = h.stats();
        assert_eq!(stats.get(HOOK_XDP, VERDICT_DENIED), cases.len() as u64);
        assert_eq!(stats.get(HOOK_XDP, VERDICT_PASS), 4);
    }

    #[test]
    fn a_truncated_ip_header_is_an_error_verdict_that_fails_closed() {
        let cg = CgroupGuard::new("xt");
        let mut h = Harness::new("xt", &cg, super::POLICY, &[]);
        let truncated = ethernet(ETH_P_IP, &[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17]);
        assert_eq!(run(&mut h, &truncated), XDP_DROP);
        let stats = h.stats();
        assert_eq!(stats.get(HOOK_XDP, VERDICT_ERROR), 1);
        let events = h.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].verdict, Verdict::Error);
        // Audit mode never blocks, not even on an error.
        h.set_mode(Mode::Audit);
        assert_eq!(run(&mut h, &truncated), XDP_PASS);
    }

    #[test]
    fn non_ip_passes_and_a_crafted_banned_source_drops() {
        let cg = CgroupGuard::new("xc");
        let mut h = Harness::new("xc", &cg, super::POLICY, &[]);
        assert_eq!(run(&mut h, &ethernet(0x0806, &[0; 28])), XDP_PASS);
        assert_eq!(
            run(&mut h, &ipv4_udp([10, 79, 0, 1], [10, 79, 0, 2])),
            XDP_PASS
        );
        assert_eq!(
            run(&mut h, &ipv4_udp([10, 79, 0, 3], [10, 79, 0, 2])),
            XDP_DROP
        );
        let stats = h.stats();
        assert_eq!(
            stats.get(HOOK_XDP, VERDICT_PASS),
            2,
            "the ARP and the allowed frame"
        );
        assert_eq!(stats.get(HOOK_XDP, VERDICT_DENIED), 1);
        let ev = &h.events()[0];
        assert_eq!(
            (ev.port, ev.protocol),
            (8080, 17),
            "the banned source's port"
        );
    }
}

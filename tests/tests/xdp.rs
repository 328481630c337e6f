//! XDP on a veth pair between two namespaces the test makes.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use enforcer::bpf::{
    events::{Hook, Verdict},
    stats::set_xdp_events_per_sec,
};
use enforcer_common::{HOOK_XDP, VERDICT_DENIED, VERDICT_PASS};
use enforcer_tests::{CgroupGuard, Harness, NetnsGuard};

const POLICY: &str = r#"{"version":1,"deny":{"cidrs":["10.79.0.3","10.79.0.4","fd79::3"]}}"#;
const FRAMES: usize = 50;

struct Pair {
    a: NetnsGuard,
    b: NetnsGuard,
}

/// A (10.79.0.1 and .3, fd79::1 and ::3) ⇄ B (10.79.0.2 and .4, fd79::2).
fn pair(tag: &str) -> Pair {
    let a = NetnsGuard::new(&format!("{tag}a"));
    let b = NetnsGuard::new(&format!("{tag}b"));
    a.ip(&[
        "link",
        "add",
        "va",
        "type",
        "veth",
        "peer",
        "name",
        "vb",
        "netns",
        b.name(),
    ]);
    for (ns, dev, addrs) in [
        (
            &a,
            "va",
            ["10.79.0.1/24", "10.79.0.3/24", "fd79::1/64", "fd79::3/64"],
        ),
        (
            &b,
            "vb",
            ["10.79.0.2/24", "10.79.0.4/24", "fd79::2/64", "fd79::4/64"],
        ),
    ] {
        for addr in addrs {
            let mut args = vec!["addr", "add", addr, "dev", dev];
            if addr.contains(':') {
                args.insert(0, "-6");
                args.push("nodad");
            }
            ns.ip(&args);
        }
        ns.ip(&["link", "set", dev, "up"]);
    }
    Pair { a, b }
}

/// Sends `n` datagrams from `src` to `dst` inside namespace A and returns
/// how many a receiver bound to `dst` in B got (bounded in time).
fn deliver(p: &Pair, src: &str, dst: &str, n: usize) -> usize {
    let dst: SocketAddr = dst.parse().unwrap();
    let receiver =
        p.b.enter(|| UdpSocket::bind(dst).expect("bind receiver in B"));
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let dst = receiver.local_addr().unwrap();
    let src: SocketAddr = src.parse().unwrap();
    p.a.enter(|| {
        let s = UdpSocket::bind(src).expect("bind sender in A");
        for _ in 0..n {
            s.send_to(b"frame", dst).expect("send");
        }
    });
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 16];
    while got < n && Instant::now() < deadline {
        if receiver.recv(&mut buf).is_ok() {
            got += 1;
        }
    }
    got
}

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
        (Hook::Xdp, Verdict::Denied, 1)
    );
    assert_eq!(ev.addr, Some("10.79.0.3".parse().unwrap()));
    assert!(ev.source_matched && ev.owner_unknown);
    assert_eq!(ev.protocol, 17);
    assert!(ev.port != 0, "the banned side's (source) port");
    assert_eq!(events[FRAMES].addr, Some("fd79::3".parse().unwrap()));
    assert_eq!(events[FRAMES].rule_id, 3);
}

#[test]
fn xdp_drops_frames_to_a_banned_destination() {
    let p = pair("xd");
    let (h, _cg) = harness("xd", &p);
    assert_eq!(deliver(&p, "10.79.0.1:0", "10.79.0.2:0", 5), 5);
    assert_eq!(deliver(&p, "10.79.0.1:0", "10.79.0.4:0", FRAMES), 0);
    assert_eq!(h.stats().get(HOOK_XDP, VERDICT_DENIED), FRAMES as u64);
    let events = h.events();
    assert!(events.iter().all(|e| !e.source_matched && e.rule_id == 2));
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

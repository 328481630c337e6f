//! The daemon binary: fail-closed lifecycle, adoption, reload, detach.

use std::time::{Duration, Instant};

use aya_maps::map_id;
use enforcer::bpf::writer::MapWriter;
use enforcer_tests::{
    Probe, World,
    daemon::{Daemon, enforcer},
    veth::{deliver, pair},
};

const BAN_2: &str = r#"{"version":1,"deny":{"cidrs":["10.77.0.2"]}}"#;
const BAN_1: &str = r#"{"version":1,"deny":{"cidrs":["10.77.0.1"]}}"#;

mod aya_maps {
    use std::path::Path;

    /// The kernel id of a pinned map: equal ids mean the same map object.
    pub fn map_id(pin: &Path) -> u32 {
        let data = aya::maps::MapData::from_pin(pin).expect("pinned map");
        data.info().expect("map info").id()
    }
}

fn world(tag: &str) -> World {
    World::new(tag, &["10.77.0.1/32", "10.77.0.2/32"])
}

#[test]
fn kill9_keeps_enforcing_a_restart_adopts_without_a_gap_and_detach_removes() {
    let w = world("lc");
    let policy = w.tmp.write("policy.json", BAN_2);
    let daemon = Daemon::start(&w.args(&policy));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    assert_eq!(w.probe("10.77.0.1:0"), "ok");
    let deny_v4 = w.pins().map(enforcer_common::maps::DENY_V4);
    let id_before = map_id(&deny_v4);

    daemon.kill9();
    assert_eq!(
        w.probe("10.77.0.2:0"),
        "EPERM",
        "enforcement survives kill -9"
    );

    // Connect in a loop while a new daemon starts: not one attempt passes.
    let looping = std::thread::scope(|s| {
        let attempts = s.spawn(|| {
            Probe::new()
                .cgroup(w.cg.path())
                .netns(w.ns.name())
                .run("tcp-loop:1500", "10.77.0.2:9")
        });
        std::thread::sleep(Duration::from_millis(50));
        let daemon = Daemon::start(&w.args(&policy));
        assert!(
            !attempts.is_finished(),
            "the attempts must span the restart for this test to mean anything"
        );
        let result = attempts.join().unwrap();
        (daemon, result)
    });
    let (daemon, attempts) = looping;
    assert_eq!(
        attempts.result, "EPERM=1500",
        "a banned connect passed during the restart"
    );
    assert_eq!(
        map_id(&deny_v4),
        id_before,
        "the restarted daemon adopted the pinned maps"
    );
    assert!(
        daemon
            .log_text()
            .contains("adopting the maps of a previous instance")
    );
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");

    // A clean stop also leaves the enforcement in place.
    daemon.stop();
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");

    let (code, out, err) = enforcer(&["detach", "--bpffs", w.bpffs.pins_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // Every cgroup program and the five exec-tracking tracepoints
    // (execve, execveat, exec, fork, exit; no XDP here), and every map.
    let maps = enforcer_common::maps::ALL.len();
    let links = enforcer::bpf::CgroupHook::ALL.len() + 5;
    assert!(
        out.contains(&format!("removed {links} links and {maps} maps")),
        "{out}"
    );
    assert_eq!(
        w.probe("10.77.0.2:0"),
        "ok",
        "detach removed the enforcement"
    );
    assert!(!w.bpffs.pins_dir().exists());
}

#[test]
fn sighup_reloads_and_a_bad_reload_keeps_the_maps_byte_for_byte() {
    let w = world("hu");
    let policy = w.tmp.write("policy.json", BAN_2);
    let daemon = Daemon::start(&w.args(&policy));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");

    w.tmp.write("policy.json", BAN_1);
    daemon.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.probe("10.77.0.1:0") != "EPERM" {
        assert!(
            Instant::now() < deadline,
            "reload not applied: {}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(w.probe("10.77.0.2:0"), "ok");

    let before = MapWriter::open(&w.pins()).unwrap().current();
    w.tmp.write(
        "policy.json",
        "{\"version\": 1,\n \"deny\": {\"cidrs\": [\"10.77.0.300\"]}}",
    );
    daemon.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log_text().contains("reload rejected") {
        assert!(
            Instant::now() < deadline,
            "no rejection logged: {}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = daemon.log_text();
    assert!(
        log.contains("policy.json:2:") && log.contains("deny.cidrs[0]"),
        "{log}"
    );
    assert_eq!(MapWriter::open(&w.pins()).unwrap().current(), before);
    assert_eq!(
        w.probe("10.77.0.1:0"),
        "EPERM",
        "the last good policy stays"
    );
}

#[test]
fn a_malformed_policy_is_rejected_with_file_line_and_field() {
    let w = world("bp");
    let bad = w.tmp.write(
        "bad.json",
        "{\"version\": 1,\n \"deny\": {\"cidrs\": [\"160.79.104.0/23\",\n   \"160.79.104.0/33\"]}}",
    );
    let bad_str = bad.to_str().unwrap();
    let (code, _, err) = enforcer(&["policy", "validate", bad_str]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{bad_str}:3:")), "{err}");
    assert!(
        err.contains("deny.cidrs[1]: invalid CIDR \"160.79.104.0/33\""),
        "{err}"
    );

    // A daemon given it refuses to start, and installs nothing.
    let pins = w.bpffs.pins_dir();
    let run_on_bad = || {
        enforcer(&[
            "daemon",
            "--policy",
            bad_str,
            "--cgroup",
            w.cg.path().to_str().unwrap(),
            "--bpffs",
            pins.to_str().unwrap(),
            "--state-dir",
            w.tmp.path().to_str().unwrap(),
        ])
    };
    let (code, _, err) = run_on_bad();
    assert_eq!(code, 1);
    assert!(err.contains("deny.cidrs[1]"), "{err}");
    assert!(!pins.exists());

    // With an enforcement already pinned, a restart on a bad policy fails
    // and the enforcement stays (fail closed).
    let good = w.tmp.write("good.json", BAN_2);
    Daemon::start(&w.args(&good)).kill9();
    let (code, _, _) = run_on_bad();
    assert_eq!(code, 1);
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
}

#[test]
fn xdp_through_the_daemon_survives_a_restart_and_is_pruned_when_dropped() {
    let w = world("dx");
    let p = pair("dx");
    let policy = w.tmp.write(
        "policy.json",
        r#"{"version":1,"deny":{"cidrs":["10.79.0.3"]}}"#,
    );
    let mut args = w.args(&policy);
    args.netns = Some(p.b.name().to_owned());
    args.xdp_ifaces = vec!["vb".to_owned()];
    let daemon = Daemon::start(&args);
    assert!(
        daemon.log_text().contains("XDP filter attached"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(deliver(&p, "10.79.0.1:0", "10.79.0.2:0", 10), 10);
    assert_eq!(deliver(&p, "10.79.0.3:0", "10.79.0.2:0", 10), 0);
    let xdp_pin = w.pins().xdp_link("vb");
    assert!(xdp_pin.exists());

    daemon.kill9();
    assert_eq!(
        deliver(&p, "10.79.0.3:0", "10.79.0.2:0", 10),
        0,
        "XDP survives kill -9"
    );
    let daemon = Daemon::start(&args);
    assert!(
        daemon.log_text().contains("replaced in place"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(deliver(&p, "10.79.0.3:0", "10.79.0.2:0", 10), 0);
    daemon.kill9();

    // Restarted without the interface: its XDP link is removed.
    args.xdp_ifaces.clear();
    let daemon = Daemon::start(&args);
    assert!(!xdp_pin.exists());
    assert_eq!(deliver(&p, "10.79.0.3:0", "10.79.0.2:0", 10), 10);
    daemon.stop();
}

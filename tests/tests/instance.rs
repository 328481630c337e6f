//! One instance per pin directory, pins of this build only, interfaces
//! checked before anything is attached, and `policy validate --strict`.
//! Each refusal is checked to have changed nothing.

use std::{collections::BTreeMap, os::unix::fs::MetadataExt as _, path::Path};

use aya::maps::{Array, MapData, PerCpuArray};
use enforcer_common::{CONFIG_LEN, maps};
use enforcer_tests::{
    CgroupGuard, Probe, TempDir, World,
    daemon::{Daemon, DaemonArgs, enforcer, exit_within},
};

const BAN_2: &str = r#"{"version":1,"deny":{"cidrs":["10.77.0.2"]}}"#;

fn world(tag: &str) -> World {
    World::new(tag, &["10.77.0.1/32", "10.77.0.2/32"])
}

/// Runs `enforcer daemon` with `args` and expects it to exit within 20 s:
/// (exit code, stderr). A daemon that starts instead is killed (our own
/// child, by its handle) and reported as `None`.
fn daemon_refused(args: &DaemonArgs) -> Option<(i32, String)> {
    let log = args.state.join("refused.log");
    std::fs::create_dir_all(&args.state).unwrap();
    let mut child = args
        .command(&[])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn enforcer daemon");
    let status = exit_within(&mut child, 20)?;
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    Some((status.code().unwrap_or(-1), err))
}

/// Every pin under `dir` with its kernel object: the inode of each pin
/// file (a replaced link or map is a new pin, so a new inode).
fn pins_below(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for sub in ["maps", "links"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            out.insert(
                format!("{sub}/{}", entry.file_name().to_string_lossy()),
                meta.ino(),
            );
        }
    }
    out
}

fn map_id(pin: &Path) -> u32 {
    MapData::from_pin(pin).unwrap().info().unwrap().id()
}

#[test]
fn a_second_daemon_on_the_same_pins_is_refused_and_changes_nothing() {
    let w = world("i2");
    let policy = w.tmp.write("policy.json", BAN_2);
    let first = Daemon::start(&w.args(&policy));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    let pins = w.bpffs.pins_dir();
    let before = pins_below(&pins);

    // Another cgroup, state dir and socket; the same pins.
    let other_cg = CgroupGuard::new("i2b");
    let other_tmp = TempDir::new("i2b");
    let mut second = w.args(&policy);
    second.cgroup = other_cg.path().to_owned();
    second.state = other_tmp.path().to_owned();
    let (code, err) = daemon_refused(&second)
        .expect("a second daemon on the same --bpffs started instead of being refused");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("the enforcer daemon with pid {}", first.pid()))
            && err.contains("its own --bpffs"),
        "{err}"
    );
    assert!(
        !other_tmp.path().join("control.sock").exists(),
        "the refused daemon bound a socket"
    );

    assert_eq!(pins_below(&pins), before, "a pin was replaced");
    assert_eq!(
        w.probe("10.77.0.2:0"),
        "EPERM",
        "the first cgroup is still enforced"
    );
    let other = Probe::new()
        .cgroup(other_cg.path())
        .netns(w.ns.name())
        .run("tcp", "10.77.0.2:0");
    assert_eq!(other.result, "ok", "the second cgroup was never enforced");
    let socket = w.socket();
    let (code, out, err) = enforcer(&["status", "--json", "--socket", socket.to_str().unwrap()]);
    assert_eq!(code, 0, "the first daemon still answers: {err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["cgroup"], w.cg.path().display().to_string());

    // Pulling the pins from under the live daemon is refused too.
    let (code, _, err) = enforcer(&["detach", "--bpffs", pins.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("pid {}", first.pid())) && err.contains("nothing was removed"),
        "{err}"
    );
    assert_eq!(pins_below(&pins), before);
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");

    // Once it is gone (even by kill -9), the lock goes with it.
    first.kill9();
    let (code, out, err) = enforcer(&["detach", "--bpffs", pins.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("detached"), "{out}");
    assert_eq!(w.probe("10.77.0.2:0"), "ok");
}

/// Pins a map of the wrong layout at the path it is given.
type PinFake = fn(&Path);

/// Replaces the pinned CONFIG map by the map `pin_fake` pins in its place,
/// starts a daemon on the pins, and expects a refusal naming `mismatch`,
/// with every other pin and the enforcement as they were.
fn refused_over(w: &World, policy: &Path, pin_fake: PinFake, mismatch: &str) {
    let pins = w.pins();
    let config = pins.map(maps::CONFIG);
    std::fs::remove_file(&config).unwrap();
    pin_fake(&config);
    let before = pins_below(pins.root());
    let fake_id = map_id(&config);

    let (code, err) =
        daemon_refused(&w.args(policy)).expect("the daemon adopted pinned maps of another layout");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(mismatch), "{mismatch}: {err}");
    assert!(
        err.contains(&format!(
            "enforcer detach --bpffs {}",
            pins.root().display()
        )),
        "{err}"
    );
    assert_eq!(pins_below(pins.root()), before, "a pin was touched");
    assert_eq!(map_id(&config), fake_id);
    assert_eq!(
        w.probe("10.77.0.2:0"),
        "EPERM",
        "the old programs still enforce"
    );
}

#[test]
fn pinned_maps_of_another_layout_are_refused_and_left_as_they_were() {
    let w = world("il");
    let policy = w.tmp.write("policy.json", BAN_2);
    Daemon::start(&w.args(&policy)).kill9();
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");

    // CONFIG replaced by a map of another value size, length and type.
    let fakes: [(PinFake, String); 3] = [
        (
            |at| {
                Array::<MapData, u64>::create(CONFIG_LEN, 0)
                    .unwrap()
                    .pin(at)
                    .unwrap()
            },
            "CONFIG: value_size is 8 pinned, 4 in this build".into(),
        ),
        (
            |at| {
                Array::<MapData, u32>::create(CONFIG_LEN + 3, 0)
                    .unwrap()
                    .pin(at)
                    .unwrap()
            },
            format!(
                "CONFIG: max_entries is {} pinned, {CONFIG_LEN} in this build",
                CONFIG_LEN + 3
            ),
        ),
        (
            |at| {
                PerCpuArray::<MapData, u32>::create(CONFIG_LEN, 0)
                    .unwrap()
                    .pin(at)
                    .unwrap()
            },
            "CONFIG: map type is PerCpuArray pinned, Array in this build".into(),
        ),
    ];
    for (pin_fake, mismatch) in fakes {
        refused_over(&w, &policy, pin_fake, &mismatch);
    }

    // What the error says to do works: detach, then start.
    let pins = w.bpffs.pins_dir();
    let (code, _, err) = enforcer(&["detach", "--bpffs", pins.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let daemon = Daemon::start(&w.args(&policy));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    daemon.stop();
}

#[test]
fn a_mistyped_xdp_interface_attaches_nothing_and_leaves_the_instance_alone() {
    let w = world("ix");
    let policy = w.tmp.write("policy.json", BAN_2);
    let mut args = w.args(&policy);
    args.xdp_ifaces = vec!["lo".to_owned(), "nosuchif0".to_owned()];

    // A fresh bpffs: nothing is created.
    let (code, err) = daemon_refused(&args).expect("the daemon started without nosuchif0");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--xdp-iface nosuchif0: no such network interface"),
        "{err}"
    );
    assert!(
        !w.bpffs.pins_dir().exists(),
        "pins were left behind: {:?}",
        std::fs::read_dir(w.bpffs.pins_dir()).map(|d| d.count())
    );
    assert_eq!(w.probe("10.77.0.2:0"), "ok", "nothing was attached");

    // A running instance's pins: left exactly as they were.
    Daemon::start(&w.args(&policy)).kill9();
    let before = pins_below(&w.bpffs.pins_dir());
    let (code, err) = daemon_refused(&args).expect("the daemon started without nosuchif0");
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        pins_below(&w.bpffs.pins_dir()),
        before,
        "a link was replaced"
    );
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
}

#[test]
fn policy_validate_strict_fails_on_warnings() {
    let tmp = TempDir::new("vs");
    let clean = tmp.write(
        "clean.json",
        r#"{"version":1,"deny":{"cidrs":["192.0.2.0/24"]},"resolver":{"upstreams":["198.51.100.53"]}}"#,
    );
    let wide = tmp.write(
        "wide.json",
        r#"{"version":1,"deny":{"cidrs":["192.0.2.0/24"]},"allow":{"cidrs":["0.0.0.0/0"]},"resolver":{"upstreams":["198.51.100.53"]}}"#,
    );
    let resolver = tmp.write(
        "resolver.json",
        r#"{"version":1,"deny":{"cidrs":["198.51.100.0/24"]},"resolver":{"upstreams":["198.51.100.53"]}}"#,
    );
    let invalid = tmp.write("invalid.json", r#"{"version":1,"deny":[]}"#);
    let arg = |p: &Path| p.to_str().unwrap().to_owned();

    let (code, out, err) = enforcer(&["policy", "validate", "--strict", &arg(&clean)]);
    assert_eq!(code, 0, "{out}{err}");
    // Without --strict a warning is printed, and the exit is 0.
    let (code, out, _) = enforcer(&["policy", "validate", &arg(&wide)]);
    assert_eq!(code, 0);
    assert!(
        out.contains("warning: ") && out.contains("allow 0.0.0.0/0 covers all of IPv4"),
        "{out}"
    );
    for file in [&wide, &resolver] {
        let (code, out, err) = enforcer(&["policy", "validate", "--strict", &arg(file)]);
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.contains("warnings count as failures"), "{err}");
    }
    let (_, out, _) = enforcer(&["policy", "validate", "--strict", &arg(&resolver)]);
    assert!(
        out.contains("covers the resolver 198.51.100.53 (resolver.upstreams)"),
        "{out}"
    );
    // Invalid wins over warnings.
    let (code, _, err) = enforcer(&[
        "policy",
        "validate",
        "--strict",
        &arg(&wide),
        &arg(&invalid),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("deny: invalid type: sequence"), "{err}");

    // --with-drop-ins: the mode a drop-in sets is a warning.
    std::fs::create_dir(tmp.path().join("policy.d")).unwrap();
    tmp.write("policy.d/50-audit.json", r#"{"version":1,"mode":"audit"}"#);
    let (code, out, _) = enforcer(&["policy", "validate", "--strict", &arg(&clean)]);
    assert_eq!(code, 0, "alone, the main file has no warning: {out}");
    let (code, out, _) = enforcer(&[
        "policy",
        "validate",
        "--strict",
        "--with-drop-ins",
        &arg(&clean),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("50-audit.json: mode: the drop-in sets mode \"audit\""),
        "{out}"
    );
}

#[test]
fn dangerous_policies_are_warned_about_in_the_log_and_in_status() {
    let w = world("iw");
    let policy = w.tmp.write(
        "policy.json",
        r#"{"version":1,"deny":{"cidrs":["10.77.0.2","127.0.0.0/8"]},"resolver":{"upstreams":["127.0.0.53"]}}"#,
    );
    std::fs::create_dir(w.tmp.path().join("policy.d")).unwrap();
    let drop_in = w
        .tmp
        .write("policy.d/50-mode.json", r#"{"version":1,"mode":"enforce"}"#);
    let daemon = Daemon::start(&w.args(&policy));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    let socket = w.socket();
    let (code, out, err) = enforcer(&["status", "--json", "--socket", socket.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let warnings: Vec<String> = status["policy"]["warnings"]
        .as_array()
        .expect("policy.warnings")
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect();
    for needle in [
        "deny 127.0.0.0/8 covers loopback (127.0.0.0/8)".to_owned(),
        "deny 127.0.0.0/8 covers the resolver 127.0.0.53 (resolver.upstreams)".to_owned(),
        format!("{}: mode: the drop-in sets mode", drop_in.display()),
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(&needle)),
            "{needle} not in {warnings:#?}"
        );
        let logged = daemon
            .log_text()
            .lines()
            .any(|l| l.contains("\"level\":\"WARN\"") && l.contains(&needle));
        assert!(logged, "{needle} not logged at WARN: {}", daemon.log_text());
    }
    daemon.stop();
}

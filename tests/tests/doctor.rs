//! `enforcer doctor` on this host: the kernel probes, a live scoped
//! daemon's instance, an empty pin directory, native XDP of a veth.

use std::process::Command;

use enforcer_tests::{
    BpffsGuard, TempDir, World,
    daemon::{Daemon, enforcer, enforcer_bin},
    guards,
    probe::probe_bin,
    veth,
};
use serde_json::Value;

/// What the daemon cannot run without: none of these may be anything but ok.
const ESSENTIAL: [&str; 5] = ["kernel", "btf", "cgroup2", "cgroup2-root", "memlock"];

/// `enforcer doctor --json ARGS`: (exit code, report).
fn doctor(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["doctor", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = enforcer(&all);
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// The check `name`, which must have `status`.
fn expect<'a>(report: &'a Value, name: &str, status: &str) -> &'a Value {
    let c = check(report, name);
    assert_eq!(c["status"], status, "{name}: {c:#}");
    c
}

fn detail(c: &Value) -> &str {
    c["detail"].as_str().unwrap()
}

fn documented_exit_code(worst: &Value) -> i32 {
    match worst.as_str().unwrap() {
        "ok" | "info" => 0,
        "warn" => 1,
        "fail" => 2,
        other => panic!("unknown status {other}"),
    }
}

#[test]
fn this_host_passes_every_essential_check_and_lsm_fentry_never_fail() {
    // A private, empty pin directory: this test does not depend on (or
    // look at) whatever instance the host may run.
    let bpffs = BpffsGuard::new("dh");
    let dir = bpffs.pins_dir();
    let (code, report) = doctor(&["--bpffs", dir.to_str().unwrap()]);
    for name in ESSENTIAL.into_iter().chain(["bpffs"]) {
        expect(&report, name, "ok");
    }
    let checks = report["checks"].as_array().unwrap();
    // Every program type, map type and program of the object is probed by
    // loading, and each is accepted here.
    for prefix in ["prog:", "helper:", "map:", "load:"] {
        let probed: Vec<&Value> = checks
            .iter()
            .filter(|c| c["name"].as_str().unwrap().starts_with(prefix))
            .collect();
        assert!(!probed.is_empty(), "no {prefix} checks: {report:#}");
        for c in probed {
            assert_eq!(c["status"], "ok", "{c:#}");
        }
    }
    for name in [
        "prog:cgroup_sock_addr",
        "prog:cgroup_skb",
        "prog:cgroup_sock",
        "prog:xdp",
        "prog:tracepoint",
        "map:ring_buf",
        "map:lpm_trie",
        "load:connect4",
        "load:skb_egress",
        "load:sock_create",
        "load:xdp_filter",
        "load:process_exec",
        "load:dns_ingress",
        "helper:bpf_loop",
    ] {
        check(&report, name);
    }
    // Future hardening: reported, never a failure. This kernel refuses both.
    for name in ["bpf-lsm", "fentry"] {
        let c = check(&report, name);
        assert!(
            c["status"] == "info" || c["status"] == "warn",
            "{name} should be reported unavailable here: {c:#}"
        );
        assert!(detail(c).starts_with("not available"), "{c:#}");
    }
    // Nothing pinned at an empty directory.
    let instance = expect(&report, "instance", "warn");
    assert!(detail(instance).starts_with("absent"));
    assert!(instance["fix"].is_string());
    // No failure anywhere, and the exit code is the documented one.
    assert!(checks.iter().all(|c| c["status"] != "fail"), "{report:#}");
    assert_eq!(code, documented_exit_code(&report["worst"]), "{report:#}");
    assert_eq!(code, 1, "the absent instance warns");
    // The text form exits the same way.
    let (text_code, text, _) = enforcer(&["doctor", "--bpffs", dir.to_str().unwrap()]);
    assert_eq!(text_code, code);
    assert!(text.contains("-> start the service"), "{text}");
}

#[test]
fn a_live_daemons_instance_is_healthy_and_locked_and_stays_enforcing_when_it_stops() {
    let w = World::new("dd", &["10.77.0.2/32"]);
    let policy = w.tmp.write(
        "policy.json",
        r#"{"version":1,"deny":{"cidrs":["10.77.0.2"]}}"#,
    );
    let daemon = Daemon::start(&w.args(&policy));
    let pins = w.pins();
    let dir = pins.root().to_str().unwrap().to_owned();
    let socket = w.socket();
    let args = ["--bpffs", &dir, "--socket", socket.to_str().unwrap()];
    let (_, report) = doctor(&args);
    let instance = expect(&report, "instance", "ok");
    assert!(detail(instance).starts_with("healthy"), "{instance:#}");
    let links = expect(&report, "instance-links", "ok");
    assert!(detail(links).contains("exec tracking: linked"), "{links:#}");
    let lock = expect(&report, "instance-daemon", "ok");
    assert_eq!(
        detail(lock),
        format!("locked: the daemon with pid {} runs on it", daemon.pid())
    );
    let answers = expect(&report, "daemon", "ok");
    assert!(detail(answers).contains("(enforce mode)"), "{answers:#}");
    // The daemon keeps running: doctor read the lock, it did not take it.
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");

    daemon.stop();
    let (code, report) = doctor(&args);
    expect(&report, "instance", "ok");
    expect(&report, "instance-links", "ok");
    let lock = expect(&report, "instance-daemon", "warn");
    assert!(detail(lock).contains("keep enforcing"), "{lock:#}");
    expect(&report, "daemon", "warn");
    assert_eq!(code, 1);
    // As doctor says: still enforced with the daemon gone.
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
}

#[test]
fn an_empty_pin_directory_is_reported_absent() {
    let bpffs = BpffsGuard::new("de");
    let dir = bpffs.pins_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let (code, report) = doctor(&["--bpffs", dir.to_str().unwrap()]);
    let instance = expect(&report, "instance", "warn");
    assert_eq!(
        detail(instance),
        format!(
            "absent: nothing is pinned at {}, so nothing is enforced",
            dir.display()
        )
    );
    // No lock or link verdicts about an instance that is not there.
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"instance-daemon"), "{names:?}");
    assert_eq!(code, 1);
}

/// `enforcer doctor --json ARGS` inside the network namespace `netns`.
fn doctor_in(netns: &str, args: &[&str]) -> (i32, Value) {
    let mut cmd = Command::new(enforcer_bin());
    cmd.arg("doctor").arg("--json").args(args);
    let _ns = guards::enter_netns_on_spawn(&mut cmd, netns);
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

#[test]
fn native_xdp_is_read_from_the_driver_without_attaching() {
    let pair = veth::pair("dx");
    let ns = pair.a.name();
    let (_, report) = doctor_in(ns, &["--iface", "va", "--iface", "lo"]);
    let va = expect(&report, "xdp:va", "ok");
    assert!(detail(va).contains("basic"), "{va:#}");
    // Loopback has no native XDP: generic mode, a warning.
    expect(&report, "xdp:lo", "warn");
    // Nothing was attached to find out.
    let link = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", "va"])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(!link.contains("xdp"), "{link}");
    // A name that is not there is a failure (exit 2).
    let (code, report) = doctor_in(ns, &["--iface", "nosuch0"]);
    expect(&report, "xdp:nosuch0", "fail");
    assert_eq!(code, 2);
}

#[test]
fn another_user_is_told_to_run_it_as_root_not_that_nothing_is_pinned() {
    use enforcer_tests::users::{NOBODY, run_as};
    use std::os::unix::fs::PermissionsExt as _;
    let bpffs = BpffsGuard::new("dn");
    let dir = bpffs.pins_dir();
    std::fs::create_dir_all(dir.join("maps")).unwrap();
    // As the daemon leaves it: root's alone.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, out, err) = run_as(
        enforcer_bin().to_str().unwrap(),
        &["doctor", "--json", "--bpffs", dir.to_str().unwrap()],
        NOBODY,
        NOBODY,
        &[],
    );
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let instance = expect(&report, "instance", "warn");
    assert!(
        detail(instance).contains("permission denied"),
        "{instance:#}"
    );
    // No kernel probe without CAP_BPF: said, not failed.
    let bpf = expect(&report, "bpf", "warn");
    assert!(
        bpf["fix"]
            .as_str()
            .unwrap()
            .contains("sudo enforcer doctor")
    );
    assert_eq!(code, 1);
}

/// A process holding UDP `addr`:53 under the executable name `comm`
/// (a copy of the probe), killed on drop.
struct LocalServer(std::process::Child);

impl LocalServer {
    fn start(dir: &TempDir, comm: &str, addr: &str) -> LocalServer {
        let exe = dir.path().join(comm);
        std::fs::copy(probe_bin(), &exe).unwrap();
        let mut child = Command::new(&exe)
            .args(["udp-hold:30000", &format!("{addr}:53")])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(
            line.contains("bound"),
            "{comm} did not bind {addr}:53: {line:?}"
        );
        LocalServer(child)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_loopback_nameserver_served_by_an_encrypted_forwarder_is_named_and_warned_about() {
    let dir = TempDir::new("doctor-fwd");
    let addr = "127.0.9.53";
    let resolv = dir.write("resolv.conf", &format!("nameserver {addr}\n"));
    let resolv = resolv.to_str().unwrap();

    // Nothing listens there yet.
    let (_, report) = doctor(&["--resolv-conf", resolv]);
    let c = expect(&report, "dns-local-forwarder", "warn");
    assert!(detail(c).contains("no process"), "{c:#}");

    // stubby forwards over TLS: named with its pid, and warned about.
    let stubby = LocalServer::start(&dir, "stubby", addr);
    let (code, report) = doctor(&["--resolv-conf", resolv]);
    let c = expect(&report, "dns-local-forwarder", "warn");
    let pid = stubby.0.id();
    assert!(
        detail(c).contains(&format!("stubby (pid {pid})")) && detail(c).contains("DNS over TLS"),
        "{c:#}"
    );
    assert!(code >= 1, "a warning sets the exit code: {code}");
    drop(stubby);

    // A plain forwarder is fine.
    let _dnsmasq = LocalServer::start(&dir, "dnsmasq", addr);
    let (_, report) = doctor(&["--resolv-conf", resolv]);
    let c = expect(&report, "dns-local-forwarder", "ok");
    assert!(detail(c).contains("dnsmasq"), "{c:#}");
}

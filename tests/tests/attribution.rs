//! Attribution and the flow store, through the daemon binary.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use enforcer_tests::{
    Probe, World,
    daemon::{Daemon, DaemonArgs, enforcer, flows_json},
    dns::DnsServer,
    probe::probe_bin,
};
use serde_json::Value;

/// The shared world, with what these tests ask of it.
struct Attribution(World);

impl std::ops::Deref for Attribution {
    type Target = World;
    fn deref(&self) -> &World {
        &self.0
    }
}

impl std::ops::DerefMut for Attribution {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.0
    }
}

fn world(tag: &str) -> Attribution {
    Attribution(World::new(tag, &["10.77.0.1/32", "10.77.0.2/32"]))
}

impl Attribution {
    fn args(&self, policy_json: &str) -> DaemonArgs {
        self.0.args(&self.tmp.write("policy.json", policy_json))
    }

    fn flows(&self, extra: &[&str]) -> Vec<Value> {
        let state = self.tmp.path().to_str().unwrap();
        flows_json(&[&["--state-dir", state], extra].concat())
    }

    /// Waits (bounded) for the flow of `pid` to be stored.
    fn flow_of(&self, pid: u32) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(f) = self.flows(&[]).into_iter().find(|f| f["pid"] == pid) {
                return f;
            }
            assert!(
                Instant::now() < deadline,
                "no flow for pid {pid}: {:?}",
                self.flows(&[])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const BAN: &str = r#"{"version":1,"deny":{"cidrs":["10.77.0.2"]}}"#;

#[test]
fn a_process_that_exits_at_once_is_named_from_its_exec_record() {
    let w = world("ex");
    let daemon = Daemon::start(&w.args(BAN));
    // Freeze the daemon so that the process is long gone from /proc when
    // the events are read: only the kernel's exec record can name it.
    daemon.signal(libc::SIGSTOP);
    let r = Probe::new()
        .cgroup(w.cg.path())
        .netns(w.ns.name())
        .run("tcp", "10.77.0.2:0");
    assert_eq!(r.result, "EPERM");
    assert!(!std::path::Path::new(&format!("/proc/{}", r.pid)).exists());
    daemon.signal(libc::SIGCONT);
    let f = w.flow_of(r.pid);
    assert_eq!(f["exe"], probe_bin().display().to_string(), "{f}");
    let cmdline = f["cmdline"].as_str().unwrap();
    let expected = format!(
        "--cgroup {} --netns {} tcp 10.77.0.2:0",
        w.cg.path().display(),
        w.ns.name()
    );
    assert!(
        cmdline.ends_with(&expected),
        "{cmdline:?} lacks {expected:?}"
    );
    assert_eq!(f["comm"], "probe");
    assert_eq!(f["hooks"], "connect4");
    assert_eq!(f["verdict"], "denied");
    assert_eq!(f["dst"], "10.77.0.2");
    assert_eq!(f["port"], r.port);
    assert_eq!(f["uid"], 0);
    assert_eq!(f["user"], "root");
    let cg_name = w.cg.path().file_name().unwrap().to_str().unwrap();
    assert_eq!(f["cgroup"], format!("/{cg_name}"));
    daemon.stop();
}

#[test]
fn a_shell_its_child_and_a_nested_cgroup_are_each_attributed() {
    let mut w = world("sh");
    let nested = w.cg.child("nested");
    let daemon = Daemon::start(&w.args(BAN));
    let probe = probe_bin();
    let script = format!(
        "echo 0 > {cg}/cgroup.procs; \
         : 3<>/dev/tcp/10.77.0.2/9 2>/dev/null; \
         {probe} --linger-ms 500 tcp 10.77.0.2:9; \
         {probe} --cgroup {nested} tcp 10.77.0.2:9; \
         echo $$",
        cg = w.cg.path().display(),
        probe = probe.display(),
        nested = nested.display()
    );
    let out = Command::new("/bin/bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let shell_pid: u32 = lines.last().unwrap().parse().unwrap();
    let child: Value = serde_json::from_str(lines[0]).unwrap();
    let nested_probe: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(child["result"], "EPERM");
    assert_eq!(nested_probe["result"], "EPERM");

    let shell = w.flow_of(shell_pid);
    assert!(shell["exe"].as_str().unwrap().ends_with("bash"), "{shell}");
    assert!(
        shell["cmdline"]
            .as_str()
            .unwrap()
            .starts_with("/bin/bash -c echo 0 >"),
        "{shell}"
    );
    let child_pid = child["pid"].as_u64().unwrap() as u32;
    let child = w.flow_of(child_pid);
    assert_eq!(child["exe"], probe.display().to_string());
    assert_eq!(child["ppid"], shell_pid, "{child}");
    let cg_name = w.cg.path().file_name().unwrap().to_str().unwrap();
    assert_eq!(child["cgroup"], format!("/{cg_name}"));
    let nested_flow = w.flow_of(nested_probe["pid"].as_u64().unwrap() as u32);
    assert_eq!(nested_flow["cgroup"], format!("/{cg_name}/nested"));
    // Filters.
    let only = w.flows(&["--pid", &child_pid.to_string()]);
    assert_eq!(only.len(), 1);
    let by_exe = w.flows(&["--exe", &probe.display().to_string()]);
    assert_eq!(by_exe.len(), 2);
    daemon.stop();
}

#[test]
fn flows_survive_kill9_and_a_restart() {
    let w = world("fs");
    let daemon = Daemon::start(&w.args(BAN));
    let probe = Probe::new().cgroup(w.cg.path()).netns(w.ns.name());
    let first = probe.run("tcp", "10.77.0.2:0");
    w.flow_of(first.pid);
    daemon.kill9();
    let daemon = Daemon::start(&w.args(BAN));
    let second = probe.run("tcp", "10.77.0.2:0");
    w.flow_of(second.pid);
    let all = w.flows(&[]);
    assert!(
        all.iter().any(|f| f["pid"] == first.pid),
        "the first flow survived"
    );
    let recent = w.flows(&["--since", "1h", "--limit", "1"]);
    assert_eq!(recent.len(), 1);
    daemon.stop();
}

#[test]
fn the_domain_column_names_the_banned_name_behind_the_address() {
    let w = world("dm");
    let dns = DnsServer::start();
    dns.set_addrs("banned.test", &["10.77.0.2"], 60);
    let policy = format!(
        r#"{{"version":1,"deny":{{"domains":["banned.test"]}},"resolver":{{"upstreams":["{}"],"min_ttl_s":1}}}}"#,
        dns.addr()
    );
    let daemon = Daemon::start(&w.args(&policy));
    let r = Probe::new()
        .cgroup(w.cg.path())
        .netns(w.ns.name())
        .run("tcp", "10.77.0.2:0");
    assert_eq!(r.result, "EPERM");
    let f = w.flow_of(r.pid);
    assert_eq!(f["domains"], "banned.test");
    assert!(
        f["rule"].as_str().unwrap().contains("deny banned.test"),
        "{f}"
    );
    assert_eq!(w.flows(&["--domain", "banned.test"]).len(), 1);
    assert!(w.flows(&["--domain", "other.test"]).is_empty());
    daemon.stop();
}

#[test]
fn the_policy_nat64_prefix_reaches_the_kernel_and_flows_say_via_which_form() {
    // 10.77.0.2 under the policy's NAT64 prefix, and in 6to4 form.
    let (operator, sixto4) = ("2001:db8:64::a4d:2", "2002:a4d:2::");
    let w = World::new(
        "nv",
        &[
            "10.77.0.2/32",
            &format!("{operator}/128"),
            &format!("{sixto4}/128"),
        ],
    );
    let w = Attribution(w);
    let policy = r#"{"version":1,"deny":{"cidrs":["10.77.0.2"]},
                     "nat64_prefixes":["2001:db8:64::/96"]}"#;
    let daemon = Daemon::start(&w.args(policy));
    let probe = Probe::new().cgroup(w.cg.path()).netns(w.ns.name());
    let nat64 = probe.run("tcp", &format!("[{operator}]:0"));
    assert_eq!(
        nat64.result, "EPERM",
        "the daemon wrote the policy's prefix"
    );
    let f = w.flow_of(nat64.pid);
    assert_eq!(
        (&f["dst"], &f["via"], &f["hooks"]),
        (
            &Value::from("10.77.0.2"),
            &Value::from("nat64"),
            &Value::from("connect6")
        ),
        "{f}"
    );
    let relayed = probe.run("udp-sendto", &format!("[{sixto4}]:0"));
    assert_eq!(relayed.result, "EPERM");
    assert_eq!(w.flow_of(relayed.pid)["via"], "6to4");
    let direct = probe.run("tcp", "10.77.0.2:0");
    assert_eq!(direct.result, "EPERM");
    assert_eq!(w.flow_of(direct.pid)["via"], "", "reached directly");
    // The table and the log say it too.
    let state = w.tmp.path().to_str().unwrap();
    let (code, table, err) = enforcer(&["flows", "--state-dir", state]);
    assert_eq!(code, 0, "{err}");
    let line = table
        .lines()
        .find(|l| l.contains(&format!(" {} ", nat64.pid)))
        .unwrap_or_else(|| panic!("no row for {}: {table}", nat64.pid));
    assert!(line.ends_with("[connect6] via: nat64"), "{line}");
    assert!(
        daemon
            .log_text()
            .contains(r#""dst":"10.77.0.2","via":"nat64""#),
        "{}",
        daemon.log_text()
    );
    daemon.stop();
}

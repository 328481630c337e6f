//! The control socket and the CLI commands that use it.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    process::Command,
    time::{Duration, Instant},
};

use enforcer_tests::{
    Probe, World,
    daemon::{Daemon, DaemonArgs, enforcer, enforcer_bin},
    users::{NOBODY, gid_of, run_as},
};
use serde_json::Value;

/// The shared world, with what these tests ask of it.
struct Control(World);

impl std::ops::Deref for Control {
    type Target = World;
    fn deref(&self) -> &World {
        &self.0
    }
}

fn world(tag: &str) -> Control {
    Control(World::new(tag, &["10.77.0.1/32", "10.77.0.2/32"]))
}

const BAN: &str = r#"{"version":1,"deny":{"cidrs":["10.77.0.2"]}}"#;

impl Control {
    fn args(&self) -> DaemonArgs {
        self.0.args(&self.tmp.write("policy.json", BAN))
    }

    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let socket = self.socket();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--socket", socket.to_str().unwrap()]);
        enforcer(&all)
    }
}

/// The CLI run as `nobody` with primary group `gid`.
fn as_nobody(gid: u32, args: &[&str]) -> (i32, String, String) {
    run_as(enforcer_bin().to_str().unwrap(), args, NOBODY, gid, &[])
}

#[test]
fn status_reports_the_instance_and_check_answers_live() {
    let w = world("cs");
    let daemon = Daemon::start(&w.args());
    let (code, out, err) = w.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["mode"], "enforce");
    assert_eq!(s["cgroup"], w.cg.path().display().to_string());
    assert_eq!(s["maps"]["deny_v4"], 1);
    assert_eq!(s["pins"], w.bpffs.pins_dir().display().to_string());
    assert!(
        s["policy"]["sources"][0]
            .as_str()
            .unwrap()
            .ends_with("policy.json")
    );
    assert_eq!(
        Probe::new()
            .cgroup(w.cg.path())
            .netns(w.ns.name())
            .run("tcp", "10.77.0.2:0")
            .result,
        "EPERM"
    );
    let (_, out, _) = w.cli(&["status", "--json"]);
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["events"]["per_hook"]["connect4"]["denied"], 1);
    let (code, text, _) = w.cli(&["status"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("enforce mode") && text.contains("connect4"),
        "{text}"
    );
    let (code, out, _) = w.cli(&["check", "10.77.0.2"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("blocked: the kernel denies every address of 10.77.0.2")
            && out.contains(&format!(
                "10.77.0.2: denied (by #{} deny 10.77.0.2/32",
                enforcer_tests::harness::rule_id(BAN, "10.77.0.2/32")
            )),
        "{out}"
    );
    daemon.stop();
    // No daemon: a clear message and its own exit code.
    let (code, _, err) = w.cli(&["status"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("the daemon is not running"), "{err}");
}

#[test]
fn the_enforcer_group_reads_but_cannot_change_and_others_cannot_read() {
    let w = world("cp");
    let daemon = Daemon::start(&w.args());
    let socket = w.socket();
    let socket = socket.to_str().unwrap();
    let (code, out, err) = as_nobody(
        gid_of("enforcer"),
        &["status", "--json", "--socket", socket],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"mode\""));
    let (code, _, err) = as_nobody(gid_of("enforcer"), &["flows", "--json", "--socket", socket]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = as_nobody(gid_of("enforcer"), &["reload", "--socket", socket]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("need root"), "{err}");
    let (code, _, err) = as_nobody(gid_of("nogroup"), &["status", "--socket", socket]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("permission denied"), "{err}");
    // With --json the refusal is JSON too, with the same exit code.
    let (code, out, err) = as_nobody(gid_of("nogroup"), &["status", "--json", "--socket", socket]);
    assert_eq!(code, 4, "{err}");
    assert_eq!(json_error(&out)["code"], "denied", "{out}");
    let (code, out, err) = as_nobody(
        gid_of("enforcer"),
        &["reload", "--json", "--socket", socket],
    );
    assert_eq!(code, 4, "{err}");
    assert_eq!(json_error(&out)["code"], "forbidden", "{out}");
    // Root may reload (the files did not change: nothing is rewritten,
    // every name is asked again).
    let (code, out, err) = w.cli(&["reload"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("policy unchanged"), "{out}");
    daemon.stop();
}

fn exchange(stream: &mut UnixStream, reader: &mut BufReader<UnixStream>, line: &[u8]) -> Value {
    stream.write_all(line).unwrap();
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{reply:?}: {e}"))
}

#[test]
fn malformed_requests_get_errors_and_the_connection_keeps_serving() {
    let w = world("cm");
    let daemon = Daemon::start(&w.args());
    let mut stream = UnixStream::connect(w.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let r = exchange(&mut stream, &mut reader, b"this is not json\n");
    assert_eq!(
        (r["ok"].clone(), r["error"]["code"].clone()),
        (false.into(), "bad_request".into())
    );
    let r = exchange(&mut stream, &mut reader, b"{\"v\":9,\"cmd\":\"status\"}\n");
    assert_eq!(r["error"]["code"], "unsupported_version");
    let r = exchange(&mut stream, &mut reader, b"{\"v\":1,\"cmd\":\"launch\"}\n");
    assert_eq!(r["error"]["code"], "bad_request");
    // A field status does not take is refused, not ignored.
    let r = exchange(
        &mut stream,
        &mut reader,
        b"{\"v\":1,\"cmd\":\"status\",\"verbose\":true}\n",
    );
    assert_eq!(r["error"]["code"], "bad_request", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `verbose`"),
        "{r}"
    );
    let mut huge = vec![b'x'; 200 * 1024];
    huge.push(b'\n');
    let r = exchange(&mut stream, &mut reader, &huge);
    assert_eq!(r["error"]["code"], "too_large");
    let r = exchange(&mut stream, &mut reader, b"{\"v\":1,\"cmd\":\"status\"}\n");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["mode"], "enforce");
    // A client that connects and says nothing does not hold up others.
    let _silent = UnixStream::connect(w.socket()).unwrap();
    let (code, _, err) = w.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    daemon.stop();
}

#[test]
fn detach_through_the_daemon_stops_it_and_removes_the_enforcement() {
    let w = world("cd");
    let daemon = Daemon::start(&w.args());
    let probe = Probe::new().cgroup(w.cg.path()).netns(w.ns.name());
    assert_eq!(probe.run("tcp", "10.77.0.2:0").result, "EPERM");
    let (code, out, err) = w.cli(&["detach"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("detaching"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.bpffs.pins_dir().exists() {
        assert!(
            Instant::now() < deadline,
            "pins still there: {}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(probe.run("tcp", "10.77.0.2:0").result, "ok");
    daemon.stop();
}

fn rss_kib(pid: u32) -> u64 {
    enforcer_tests::daemon::status_kib(pid, "VmRSS")
}

#[test]
fn a_flood_of_100k_attempts_is_counted_exactly_with_bounded_memory() {
    const N: u64 = 100_000;
    let w = world("cf");
    let daemon = Daemon::start(&w.args());
    let before = rss_kib(daemon.pid());
    let r = Probe::new()
        .cgroup(w.cg.path())
        .netns(w.ns.name())
        .run(&format!("tcp-flood:{N}"), "10.77.0.2:9");
    assert_eq!(r.result, format!("EPERM={N}"));
    // Every attempt is either in the flow's count or counted as lost.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (count, lost) = loop {
        let (code, out, err) = w.cli(&["flows", "--json", "--pid", &r.pid.to_string()]);
        assert_eq!(code, 0, "{err}");
        let count: u64 = out
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["count"]
                    .as_u64()
                    .unwrap()
            })
            .sum();
        let (_, status, _) = w.cli(&["status", "--json"]);
        let status: Value = serde_json::from_str(&status).unwrap();
        let lost = status["events"]["lost_ringbuf_full"].as_u64().unwrap();
        if count + lost >= N || Instant::now() > deadline {
            break (count, lost);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(count + lost, N, "count {count} + lost {lost}");
    let after = rss_kib(daemon.pid());
    eprintln!("daemon RSS {before} KiB before, {after} KiB after {N} events; {lost} lost");
    assert!(after < 100 * 1024, "daemon RSS {after} KiB after the flood");
    daemon.stop();
}

/// `enforcer flows --follow --json ARGS` on the world's daemon, and its
/// stdout's lines as they come (its stderr piped, for the caller).
fn follower(
    w: &Control,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::process::Stdio;
    let socket = w.socket();
    let mut child = Command::new(enforcer_bin())
        .args([
            "flows",
            "--follow",
            "--json",
            "--socket",
            socket.to_str().unwrap(),
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

#[test]
fn flows_follow_streams_new_flows_as_they_happen() {
    let w = world("cw");
    let daemon = Daemon::start(&w.args());
    let (mut child, rx) = follower(&w, &[]);
    // The follower subscribes asynchronously: attempt until one shows up.
    let probe = Probe::new().cgroup(w.cg.path()).netns(w.ns.name());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pids = Vec::new();
    let line = loop {
        pids.push(u64::from(probe.run("tcp", "10.77.0.2:0").pid));
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            break line;
        }
        assert!(Instant::now() < deadline, "no flow followed");
    };
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["dst"], "10.77.0.2");
    assert!(
        pids.contains(&v["pid"].as_u64().unwrap()),
        "{v} not from {pids:?}"
    );
    // Only our own child, by its handle.
    child.kill().unwrap();
    child.wait().unwrap();
    daemon.stop();
}

/// The daemon with a policy that bans `cidrs` (JSON strings, comma
/// separated) and serves metrics on a free loopback port; and that port.
fn start_serving_metrics(w: &Control, cidrs: &str) -> (Daemon, u16) {
    // Bound, then released for the daemon to take.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = w.args();
    args.policy = w.tmp.write(
        "policy.json",
        &format!(
            r#"{{"version":1,"deny":{{"cidrs":[{cidrs}]}},"report":{{"metrics_listen":"127.0.0.1:{port}"}}}}"#
        ),
    );
    (Daemon::start(&args), port)
}

#[test]
fn metrics_are_served_on_loopback_when_asked_for() {
    let w = world("cx");
    let (daemon, port) = start_serving_metrics(&w, r#""10.77.0.2""#);
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    let body = scrape_until(
        port,
        "enforcer_verdicts_total{hook=\"connect4\",verdict=\"denied\"} 1",
    );
    assert!(
        body.contains("enforcer_map_entries{map=\"deny_v4\"} 1"),
        "{body}"
    );
    let id = enforcer_tests::harness::rule_id(BAN, "10.77.0.2/32");
    assert!(
        body.contains(&format!(
            "enforcer_rule_blocks_total{{rule=\"{id}\",target=\"10.77.0.2/32\"}} 1"
        )),
        "{body}"
    );
    daemon.stop();
}

/// The id `policy show --json` gives the rule `target` of the policy at
/// `policy` (with its drop-ins).
fn shown_id(policy: &std::path::Path, target: &str) -> u64 {
    let (code, out, err) = enforcer(&[
        "policy",
        "show",
        "--json",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    let rules = shown["rules"].as_array().unwrap();
    let rule = rules
        .iter()
        .find(|r| r["target"] == target)
        .unwrap_or_else(|| panic!("no rule {target}: {out}"));
    rule["id"].as_u64().unwrap()
}

/// The flows to `dst` once there are `n` of them (bounded wait).
fn flows_to(w: &Control, dst: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, out, err) = w.cli(&["flows", "--json"]);
        assert_eq!(code, 0, "{err}");
        let flows: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|f| f["dst"] == dst)
            .collect();
        if flows.len() >= n {
            return flows;
        }
        assert!(
            Instant::now() < deadline,
            "{n} flows to {dst} never came: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue 9: adding a drop-in renumbered every rule after its entries,
/// split a rule's flows and moved its metric to another label. An id now
/// follows the rule's content.
#[test]
fn a_rule_keeps_its_id_when_a_drop_in_adds_rules_before_it() {
    let w = world("id");
    std::fs::create_dir(w.tmp.path().join("policy.d")).unwrap();
    let (daemon, port) = start_serving_metrics(&w, r#""10.77.0.1""#);
    // The ban under test comes from a drop-in; the main file bans another
    // address (one the test never connects to).
    let main = w.tmp.path().join("policy.json");
    w.tmp.write(
        "policy.d/50-ban.json",
        r#"{"version":1,"deny":{"cidrs":["10.77.0.2"]}}"#,
    );
    let (code, _, err) = w.cli(&["reload"]);
    assert_eq!(code, 0, "{err}");
    let id = shown_id(&main, "10.77.0.2/32");
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    let first = flows_to(&w, "10.77.0.2", 1);
    assert_eq!(first[0]["rule_id"], id, "{first:?}");
    scrape_until(
        port,
        &format!("enforcer_rule_blocks_total{{rule=\"{id}\",target=\"10.77.0.2/32\"}} 1"),
    );

    // A drop-in merged before it: its bans come first in the policy's
    // order (no names: the test asks no DNS server).
    w.tmp.write(
        "policy.d/10-first.json",
        r#"{"version":1,"deny":{"cidrs":["192.0.2.0/24","198.51.100.7","2001:db8::/32"]}}"#,
    );
    let (code, out, err) = w.cli(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(shown_id(&main, "10.77.0.2/32"), id, "policy show");
    let (_, status, _) = w.cli(&["status", "--json"]);
    let s: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(s["maps"]["deny_v4"], 3, "the new drop-in is in force: {s}");
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    let flows = flows_to(&w, "10.77.0.2", 2);
    for f in &flows {
        assert_eq!(f["rule_id"], id, "every flow on the same rule: {flows:?}");
    }
    // One label, counting both attempts.
    let body = scrape_until(
        port,
        &format!("enforcer_rule_blocks_total{{rule=\"{id}\",target=\"10.77.0.2/32\"}} 2"),
    );
    assert_eq!(body.matches("target=\"10.77.0.2/32\"").count(), 1, "{body}");
    daemon.stop();
}

/// The body of GET /metrics on 127.0.0.1:`port`.
fn scrape(port: u16) -> String {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{reply}");
    body.to_owned()
}

/// The metrics once they contain `want` (scraped for up to 15 s).
fn scrape_until(port: u16, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = scrape(port);
        if body.contains(want) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics never showed {want}: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// promtool from Debian's prometheus package, unpacked by `cargo xtask
/// setup` (xtask/src/setup.rs, PROMTOOL).
fn promtool() -> std::path::PathBuf {
    let path = std::env::var_os("ENFORCER_PROMTOOL").map_or_else(
        || std::path::PathBuf::from("/opt/enforcer-ci/bin/promtool"),
        std::path::PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} missing: run `cargo xtask setup`",
        path.display()
    );
    path
}

#[test]
fn metrics_pass_promtool_check_metrics() {
    use std::process::Stdio;
    let w = world("cm");
    // Two rules, so that label values with quotes and slashes are served.
    let (daemon, port) = start_serving_metrics(&w, r#""10.77.0.2","10.78.0.0/16""#);
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    // Every family has samples once the denial is counted.
    let body = scrape_until(port, "enforcer_rule_blocks_total{");
    let mut lint = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    lint.stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "promtool check metrics ({}):\n{complaints}\n--- the metrics:\n{body}",
        out.status
    );
    daemon.stop();
}

/// The `error` object a failing command printed with `--json`.
fn json_error(out: &str) -> Value {
    let v: Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"));
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v["error"].clone()
}

#[test]
fn json_errors_carry_a_code_and_keep_the_exit_code() {
    let w = world("cj");
    let socket = w.socket();
    let socket = socket.to_str().unwrap();
    let (code, out, err) = enforcer(&["status", "--json", "--socket", socket]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(json_error(&out)["code"], "not_running", "{out}");
    assert!(err.contains("the daemon is not running"), "{err}");
    let broken = w.tmp.write(
        "broken.json",
        r#"{"version":1,"deny":{"cidrs":["10.77.0.300"]}}"#,
    );
    let (code, out, err) = enforcer(&[
        "policy",
        "show",
        "--json",
        "--policy",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    let e = json_error(&out);
    assert_eq!(e["code"], "invalid_policy", "{out}");
    assert!(
        e["message"].as_str().unwrap().contains("broken.json"),
        "{out}"
    );
}

#[test]
fn a_rejected_reload_is_shown_by_status_until_a_fixed_policy_applies() {
    let w = world("cr");
    let daemon = Daemon::start(&w.args());
    w.tmp.write(
        "policy.json",
        r#"{"version":1,"deny":{"cidrs":["10.77.0.300"]}}"#,
    );
    let (code, _, err) = w.cli(&["reload"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("reload rejected") && err.contains("10.77.0.300"),
        "{err}"
    );
    let (code, out, _) = w.cli(&["reload", "--json"]);
    assert_eq!(code, 1);
    assert_eq!(json_error(&out)["code"], "failed", "{out}");
    let (code, out, err) = w.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    let last = &s["reload"]["last"];
    assert_eq!(last["outcome"], "rejected", "{s}");
    assert!(
        last["message"].as_str().unwrap().contains("10.77.0.300"),
        "{s}"
    );
    // The two asked for (the file watch may have tried once more).
    assert!(s["reload"]["rejected"].as_u64().unwrap() >= 2, "{s}");
    let (_, text, _) = w.cli(&["status"]);
    assert!(
        text.contains("reload:    rejected") && text.contains("; the policy in force stays"),
        "{text}"
    );
    // It does: the ban holds.
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM");
    w.tmp.write(
        "policy.json",
        r#"{"version":1,"deny":{"cidrs":["10.77.0.2","10.77.0.1"]}}"#,
    );
    let (code, _, err) = w.cli(&["reload"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = w.cli(&["status", "--json"]);
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_ne!(s["reload"]["last"]["outcome"], "rejected", "{s}");
    assert_eq!(s["maps"]["deny_v4"], 2, "{s}");
    let (_, text, _) = w.cli(&["status"]);
    assert!(!text.contains("reload:    rejected"), "{text}");
    assert!(text.contains("rejected since start"), "{text}");
    daemon.stop();
}

#[test]
fn flows_follow_honours_the_filters_and_says_when_the_daemon_stops() {
    let w = world("cf");
    let daemon = Daemon::start(&w.args());
    let nobody = NOBODY.to_string();
    let (mut child, rx) = follower(&w, &["--user", &nobody]);
    let root = Probe::new().cgroup(w.cg.path()).netns(w.ns.name());
    let other = root.clone().uid(NOBODY);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    // The follower subscribes asynchronously: attempt until one shows up,
    // from both users each time.
    while lines.is_empty() {
        assert_eq!(root.run("tcp", "10.77.0.2:0").result, "EPERM");
        assert_eq!(other.run("tcp", "10.77.0.2:0").result, "EPERM");
        lines.extend(rx.recv_timeout(Duration::from_millis(500)));
        assert!(Instant::now() < deadline, "no flow followed");
    }
    // Once more each, and what the next writes bring.
    root.run("tcp", "10.77.0.2:0");
    other.run("tcp", "10.77.0.2:0");
    let until = Instant::now() + Duration::from_secs(3);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        lines.extend(rx.recv_timeout(left));
    }
    let followed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(followed.len() >= 2, "{lines:?}");
    for f in &followed {
        assert_eq!(f["uid"], NOBODY, "the filter let {f} through");
        assert_eq!(f["dst"], "10.77.0.2");
    }
    // Each row's count is what `flows` says of that flow.
    let (code, out, err) = w.cli(&["flows", "--json", "--user", &nobody]);
    assert_eq!(code, 0, "{err}");
    let stored: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for f in &followed {
        let same = stored
            .iter()
            .find(|s| s["pid"] == f["pid"] && s["port"] == f["port"])
            .unwrap_or_else(|| panic!("{f} followed but not stored: {stored:?}"));
        assert_eq!(same["count"], f["count"], "{f} vs {same}");
        assert_eq!(same["first_seen_ms"], f["first_seen_ms"]);
    }
    daemon.stop();
    // The follower says so, and exits 3 (not running).
    let status = enforcer_tests::daemon::exit_within(&mut child, 10);
    let Some(status) = status else {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("the follower did not notice the daemon stop");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(err.contains("the daemon stopped"), "{err}");
}

#[test]
fn flow_times_are_the_kernel_events_not_when_the_daemon_read_them() {
    let w = world("ct");
    let daemon = Daemon::start(&w.args());
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    // The daemon frozen: the kernel refuses, the event waits in the ring.
    daemon.signal(libc::SIGSTOP);
    let refused_ms = now_ms();
    let probe = Probe::new().cgroup(w.cg.path()).netns(w.ns.name());
    let attempt = probe.run("tcp", "10.77.0.2:0");
    std::thread::sleep(Duration::from_secs(3));
    // (A failed assertion must not leave it stopped; the guard's SIGKILL
    // would end it anyway.)
    daemon.signal(libc::SIGCONT);
    assert_eq!(attempt.result, "EPERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let flow = loop {
        let (code, out, err) = w.cli(&["flows", "--json", "--pid", &attempt.pid.to_string()]);
        assert_eq!(code, 0, "{err}");
        if let Some(line) = out.lines().next() {
            break serde_json::from_str::<Value>(line).unwrap();
        }
        assert!(Instant::now() < deadline, "the refusal never became a flow");
        std::thread::sleep(Duration::from_millis(200));
    };
    let first = flow["first_seen_ms"].as_u64().unwrap();
    assert!(
        first.abs_diff(refused_ms) <= 1000,
        "first_seen_ms {first}, refused at {refused_ms} ({} ms apart)",
        first.abs_diff(refused_ms)
    );
    assert_eq!(flow["last_seen_ms"].as_u64().unwrap(), first);
    assert!(!flow["host"].as_str().unwrap().is_empty(), "{flow}");
    daemon.stop();
}

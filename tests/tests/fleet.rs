//! The fleet configurations of deploy/ (docs/FLEET.md), checked with the
//! tools that run them: rsyslog validates and runs its drop-in, promtool
//! checks the alerting rules, and the Vector file (Vector is not packaged
//! where this runs) is parsed as TOML and wired to the daemon's fields.
//! Everything stays on loopback.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use enforcer_tests::TempDir;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The journal fields of a blocked flow: the field names of the daemon's
/// `log_new` (enforcer/src/daemon/record.rs), uppercased with the `F_`
/// prefix tracing-journald gives them.
fn flow_fields() -> Vec<String> {
    let source = std::fs::read_to_string(repo().join("enforcer/src/daemon/record.rs")).unwrap();
    let body = source
        .split("fn log_new(")
        .nth(1)
        .and_then(|s| s.split("\"new blocked flow\"").next())
        .expect("log_new logs \"new blocked flow\"");
    let fields: Vec<String> = body
        .lines()
        .filter_map(|l| {
            let (name, _) = l.trim().split_once(" = ")?;
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
                .then(|| format!("F_{}", name.to_ascii_uppercase()))
        })
        .collect();
    assert!(fields.len() >= 10, "{fields:?}");
    fields
}

/// rsyslog unpacked by `cargo xtask setup` (xtask/src/tools.rs).
struct Rsyslog {
    root: PathBuf,
}

impl Rsyslog {
    fn new() -> Rsyslog {
        let root = std::env::var_os("ENFORCER_RSYSLOG_ROOT")
            .map_or_else(|| PathBuf::from("/opt/enforcer-ci/rsyslog"), PathBuf::from);
        assert!(
            root.join("usr/sbin/rsyslogd").exists(),
            "{} has no rsyslogd: run `cargo xtask setup`",
            root.display()
        );
        Rsyslog { root }
    }

    fn command(&self, config: &Path) -> Command {
        let lib = self.root.join("usr/lib/x86_64-linux-gnu");
        let mut cmd = Command::new(self.root.join("usr/sbin/rsyslogd"));
        cmd.env("LD_LIBRARY_PATH", &lib)
            .arg("-f")
            .arg(config)
            .arg("-M")
            .arg(lib.join("rsyslog"));
        cmd
    }

    /// `rsyslogd -N1`: (success, what it said beyond its banner).
    fn validate(&self, config: &Path) -> (bool, String) {
        let out = self.command(config).arg("-N1").output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr)
            .lines()
            .chain(String::from_utf8_lossy(&out.stdout).lines())
            .filter(|l| {
                !l.contains("config validation run") && !l.contains("End of config validation run")
            })
            .collect::<Vec<_>>()
            .join("\n");
        (out.status.success(), said)
    }
}

const RSYSLOG_CONF: &str = "deploy/rsyslog/60-enforcer.conf";

#[test]
fn the_rsyslog_drop_in_passes_rsyslogd_validation_and_names_every_flow_field() {
    let rsyslog = Rsyslog::new();
    let path = repo().join(RSYSLOG_CONF);
    let (ok, said) = rsyslog.validate(&path);
    assert!(
        ok && said.is_empty(),
        "rsyslogd -N1 {}: {said}",
        path.display()
    );
    let text = std::fs::read_to_string(&path).unwrap();
    for field in flow_fields() {
        assert!(
            text.contains(&format!("$!{field}\"")),
            "{RSYSLOG_CONF} misses {field}"
        );
    }
    // The validation is real: a misspelt parameter is refused.
    let tmp = TempDir::new("fr");
    let bad = tmp.write(
        "bad.conf",
        &text.replace("queue.saveOnShutdown", "queue.saveOnShutdwn"),
    );
    let (ok, said) = rsyslog.validate(&bad);
    assert!(!ok && said.contains("queue.saveOnShutdwn"), "{said}");
}

/// Kills the rsyslogd we started (by its handle) however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A journal entry as imjournal hands it to rsyslog (every field in `$!`),
/// sent as CEE JSON that mmjsonparse turns into the same `$!` tree.
fn entry(fields: &[(&str, &str)]) -> String {
    let map: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    format!(
        "<132>Nov 25 03:00:00 ws-042 enforcer: @cee:{}\n",
        Value::Object(map)
    )
}

#[test]
fn rsyslog_forwards_exactly_the_blocked_flows_as_json() {
    let rsyslog = Rsyslog::new();
    let tmp = TempDir::new("ff");
    let siem = TcpListener::bind("127.0.0.1:0").unwrap();
    let siem_port = siem.local_addr().unwrap().port();
    let input_port = free_port();
    // The shipped drop-in with the journal input swapped for a loopback
    // one, and the SIEM moved to our listener; each swap must apply.
    let shipped = std::fs::read_to_string(repo().join(RSYSLOG_CONF)).unwrap();
    let mut conf = String::new();
    let mut swaps = 0;
    for line in shipped.lines() {
        let line = if line.starts_with("module(load=\"imjournal\"") {
            swaps += 1;
            String::new()
        } else if line.contains("target=\"siem.example.com\"") {
            swaps += 1;
            line.replace("siem.example.com", "127.0.0.1")
        } else if line.contains("port=\"6514\"") {
            swaps += 1;
            line.replace("6514", &siem_port.to_string())
        } else {
            line.to_owned()
        };
        conf.push_str(&line);
        conf.push('\n');
    }
    assert_eq!(swaps, 3, "{RSYSLOG_CONF} changed shape: update this test");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let drop_in = tmp.write("60-enforcer.conf", &conf);
    let main = tmp.write(
        "rsyslog.conf",
        &format!(
            "global(workDirectory=\"{}\")\n\
             module(load=\"imptcp\")\nmodule(load=\"mmjsonparse\")\n\
             input(type=\"imptcp\" address=\"127.0.0.1\" port=\"{input_port}\")\n\
             action(type=\"mmjsonparse\")\n\
             include(file=\"{}\")\n",
            work.display(),
            drop_in.display()
        ),
    );
    let _rsyslogd = Running(
        rsyslog
            .command(&main)
            .arg("-n")
            .arg("-i")
            .arg(work.join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut input = loop {
        match TcpStream::connect(("127.0.0.1", input_port)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "rsyslogd never listened: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let flow = [
        ("SYSLOG_IDENTIFIER", "enforcer"),
        ("MESSAGE", "new blocked flow"),
        ("F_VERDICT", "denied"),
        ("F_HOOK", "connect4"),
        ("F_PID", "4242"),
        ("F_EXE", "/usr/bin/curl"),
        ("F_CMDLINE", "curl https://api.example.com/v1"),
        ("F_UID", "1000"),
        ("F_USER", "dev"),
        ("F_DST", "192.0.2.7"),
        ("F_PORT", "443"),
        ("F_PROTOCOL", "6"),
        ("F_DOMAINS", "api.example.com"),
        ("F_RULE", "api.example.com"),
        ("F_HOST", "ws-042.example"),
    ];
    let mut second = flow;
    second[8] = ("F_USER", "ops");
    input.write_all(entry(&flow).as_bytes()).unwrap();
    // The daemon's other lines, and other programs' flows, stay home.
    input
        .write_all(
            entry(&[
                ("SYSLOG_IDENTIFIER", "enforcer"),
                ("MESSAGE", "policy loaded"),
            ])
            .as_bytes(),
        )
        .unwrap();
    input
        .write_all(
            entry(&[
                ("SYSLOG_IDENTIFIER", "other"),
                ("MESSAGE", "new blocked flow"),
            ])
            .as_bytes(),
        )
        .unwrap();
    input.write_all(entry(&second).as_bytes()).unwrap();
    drop(input);

    siem.set_nonblocking(true).unwrap();
    let conn = loop {
        match siem.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "rsyslogd never forwarded");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => lines.push(line),
            // Quiet for 1.5 s after the last line: nothing more comes.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => panic!("read: {e}"),
        }
        assert!(lines.len() <= 4, "{lines:?}");
    }
    assert_eq!(lines.len(), 2, "exactly the two flows: {lines:?}");
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["event"], "enforcer.blocked_flow");
    // The daemon's name for its host, not the syslog header's.
    assert_eq!(first["host"], "ws-042.example");
    assert_eq!(first["verdict"], "denied");
    assert_eq!(first["exe"], "/usr/bin/curl");
    assert_eq!(first["dst"], "192.0.2.7");
    assert_eq!(first["pid"], 4242);
    assert_eq!(first["port"], 443);
    assert_eq!(first["domains"], "api.example.com");
    assert_eq!(first["user"], "dev");
    // Fields the flow did not have are left out, not sent empty.
    assert!(
        first.get("via").is_none() && first.get("ppid").is_none(),
        "{first}"
    );
    let second: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["user"], "ops");
}

#[test]
fn the_vector_config_is_toml_wired_from_the_journal_to_its_sinks() {
    let path = repo().join("deploy/vector/enforcer.toml");
    // Python's tomllib (3.11+): Vector itself is not packaged here.
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} is not TOML: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&String> = ["sources", "transforms", "sinks"]
        .iter()
        .filter_map(|k| v[k].as_object())
        .flat_map(|m| m.keys())
        .collect();
    for kind in ["transforms", "sinks"] {
        for (name, component) in v[kind].as_object().unwrap() {
            let inputs = component["inputs"].as_array().unwrap();
            assert!(!inputs.is_empty(), "{name} has no inputs");
            for i in inputs {
                assert!(
                    names.iter().any(|n| Some(n.as_str()) == i.as_str()),
                    "{name} reads {i}, which is not defined"
                );
            }
        }
    }
    assert_eq!(v["sources"]["enforcer_journal"]["type"], "journald");
    assert_eq!(
        v["sources"]["enforcer_journal"]["include_units"][0],
        "enforcer.service"
    );
    assert!(
        v["transforms"]["enforcer_flows"]["condition"]
            .as_str()
            .unwrap()
            .contains("\"new blocked flow\"")
    );
    let remap = v["transforms"]["enforcer_flow_fields"]["source"]
        .as_str()
        .unwrap();
    for field in flow_fields() {
        assert!(
            remap.contains(&format!(".{field}")),
            "the remap misses {field}"
        );
    }
    assert!(
        v["sources"]["enforcer_metrics"]["endpoints"][0]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
}

#[test]
fn the_alerting_rules_pass_promtool_check_rules() {
    let promtool = std::env::var_os("ENFORCER_PROMTOOL").map_or_else(
        || PathBuf::from("/opt/enforcer-ci/bin/promtool"),
        PathBuf::from,
    );
    assert!(
        promtool.exists(),
        "{} missing: run `cargo xtask setup`",
        promtool.display()
    );
    let path = repo().join("deploy/prometheus/enforcer-rules.yml");
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("SUCCESS: 6 rules found"), "{said}");
}

//! Runs the `probe` binary inside a test's cgroup and namespace.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// What one probe run reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub pid: u32,
    /// The destination port used (chosen by the probe's listener for port 0).
    pub port: u16,
    /// "ok", "EPERM", "ECONNREFUSED", "sent-not-received", ...
    pub result: String,
}

#[derive(Debug, Clone, Default)]
pub struct Probe {
    cgroup: Option<PathBuf>,
    netns: Option<String>,
    unshare_net: bool,
    uid: Option<u32>,
}

/// The `probe` binary: cargo builds it beside the test executables
/// (`target/<profile>/probe`, tests in `target/<profile>/deps/`).
pub fn probe_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("probe");
    assert!(
        bin.exists(),
        "{} missing: run the tests through cargo",
        bin.display()
    );
    bin
}

impl Probe {
    pub fn new() -> Probe {
        Probe::default()
    }

    pub fn cgroup(mut self, path: &Path) -> Probe {
        self.cgroup = Some(path.to_owned());
        self
    }

    pub fn netns(mut self, name: &str) -> Probe {
        self.netns = Some(name.to_owned());
        self
    }

    pub fn unshare_net(mut self) -> Probe {
        self.unshare_net = true;
        self
    }

    pub fn uid(mut self, uid: u32) -> Probe {
        self.uid = Some(uid);
        self
    }

    fn command(&self, op: &str, addr: &str) -> Command {
        let mut cmd = Command::new(probe_bin());
        if let Some(c) = &self.cgroup {
            cmd.arg("--cgroup").arg(c);
        }
        if let Some(n) = &self.netns {
            cmd.args(["--netns", n]);
        }
        if self.unshare_net {
            cmd.arg("--unshare-net");
        }
        if let Some(u) = self.uid {
            cmd.args(["--uid", &u.to_string()]);
        }
        cmd.args([op, addr]);
        cmd
    }

    /// Runs one attempt to completion.
    pub fn run(&self, op: &str, addr: &str) -> ProbeResult {
        let out = self
            .command(op, addr)
            .output()
            .unwrap_or_else(|e| panic!("spawning probe: {e}"));
        assert!(
            out.status.success(),
            "probe {op} {addr} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or(""),
        )
    }

    /// Starts `udp-connect-wait-send`: returns once the socket is connected;
    /// `finish` sends and collects the result.
    pub fn start_connected_udp(&self, addr: &str) -> ConnectedProbe {
        let mut child = self
            .command("udp-connect-wait-send", addr)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn probe");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("probe output");
        assert_eq!(line.trim(), "connected", "probe did not connect: {line}");
        ConnectedProbe { child, out }
    }
}

pub struct ConnectedProbe {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl ConnectedProbe {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn finish(mut self) -> ProbeResult {
        writeln!(self.child.stdin.as_mut().unwrap()).unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).expect("probe result");
        assert!(self.child.wait().expect("wait probe").success());
        parse(&line)
    }
}

impl Drop for ConnectedProbe {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(line: &str) -> ProbeResult {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("probe said {line:?}: {e}"));
    ProbeResult {
        pid: v["pid"].as_u64().expect("pid") as u32,
        port: v["port"].as_u64().expect("port") as u16,
        result: v["result"].as_str().expect("result").to_owned(),
    }
}

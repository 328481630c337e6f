//! The real `enforcer` binary, run as a daemon against a test's cgroup,
//! private bpffs and state dir, with sd_notify readiness.

use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// The binary under test: `ENFORCER_BIN` (set by `cargo xtask test`), else
/// `target/debug/enforcer` beside the test executables.
pub fn enforcer_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENFORCER_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("enforcer");
    assert!(
        bin.exists(),
        "{} missing: build it first (cargo build -p enforcer) or run cargo xtask test",
        bin.display()
    );
    bin
}

pub struct Daemon {
    child: Child,
    log: PathBuf,
}

pub struct DaemonArgs {
    pub policy: PathBuf,
    pub cgroup: PathBuf,
    pub bpffs: PathBuf,
    pub state: PathBuf,
    /// Run the daemon inside this network namespace (by name).
    pub netns: Option<String>,
    pub xdp_ifaces: Vec<String>,
    /// More `enforcer daemon` arguments.
    pub extra: Vec<String>,
}

impl DaemonArgs {
    /// A daemon scoped to `cgroup` with its pins under `bpffs` and its
    /// state (and control socket) in `state`; no namespace, XDP or extras.
    pub fn scoped(policy: PathBuf, cgroup: &Path, bpffs: &Path, state: PathBuf) -> DaemonArgs {
        DaemonArgs {
            policy,
            cgroup: cgroup.to_owned(),
            bpffs: bpffs.to_owned(),
            state,
            netns: None,
            xdp_ifaces: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// `enforcer daemon` with these arguments, through `wrapper` (a command
    /// that execs the rest of its arguments, like `setpriv ...`; empty for
    /// none), stdout discarded. The caller sets stderr and spawns it.
    pub fn command(&self, wrapper: &[&str]) -> Command {
        self.command_of(&enforcer_bin(), wrapper)
    }

    /// `command` with another binary (the bench runs the release build).
    pub fn command_of(&self, bin: &Path, wrapper: &[&str]) -> Command {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        cmd.arg("daemon");
        for iface in &self.xdp_ifaces {
            cmd.args(["--xdp-iface", iface]);
        }
        cmd.arg("--policy")
            .arg(&self.policy)
            .arg("--cgroup")
            .arg(&self.cgroup)
            .arg("--bpffs")
            .arg(&self.bpffs)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--socket")
            .arg(self.state.join("control.sock"))
            .args(&self.extra)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null());
        cmd
    }
}

/// Waits up to `within` for READY=1 on `notify` (the daemon's
/// NOTIFY_SOCKET; its read timeout paces the loop). `Err` says why not:
/// the daemon exited first, or the time ran out.
pub fn wait_ready(
    notify: &UnixDatagram,
    child: &mut Child,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        if let Ok(n) = notify.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("daemon exited ({status}) before READY"));
        }
        if Instant::now() >= deadline {
            return Err(format!("daemon not READY within {} s", within.as_secs()));
        }
    }
}

/// Waits up to `secs` seconds for `child` to exit. One still running then
/// is killed (our own child, by its handle) and `None` returned.
pub fn exit_within(child: &mut Child, secs: u64) -> Option<ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Daemon {
    /// Starts the daemon and waits (bounded) for READY=1.
    pub fn start(args: &DaemonArgs) -> Daemon {
        Daemon::start_under(&[], args)
    }

    /// Starts the daemon through `wrapper` (a command that execs the rest
    /// of its arguments, like `setpriv ...`), then as `start`.
    pub fn start_under(wrapper: &[&str], args: &DaemonArgs) -> Daemon {
        let notify_path = args.state.join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        std::fs::create_dir_all(&args.state).unwrap();
        let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let log = unique_log(args.state.join("daemon.log"));
        let mut cmd = args.command(wrapper);
        let _netns = args
            .netns
            .as_deref()
            .map(|name| crate::guards::enter_netns_on_spawn(&mut cmd, name));
        let child = cmd
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn enforcer daemon");
        let mut daemon = Daemon { child, log };
        if let Err(why) = wait_ready(&notify, &mut daemon.child, Duration::from_secs(30)) {
            panic!("{why}: {}", daemon.log_text());
        }
        let _ = std::fs::remove_file(&notify_path);
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL our daemon");
        self.child.wait().unwrap();
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: our own child's pid, still unreaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// SIGTERM and wait for a clean exit (panics with the log otherwise).
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "daemon exited with {status}: {}",
                    self.log_text()
                );
                return;
            }
            assert!(Instant::now() < deadline, "daemon ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// daemon.log, daemon.1.log, ...: one per start, so a restart's log is its own.
fn unique_log(path: PathBuf) -> PathBuf {
    let mut p = path.clone();
    let mut n = 0;
    while p.exists() {
        n += 1;
        p = path.with_extension(format!("{n}.log"));
    }
    p
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with `args` to completion: (exit code, stdout, stderr).
pub fn enforcer(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(enforcer_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run enforcer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `enforcer flows --json` with `args` (where to read: `--socket` or
/// `--state-dir`, then filters): one JSON value a flow. Panics with stderr
/// unless it exits 0.
/// A `/proc/<pid>/status` figure in KiB: `VmRSS`, `RssAnon`, ...
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

pub fn flows_json(args: &[&str]) -> Vec<serde_json::Value> {
    let (code, out, err) = enforcer(&[&["flows", "--json"], args].concat());
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

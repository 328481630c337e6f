//! Guards that clean up on drop, also when the test panics.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use enforcer::sys::cgroup::cgroup2_mount;

use crate::unique;

/// Privileged tests need root; without it they fail loudly, never skip.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the integration tests load eBPF programs and create cgroups and namespaces: run them as root (cargo xtask test)"
    );
}

pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cgroup made for one test under the cgroup2 mount.
pub struct CgroupGuard {
    path: PathBuf,
    children: Vec<PathBuf>,
}

impl CgroupGuard {
    pub fn new(tag: &str) -> CgroupGuard {
        require_root();
        let mount = cgroup2_mount().expect("cgroup2 mount");
        let path = mount.join(format!("enforcer-test-{}", unique(tag)));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        CgroupGuard {
            path,
            children: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup v2 id the kernel reports (the directory's inode).
    pub fn id(&self) -> u64 {
        cgroup_id(&self.path)
    }

    /// A nested cgroup, removed with this guard.
    pub fn child(&mut self, name: &str) -> PathBuf {
        let child = self.path.join(name);
        std::fs::create_dir(&child).unwrap_or_else(|e| panic!("mkdir {}: {e}", child.display()));
        self.children.push(child.clone());
        child
    }
}

pub fn cgroup_id(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).expect("cgroup dir").ino()
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for dir in self
            .children
            .iter()
            .rev()
            .chain(std::iter::once(&self.path))
        {
            // Processes of the test may still be exiting, or linger (a
            // probe a failed test never waited for): a bounded retry, and
            // leftovers are moved to this test's own cgroup first, since a
            // cgroup with processes cannot be removed.
            let mut last = None;
            for _ in 0..50 {
                move_out(dir);
                match std::fs::remove_dir(dir) {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(e) = last {
                cleanup_failed(format!("rmdir {}: {e}", dir.display()));
            }
        }
    }
}

/// Moves every process of the cgroup `dir` to the cgroup of this process.
fn move_out(dir: &Path) {
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    if procs.trim().is_empty() {
        return;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("0::")
                    .map(|p| p.trim_start_matches('/').to_owned())
            })
        })
        .and_then(|rel| cgroup2_mount().ok().map(|m| m.join(rel)));
    let Some(own) = own else {
        return;
    };
    for pid in procs.lines() {
        if let Err(e) = std::fs::write(own.join("cgroup.procs"), pid) {
            // Gone meanwhile is fine; anything else is worth knowing.
            if e.raw_os_error() != Some(libc::ESRCH) {
                eprintln!("moving pid {pid} out of {}: {e}", dir.display());
            }
        }
    }
}

/// A cleanup that failed: a panic, so that the test fails and says what
/// it left behind, unless the test is already failing (a second panic
/// would abort and hide the first), then a loud line on stderr.
pub fn cleanup_failed(what: String) {
    if std::thread::panicking() {
        eprintln!("CLEANUP FAILED (after the test's own failure): {what}");
    } else {
        panic!("cleanup failed: {what}");
    }
}

/// A network namespace with loopback up.
pub struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    pub fn new(tag: &str) -> NetnsGuard {
        require_root();
        let name = format!("enft-{}", unique(tag));
        run(Command::new("ip").args(["netns", "add", &name]));
        let guard = NetnsGuard { name };
        guard.ip(&["link", "set", "lo", "up"]);
        guard
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args));
    }

    /// Adds an address to loopback, so probes can listen on and reach it.
    pub fn add_lo_addr(&self, cidr: &str) {
        let mut args = vec!["addr", "add", cidr, "dev", "lo"];
        if cidr.contains(':') {
            args.insert(0, "-6");
            args.push("nodad");
        }
        self.ip(&args);
    }

    /// Runs `f` on a thread that has entered this namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                use std::os::fd::AsRawFd as _;
                let ns = std::fs::File::open(&path).expect("netns file");
                // SAFETY: a valid netns fd; only this thread moves.
                assert_eq!(
                    unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                    0
                );
                f()
            })
            .join()
            .expect("thread in netns panicked")
        })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => cleanup_failed(format!(
                "ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => cleanup_failed(format!("ip netns del {}: {e}", self.name)),
        }
    }
}

/// Makes `cmd`'s child enter the network namespace `name`, with setns in
/// the child rather than `ip netns exec`, which would remount /sys and hide
/// the cgroup2 and bpffs mounts. Keep the returned file until the child is
/// spawned: the child enters through its descriptor.
pub fn enter_netns_on_spawn(cmd: &mut Command, name: &str) -> std::fs::File {
    use std::os::{fd::AsRawFd as _, unix::process::CommandExt as _};
    let ns = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    let fd = ns.as_raw_fd();
    // SAFETY: setns is async-signal-safe; the caller keeps the fd open
    // until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    ns
}

/// A private bpffs mount for one test's pins. Unmounting releases every
/// pinned map and link, so the test's programs detach whatever happened.
pub struct BpffsGuard {
    mount: PathBuf,
}

impl BpffsGuard {
    pub fn new(tag: &str) -> BpffsGuard {
        require_root();
        let mount = PathBuf::from("/run/enforcer-tests").join(unique(tag));
        std::fs::create_dir_all(&mount).expect("mkdir bpffs mount point");
        run(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&mount));
        BpffsGuard { mount }
    }

    /// The pin directory to hand to the daemon or the library.
    pub fn pins_dir(&self) -> PathBuf {
        self.mount.join("enforcer")
    }
}

impl Drop for BpffsGuard {
    fn drop(&mut self) {
        match Command::new("umount").arg(&self.mount).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => cleanup_failed(format!(
                "umount {}: {}",
                self.mount.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => cleanup_failed(format!("umount {}: {e}", self.mount.display())),
        }
        if let Err(e) = std::fs::remove_dir(&self.mount) {
            cleanup_failed(format!("rmdir {}: {e}", self.mount.display()));
        }
    }
}

/// A scratch directory, removed with everything in it.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("enforcer-test-{}", unique(tag)));
        std::fs::create_dir_all(&path).expect("mkdir temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `text` to `name` inside, returning its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => cleanup_failed(format!("rm -r {}: {e}", self.path.display())),
        }
    }
}

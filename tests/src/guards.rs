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
            // Processes of the test may still be exiting: a bounded retry.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
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
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
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
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_dir(&self.mount);
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
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

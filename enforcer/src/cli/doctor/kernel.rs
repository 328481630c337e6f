//! What the kernel offers before any program loads: its version, BTF, the
//! memlock limit, cgroup v2 and bpffs.

use std::path::Path;

use super::{Check, Status};
use crate::sys::{
    bpffs::{self, BpffsError},
    cgroup::{self, CGROUP2_FIX, CgroupError},
};

/// bpf_loop (5.17, the DNS answer parser), ring buffers (5.8) and cgroup
/// bpf links (5.7): the daemon needs all three.
const MIN_KERNEL: (u32, u32) = (5, 17);
/// From 5.11 BPF memory is charged to the memory cgroup, not RLIMIT_MEMLOCK.
const MEMCG_ACCOUNTING: (u32, u32) = (5, 11);
/// Before 5.15, a v1 net_cls/net_prio hierarchy in use made sockets fall
/// back to the cgroup v2 root, so programs on a child cgroup missed them
/// (fixed by "bpf, cgroups: Fix cgroup v2 fallback on v1/v2 mixed mode").
const MIXED_MODE_FIX: (u32, u32) = (5, 15);
/// Enough for the default maps where memlock still counts.
const MEMLOCK_NEEDED: u64 = 64 << 20;
pub const BTF: &str = "/sys/kernel/btf/vmlinux";

/// What was read from the host.
pub struct Kernel {
    pub release: String,
    pub btf: bool,
    pub mountinfo: Option<String>,
    /// `None`: unlimited.
    pub memlock: Option<u64>,
}

impl Kernel {
    pub fn read() -> Kernel {
        // SAFETY: uname writes into the zeroed struct we own.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        let release = if unsafe { libc::uname(&mut uts) } == 0 {
            // SAFETY: the kernel NUL-terminates the field.
            unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        } else {
            String::new()
        };
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        let memlock = if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0 {
            (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
        } else {
            Some(0)
        };
        Kernel {
            release,
            btf: Path::new(BTF).exists(),
            mountinfo: std::fs::read_to_string("/proc/self/mountinfo").ok(),
            memlock,
        }
    }
}

/// `6.1.0-18-amd64` → (6, 1).
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

pub fn version(release: &str) -> Check {
    match parse_release(release) {
        Some(v) if v >= MIN_KERNEL => Check::ok("kernel", format!("Linux {release}")),
        Some(_) => Check::new(
            "kernel",
            Status::Fail,
            format!(
                "Linux {release} is older than {}.{}: the daemon needs bpf_loop, BPF ring \
                 buffers and cgroup bpf links",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
        )
        .fix(format!(
            "upgrade to Linux {}.{} or later (a distribution's HWE or backports kernel)",
            MIN_KERNEL.0, MIN_KERNEL.1
        )),
        None => Check::new(
            "kernel",
            Status::Warn,
            format!("cannot read the kernel version from {release:?}"),
        ),
    }
}

pub fn btf(present: bool) -> Check {
    if present {
        Check::ok("btf", format!("{BTF} present"))
    } else {
        // The programs use no CO-RE relocation: they load without it.
        Check::new(
            "btf",
            Status::Warn,
            format!(
                "{BTF} is missing: enforcement works without it, but fentry and BPF LSM \
                 (future hardening) and bpftool's introspection need it"
            ),
        )
        .fix("use a kernel built with CONFIG_DEBUG_INFO_BTF=y (every major distribution's is)")
    }
}

/// The cgroup2 mount, and whether the daemon's default attach point (the
/// top of that mount) covers the whole host.
pub fn cgroup2(mountinfo: Option<&str>) -> Vec<Check> {
    let Some(text) = mountinfo else {
        return vec![Check::new(
            "cgroup2",
            Status::Fail,
            "cannot read /proc/self/mountinfo",
        )];
    };
    let Some((mount, root)) = cgroup::cgroup2_entry_in(text) else {
        return vec![
            Check::new("cgroup2", Status::Fail, CgroupError::NotMounted.to_string())
                .fix(CGROUP2_FIX),
        ];
    };
    let hybrid = text.lines().any(|l| {
        l.split_once(" - ")
            .is_some_and(|(_, r)| r.split_whitespace().next() == Some("cgroup"))
    });
    let mut checks = vec![Check::ok(
        "cgroup2",
        if hybrid {
            format!(
                "mounted at {} (hybrid layout: cgroup v1 controllers beside it)",
                mount.display()
            )
        } else {
            format!("mounted at {}", mount.display())
        },
    )];
    checks.push(if root == "/" {
        Check::ok(
            "cgroup2-root",
            format!(
                "without --cgroup the daemon attaches at {}, the root: every process on the \
                 host is enforced",
                mount.display()
            ),
        )
    } else {
        Check::new(
            "cgroup2-root",
            Status::Warn,
            format!(
                "the cgroup2 mount at {} shows only the subtree {root} (a container or a cgroup \
                 namespace): attached there, enforcement covers only the processes below it",
                mount.display()
            ),
        )
        .fix("run the daemon on the host (in the initial cgroup namespace)")
    });
    checks
}

/// Whether a v1 net_cls or net_prio hierarchy is mounted (mountinfo).
pub fn v1_net_controllers(mountinfo: &str) -> bool {
    mountinfo.lines().any(|l| {
        l.split_once(" - ").is_some_and(|(_, r)| {
            let mut f = r.split_whitespace();
            f.next() == Some("cgroup")
                && f.nth(1).is_some_and(|opts| {
                    opts.split(',')
                        .any(|o| o == "net_cls" || o == "net_prio" || o == "net_cls,net_prio")
                })
        })
    })
}

/// The mixed-mode caveat of kernels before 5.15, if it applies.
pub fn mixed_mode(kernel: Option<(u32, u32)>, mountinfo: Option<&str>) -> Option<Check> {
    let text = mountinfo?;
    (kernel? < MIXED_MODE_FIX && v1_net_controllers(text)).then(|| {
        Check::new(
            "cgroup-v1-net",
            Status::Warn,
            "a cgroup v1 net_cls/net_prio hierarchy is mounted and this kernel (before 5.15) \
             then attributes sockets to the cgroup v2 root: programs on a child cgroup \
             (--cgroup) miss them",
        )
        .fix("unmount the v1 net_cls/net_prio hierarchy, enforce on the root, or use Linux 5.15+")
    })
}

/// The pin directory's file system. The daemon mounts bpffs at
/// /sys/fs/bpf itself when the pins are below it and nothing is mounted.
pub fn bpffs(dir: &Path) -> Check {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    match bpffs::is_bpffs(existing) {
        Ok(true) => Check::ok(
            "bpffs",
            format!("{} is on a bpf file system", existing.display()),
        ),
        Ok(false) if dir.starts_with(bpffs::SYSTEM_BPFFS) => Check::new(
            "bpffs",
            Status::Warn,
            format!(
                "nothing is mounted at {}: the daemon mounts bpffs there when it starts",
                bpffs::SYSTEM_BPFFS
            ),
        )
        .fix(format!(
            "mount it at boot (`mount -t bpf bpf {}`, or systemd's sys-fs-bpf.mount)",
            bpffs::SYSTEM_BPFFS
        )),
        Ok(false) => Check::new(
            "bpffs",
            Status::Fail,
            BpffsError::NotBpffs {
                path: dir.to_owned(),
                mount: existing.to_owned(),
            }
            .to_string(),
        )
        .fix(format!(
            "`mount -t bpf bpf {}`, or use a --bpffs under {}",
            existing.display(),
            bpffs::SYSTEM_BPFFS
        )),
        Err(e) => Check::new("bpffs", Status::Fail, e.to_string()),
    }
}

pub fn memlock(kernel: Option<(u32, u32)>, limit: Option<u64>) -> Check {
    let shown = limit.map_or("unlimited".to_owned(), |l| format!("{} KiB", l / 1024));
    match (kernel, limit) {
        (_, None) => Check::ok("memlock", format!("RLIMIT_MEMLOCK {shown}")),
        (Some(k), Some(_)) if k >= MEMCG_ACCOUNTING => Check::ok(
            "memlock",
            format!(
                "RLIMIT_MEMLOCK {shown}: irrelevant on this kernel (5.11+ charges BPF memory to \
                 the memory cgroup)"
            ),
        ),
        (_, Some(l)) if l >= MEMLOCK_NEEDED => {
            Check::ok("memlock", format!("RLIMIT_MEMLOCK {shown}"))
        }
        (_, Some(_)) => Check::new(
            "memlock",
            Status::Warn,
            format!(
                "RLIMIT_MEMLOCK {shown}: before 5.11 BPF maps count against it and the daemon's \
                 maps need about {} MiB",
                MEMLOCK_NEEDED >> 20
            ),
        )
        .fix("LimitMEMLOCK=infinity (the packaged unit sets it) or `ulimit -l unlimited`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse_and_old_ones_fail() {
        assert_eq!(parse_release("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_release("4.19.0+"), Some((4, 19)));
        assert_eq!(parse_release("6.8rc1"), Some((6, 8)));
        assert_eq!(parse_release("garbage"), None);
        assert_eq!(version("5.17.0").status, Status::Ok);
        assert_eq!(version("6.1.0-18-amd64").status, Status::Ok);
        let old = version("5.15.0-91-generic");
        assert_eq!(old.status, Status::Fail);
        assert!(old.fix.unwrap().contains("5.17"));
        assert_eq!(version("").status, Status::Warn);
    }

    #[test]
    fn memlock_matters_only_before_memcg_accounting() {
        assert_eq!(memlock(Some((6, 1)), Some(8 << 20)).status, Status::Ok);
        assert!(
            memlock(Some((6, 1)), Some(8 << 20))
                .detail
                .contains("irrelevant")
        );
        assert_eq!(memlock(Some((5, 10)), None).status, Status::Ok);
        let low = memlock(Some((5, 10)), Some(64 << 10));
        assert_eq!(low.status, Status::Warn);
        assert!(low.fix.unwrap().contains("LimitMEMLOCK=infinity"));
        assert_eq!(memlock(Some((5, 10)), Some(1 << 30)).status, Status::Ok);
    }

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
42 31 0:39 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
";

    #[test]
    fn cgroup2_reports_the_mount_and_whether_it_is_the_whole_host() {
        let c = cgroup2(Some(HYBRID));
        assert_eq!(c[0].status, Status::Ok);
        assert!(c[0].detail.contains("/sys/fs/cgroup/unified (hybrid"));
        assert_eq!(c[1].status, Status::Ok);
        let container = "50 1 0:40 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        let c = cgroup2(Some(container));
        assert_eq!(c[1].status, Status::Warn);
        assert!(c[1].detail.contains("/docker/abc"), "{}", c[1].detail);
        let none = cgroup2(Some("31 23 0:28 / /sys rw - sysfs sysfs rw\n"));
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].status, Status::Fail);
        assert_eq!(none[0].fix.as_deref(), Some(CGROUP2_FIX));
        assert!(none[0].detail.contains(CGROUP2_FIX), "the daemon's message");
    }

    #[test]
    fn v1_net_controllers_matter_before_5_15_only() {
        assert!(v1_net_controllers(HYBRID));
        assert!(!v1_net_controllers(
            "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
        ));
        assert_eq!(
            mixed_mode(Some((5, 10)), Some(HYBRID)).unwrap().status,
            Status::Warn
        );
        assert!(mixed_mode(Some((5, 15)), Some(HYBRID)).is_none());
    }

    #[test]
    fn a_pin_directory_off_bpffs_fails_with_the_daemons_message() {
        let c = bpffs(Path::new("/tmp/enforcer-doctor-nowhere/pins"));
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail.contains("is not on a bpf file system"),
            "{}",
            c.detail
        );
    }
}

//! What a daemon test needs: its own cgroup, network namespace (with
//! addresses on loopback), private bpffs and scratch directory.

use std::path::{Path, PathBuf};

use enforcer::bpf::Pins;

use crate::{BpffsGuard, CgroupGuard, NetnsGuard, Probe, TempDir, daemon::DaemonArgs};

pub struct World {
    pub cg: CgroupGuard,
    pub ns: NetnsGuard,
    pub bpffs: BpffsGuard,
    pub tmp: TempDir,
}

impl World {
    /// `lo_addrs` are added to the namespace's loopback (`10.77.0.2/32`).
    pub fn new(tag: &str, lo_addrs: &[&str]) -> World {
        let ns = NetnsGuard::new(tag);
        for a in lo_addrs {
            ns.add_lo_addr(a);
        }
        World {
            cg: CgroupGuard::new(tag),
            ns,
            bpffs: BpffsGuard::new(tag),
            tmp: TempDir::new(tag),
        }
    }

    /// Daemon arguments for this world with `policy`.
    pub fn args(&self, policy: &Path) -> DaemonArgs {
        DaemonArgs::scoped(
            policy.to_owned(),
            self.cg.path(),
            &self.bpffs.pins_dir(),
            self.tmp.path().to_owned(),
        )
    }

    /// A TCP attempt from a process in the cgroup and namespace.
    pub fn probe(&self, addr: &str) -> String {
        Probe::new()
            .cgroup(self.cg.path())
            .netns(self.ns.name())
            .run("tcp", addr)
            .result
    }

    pub fn pins(&self) -> Pins {
        Pins::new(self.bpffs.pins_dir())
    }

    pub fn socket(&self) -> PathBuf {
        self.tmp.path().join("control.sock")
    }
}

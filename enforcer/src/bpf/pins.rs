//! Where everything is pinned below the bpffs directory of one instance.

use std::path::{Path, PathBuf};

/// The default pin directory of the system service.
pub const DEFAULT_BPFFS_DIR: &str = "/sys/fs/bpf/enforcer";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    root: PathBuf,
}

impl Pins {
    pub fn new(root: impl Into<PathBuf>) -> Pins {
        Pins { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    /// The link of a cgroup program, named after the program.
    pub fn cgroup_link(&self, program: &str) -> PathBuf {
        self.links_dir().join(program)
    }

    /// The XDP link on one interface. bpffs refuses '.' in names, which
    /// interface names may hold (`eth0.100`), so it is written `%2e`.
    pub fn xdp_link(&self, iface: &str) -> PathBuf {
        self.links_dir().join(format!(
            "xdp@{}",
            iface.replace('%', "%25").replace('.', "%2e")
        ))
    }

    /// Whether a previous instance left pinned maps here.
    pub fn has_maps(&self) -> bool {
        self.map(enforcer_common::maps::DENY_V4).exists()
    }
}

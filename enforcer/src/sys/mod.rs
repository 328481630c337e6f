//! Small pieces of the host: where cgroup2 is mounted, bpffs, the state
//! directory's owner and modes, the kernel clock, the host name.

pub mod bpffs;
pub mod btf;
pub mod cgroup;
pub mod clock;
pub mod statedir;
pub mod tracefs;

/// This host's name, as flows and their log lines carry it (empty if the
/// kernel has none that is UTF-8).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

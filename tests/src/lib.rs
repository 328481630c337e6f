//! Shared fixtures of the privileged integration tests.
//!
//! # Layout
//! - guards that create and always remove what a test needs: a cgroup
//!   under the cgroup2 mount, a network namespace, a private bpffs mount
//!   (unmounting it releases every pin, so every program detaches);
//! - `Probe`: runs `probe` (src/bin/probe.rs) inside them;
//! - `users`: processes run as another uid with chosen groups;
//! - `Harness`: the real object loaded through the library, for tests that
//!   look at events and counters without a daemon consuming them, and
//!   run a program on a `frame` (BPF_PROG_TEST_RUN).
//!
//! Everything here attaches only to cgroups and interfaces the test made.

pub mod daemon;
pub mod dns;
pub mod dnswire;
pub mod frame;
pub mod guards;
pub mod harness;
pub mod hex;
pub mod probe;
pub mod resolving;
pub mod tls;
pub mod users;
pub mod veth;
pub mod world;

pub use guards::{BpffsGuard, CgroupGuard, NetnsGuard, TempDir, require_root};
pub use harness::Harness;
pub use probe::{Probe, ProbeResult};
pub use world::World;

/// A name unique to this test process and call, short enough for
/// interface names.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

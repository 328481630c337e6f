//! Small pieces of the host: where cgroup2 is mounted, bpffs, the state
//! directory's owner and modes.

pub mod bpffs;
pub mod cgroup;
pub mod statedir;
pub mod tracefs;

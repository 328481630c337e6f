//! Small pieces of the host: where cgroup2 is mounted, bpffs.

pub mod bpffs;
pub mod cgroup;
pub mod tracefs;

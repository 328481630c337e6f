//! Kernel state: the only privileged layer. Loading and attaching
//! (`datapath`), writing the verdict maps (`writer`) and the NAT64
//! prefixes (`nat64`), reading counters (`stats`) and events (`events`).
//! Everything is reached through pins, so a restarted daemon, a test, or
//! `detach` find the same objects.

pub mod agents;
pub mod batch;
pub mod budget;
pub mod datapath;
pub mod dnsnames;
pub mod events;
pub mod judge;
pub mod layout;
pub mod lock;
pub mod nat64;
pub mod object;
pub mod offsets;
pub mod pinned;
pub mod pins;
pub mod ports;
pub mod probe;
pub mod sni;
pub mod stats;
mod syscall;
pub mod unix;
pub mod writer;

pub use datapath::{CgroupHook, Datapath, DatapathError, DetachReport, check_xdp_ifaces, detach};
pub use lock::InstanceLock;
pub use pins::Pins;

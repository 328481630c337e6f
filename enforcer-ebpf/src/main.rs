//! The enforcer's kernel programs, one object.
//!
//! # Layout
//! - `maps`: every map, named as `enforcer_common::maps` says.
//! - `net`: wire constants and the header parsing skb and XDP share.
//! - `verdict`: the one place that turns an address into a verdict and rule.
//! - `report`: counters and ring-buffer events.
//! - `sock_addr`: cgroup connect4/6 and sendmsg4/6 (EPERM at the syscall).
//! - `sock`: cgroup sock_create, recording each socket's owner.
//! - `owner`: the socket owner record in socket-local storage.
//! - `skb`: cgroup_skb egress (drops what reaches the wire anyway).
//! - `xdp`: XDP filter on source and destination.
//! - `dns`: cgroup_skb ingress, learns addresses from DNS answers.
//! - `sni`: sock_ops + sk_msg, judges connections to shared names' front
//!   ends by the name in their first write (TLS server_name, HTTP Host).
//! - `exec`: exec tracking (argv and executable) for attribution.
//! - `contain`: agent containment: marks processes whose exec matches a
//!   selector, and their children; judges their connections.
//! - `kernel`: reads of kernel structs at offsets from the kernel's BTF.
//! - `unix`: connect_unix/sendmsg_unix: contained processes reach only the
//!   Unix-domain sockets their allow list names.
#![no_std]
#![no_main]

mod contain;
mod dns;
mod exec;
mod kernel;
mod maps;
mod net;
mod owner;
mod pending;
mod report;
mod skb;
mod sni;
mod sock;
mod sock_addr;
mod unix;
mod verdict;
mod xdp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

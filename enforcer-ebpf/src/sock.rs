//! sock_create: remembers which task created each inet socket, so that the
//! skb hook, which runs without reliable task context (retransmits, softirq),
//! can still name the process behind a dropped packet.

use aya_ebpf::{macros::cgroup_sock, programs::SockContext};
use enforcer_common::{AF_INET, AF_INET6};

use crate::{contain, owner};

#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    // SAFETY: the context pointer is valid for the program's run.
    let family = unsafe { (*ctx.sock).family };
    if (family == AF_INET || family == AF_INET6) && contain::on() && !contain::may_create(&ctx) {
        return 0;
    }
    if family == AF_INET || family == AF_INET6 {
        owner::record_created(ctx.sock);
    }
    // Verdicts belong to connect/send; only a contained process's raw and
    // ICMP sockets are refused (`contain::may_create`).
    1
}

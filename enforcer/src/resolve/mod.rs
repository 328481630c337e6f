//! Names → addresses. `answers` holds what is known about each name and
//! applies the grace and staleness rules (pure, unit-tested); `dns` asks
//! the upstreams with hickory; `task` schedules refreshes at each name's
//! TTL with bounded concurrency and backoff.

pub mod answers;
pub mod dns;
pub mod task;

pub use answers::{Answers, NameStatus, ResolvedAddrs};
pub use task::{Outcome, Plan, spawn};

/// Milliseconds since the Unix epoch, the clock of `Answers`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

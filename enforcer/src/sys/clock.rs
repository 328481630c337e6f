//! The kernel's event times as wall-clock time.
//!
//! The programs stamp events with `bpf_ktime_get_ns()` (CLOCK_MONOTONIC);
//! flows are stored in wall-clock milliseconds. One reading of both clocks
//! per batch converts every event of the batch, so that an event read late
//! (the daemon busy, stopped or restarting) keeps the time it happened.

use nix::time::{ClockId, clock_gettime};

/// The offset between the two clocks at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelClock {
    /// Wall-clock ns minus monotonic ns.
    offset_ns: i128,
}

fn ns(clock: ClockId) -> i128 {
    let t = clock_gettime(clock).expect("CLOCK_MONOTONIC and CLOCK_REALTIME always exist");
    i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
}

impl KernelClock {
    /// Reads both clocks now.
    pub fn now() -> KernelClock {
        let mono = ns(ClockId::CLOCK_MONOTONIC);
        let real = ns(ClockId::CLOCK_REALTIME);
        KernelClock {
            offset_ns: real - mono,
        }
    }

    /// The wall-clock milliseconds (Unix epoch) of monotonic `ts_ns`.
    pub fn wall_ms(self, ts_ns: u64) -> u64 {
        let ms = (i128::from(ts_ns) + self.offset_ns) / 1_000_000;
        u64::try_from(ms.max(0)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_monotonic_time_maps_to_the_wall_clock_time_it_was() {
        let clock = KernelClock::now();
        let mono = u64::try_from(ns(ClockId::CLOCK_MONOTONIC)).unwrap();
        let wall = crate::resolve::now_ms();
        assert!(
            clock.wall_ms(mono).abs_diff(wall) <= 5,
            "{} vs {wall}",
            clock.wall_ms(mono)
        );
        // Three seconds earlier in the kernel is three seconds earlier.
        assert!(
            clock.wall_ms(mono - 3_000_000_000).abs_diff(wall - 3_000) <= 5,
            "offset applied as is"
        );
    }
}

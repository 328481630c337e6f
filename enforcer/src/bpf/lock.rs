//! One daemon per instance. Two daemons on the same pins would each replace
//! the other's links (moving the programs to the second one's cgroup)
//! while the first still reported that it enforces. The daemon holds an
//! exclusive `flock` on the pin directory itself for its lifetime (bpffs
//! directories take flocks like any other; the kernel drops the lock when
//! the process dies, so a `kill -9` leaves no stale lock). A second daemon,
//! and `detach --bpffs`, fail before changing anything and name the holder,
//! found in /proc/locks.

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
};

use super::{DatapathError, Pins};
use crate::sys::bpffs;

/// Held while the value lives; released on drop or when the process exits.
#[derive(Debug)]
pub struct InstanceLock {
    _dir: File,
}

impl InstanceLock {
    /// Makes the pin directory exist (on bpffs) and takes its lock, or fails
    /// naming the daemon that holds it. Changes nothing else.
    pub fn acquire(pins: &Pins) -> Result<InstanceLock, DatapathError> {
        if bpffs::ensure_pin_dir(pins.root())? {
            tracing::info!("mounted bpffs at {}", bpffs::SYSTEM_BPFFS);
        }
        InstanceLock::existing(pins)
    }

    /// Takes the lock of a pin directory that exists, or fails naming the
    /// daemon that holds it.
    pub fn existing(pins: &Pins) -> Result<InstanceLock, DatapathError> {
        let root = pins.root();
        let io_err = |source| DatapathError::Pin {
            path: root.to_owned(),
            source,
        };
        let dir = File::open(root).map_err(io_err)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io_err(err));
            }
            let holder = dir.metadata().ok().and_then(|m| {
                let locks = std::fs::read_to_string("/proc/locks").ok()?;
                flock_holder(&locks, m.dev(), m.ino())
            });
            return Err(DatapathError::Locked {
                root: root.to_owned(),
                holder: holder.map_or_else(
                    || "another process".to_owned(),
                    |pid| format!("the enforcer daemon with pid {pid}"),
                ),
            });
        }
        Ok(InstanceLock { _dir: dir })
    }
}

/// The pid of the daemon holding the instance lock, read from /proc/locks
/// without taking the lock (a probe that took it, even briefly, could make
/// a daemon starting at that moment refuse to run).
pub fn holder(pins: &Pins) -> io::Result<Option<u32>> {
    let m = std::fs::metadata(pins.root())?;
    let locks = std::fs::read_to_string("/proc/locks")?;
    Ok(flock_holder(&locks, m.dev(), m.ino()))
}

/// The pid holding an FLOCK on the inode `ino` of device `dev`, from the
/// text of /proc/locks (`1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF`;
/// waiters are the lines with `->`).
fn flock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let id = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, file, ..] if *file == id => pid.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_comes_from_proc_locks() {
        let dev = libc::makedev(0, 0x2d);
        let locks = "1: POSIX  ADVISORY  WRITE 99 00:2d:5678 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 4321 00:2d:5678 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 777 00:2e:5678 0 EOF\n";
        assert_eq!(flock_holder(locks, dev, 5678), Some(1234));
        assert_eq!(flock_holder(locks, dev, 1), None);
    }

    #[test]
    fn a_second_lock_on_a_directory_is_refused_and_names_this_process() {
        // flock is per open file: two opens in one process conflict like
        // two daemons would.
        let dir = std::env::temp_dir().join(format!("enforcer-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pins = Pins::new(&dir);
        let first = InstanceLock::existing(&pins).unwrap();
        match InstanceLock::existing(&pins) {
            Err(DatapathError::Locked { holder, .. }) => {
                assert_eq!(
                    holder,
                    format!("the enforcer daemon with pid {}", std::process::id())
                );
            }
            other => panic!("second lock: {other:?}"),
        }
        drop(first);
        let _again = InstanceLock::existing(&pins).unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }
}

//! Finding the cgroup v2 hierarchy. It is not always at /sys/fs/cgroup
//! (hybrid layouts mount it at /sys/fs/cgroup/unified), so it is read from
//! /proc/self/mountinfo.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read /proc/self/mountinfo: {0}")]
    MountInfo(#[source] std::io::Error),
    #[error(
        "no cgroup2 file system is mounted (see /proc/self/mountinfo); enforcer needs cgroup v2: {CGROUP2_FIX}"
    )]
    NotMounted,
    #[error("{path}: not a directory inside the cgroup2 mount {mount}")]
    NotInCgroup2 { path: PathBuf, mount: PathBuf },
    #[error("{path}: cannot open the cgroup: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to do when no cgroup2 is mounted (the daemon's error and
/// `enforcer doctor` say the same).
pub const CGROUP2_FIX: &str = "mount one (`mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 \
     cgroup2 /sys/fs/cgroup/unified`) or boot with systemd.unified_cgroup_hierarchy=1";

/// The mount point of the first cgroup2 file system in a mountinfo text.
pub fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    cgroup2_entry_in(mountinfo).map(|(mount_point, _)| mount_point)
}

/// The mount point of the first cgroup2 file system and the directory of
/// the hierarchy it shows (`/` unless a container or cgroup namespace
/// shows only a subtree).
pub fn cgroup2_entry_in(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mut fields = left.split_whitespace().skip(3);
        let root = fields.next()?;
        let mount_point = fields.next()?;
        Some((PathBuf::from(unescape(mount_point)), unescape(root)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup2 mount point of this host.
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::MountInfo)?;
    cgroup2_mount_in(&text).ok_or(CgroupError::NotMounted)
}

/// Checks that `path` is a cgroup directory under the cgroup2 mount.
pub fn check_cgroup_dir(path: &Path) -> Result<PathBuf, CgroupError> {
    let mount = cgroup2_mount()?;
    let canonical = path.canonicalize().map_err(|source| CgroupError::Open {
        path: path.to_owned(),
        source,
    })?;
    if !canonical.starts_with(&mount) || !canonical.join("cgroup.procs").exists() {
        return Err(CgroupError::NotInCgroup2 {
            path: path.to_owned(),
            mount,
        });
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unified_mount_of_a_hybrid_layout() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount_in(text),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn unescapes_and_reports_absence() {
        let text = "50 1 0:40 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount_in(text), Some(PathBuf::from("/mnt/my cg")));
        assert_eq!(
            cgroup2_mount_in("31 23 0:28 / /sys rw - sysfs sysfs rw\n"),
            None
        );
    }
}

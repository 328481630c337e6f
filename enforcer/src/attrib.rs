//! Who is behind a blocked attempt: a bounded pid → exec record cache fed
//! by the kernel's exec events (so a process that exited at once is still
//! named) and seeded from /proc, plus cgroup paths, systemd units and user
//! names.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
};

use enforcer_common::{EXEC_F_TRUNCATED, ExecEvent};
use serde::Serialize;

/// What is known about a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub exe: String,
    pub cmdline: Vec<String>,
    pub comm: String,
    pub uid: u32,
    /// argv was longer than the kernel keeps.
    pub truncated: bool,
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// NUL-separated arguments.
fn split_args(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

impl ProcInfo {
    pub fn from_exec(ev: &ExecEvent) -> ProcInfo {
        let len = (ev.args_len as usize).min(ev.args.len());
        ProcInfo {
            pid: ev.pid,
            ppid: read_ppid(ev.pid),
            exe: c_string(&ev.filename),
            cmdline: split_args(&ev.args[..len]),
            comm: c_string(&ev.comm),
            uid: ev.uid,
            truncated: ev.flags & EXEC_F_TRUNCATED != 0,
        }
    }

    /// From /proc, while the process lives.
    pub fn from_proc(pid: u32) -> Option<ProcInfo> {
        let dir = PathBuf::from(format!("/proc/{pid}"));
        let exe = std::fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.display().to_string())?;
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX);
        Some(ProcInfo {
            pid,
            ppid: read_ppid(pid),
            exe,
            cmdline: split_args(&cmdline),
            comm: comm.trim_end().to_owned(),
            uid,
            truncated: false,
        })
    }
}

/// The parent from /proc/PID/stat (field 4, after the parenthesised comm).
pub fn read_ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_ppid(&stat)
}

fn parse_ppid(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// A bounded pid → process cache; the oldest entries leave first.
pub struct ProcCache {
    capacity: usize,
    entries: HashMap<u32, ProcInfo>,
    order: VecDeque<u32>,
}

impl ProcCache {
    pub fn new(capacity: usize) -> ProcCache {
        ProcCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Seeds with every process /proc shows now (bounded by capacity).
    pub fn seed_from_proc(&mut self) {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in dir.flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok())
                && let Some(info) = ProcInfo::from_proc(pid)
            {
                self.insert(info);
            }
        }
    }

    pub fn insert(&mut self, info: ProcInfo) {
        let pid = info.pid;
        if self.entries.insert(pid, info).is_none() {
            self.order.push_back(pid);
        }
        while self.entries.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
        // Keep `order` from growing with re-inserted pids.
        if self.order.len() > self.capacity * 2 {
            let entries = &self.entries;
            self.order.retain(|p| entries.contains_key(p));
        }
    }

    /// The process, from the cache or (still alive) from /proc.
    pub fn lookup(&mut self, pid: u32) -> Option<ProcInfo> {
        if let Some(info) = self.entries.get(&pid) {
            return Some(info.clone());
        }
        let info = ProcInfo::from_proc(pid)?;
        self.insert(info.clone());
        Some(info)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// cgroup v2 id (the directory's inode) → path, by walking the hierarchy;
/// refreshed on a miss at most every few seconds.
pub struct CgroupIndex {
    root: PathBuf,
    paths: HashMap<u64, String>,
    last_walk: Option<std::time::Instant>,
}

impl CgroupIndex {
    pub fn new(root: PathBuf) -> CgroupIndex {
        CgroupIndex {
            root,
            paths: HashMap::new(),
            last_walk: None,
        }
    }

    pub fn path(&mut self, id: u64) -> Option<String> {
        if id == 0 {
            return None;
        }
        if let Some(p) = self.paths.get(&id) {
            return Some(p.clone());
        }
        let stale = self
            .last_walk
            .is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(2));
        if stale {
            self.walk();
        }
        self.paths.get(&id).cloned()
    }

    fn walk(&mut self) {
        use std::os::unix::fs::MetadataExt as _;
        self.last_walk = Some(std::time::Instant::now());
        self.paths.clear();
        let mut stack = vec![self.root.clone()];
        // Bounded: a workstation has hundreds of cgroups, not millions.
        let mut budget = 100_000;
        while let Some(dir) = stack.pop() {
            budget -= 1;
            if budget == 0 {
                break;
            }
            if let Ok(meta) = std::fs::metadata(&dir) {
                let rel = dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
                self.paths.insert(meta.ino(), format!("/{}", rel.display()));
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
        }
    }
}

/// The systemd unit (`*.service`, `*.scope`, ...) or container id a cgroup
/// path names, innermost first.
pub fn unit_of(cgroup: &str) -> Option<String> {
    for part in cgroup.rsplit('/') {
        let hex = part
            .trim_start_matches("docker-")
            .trim_start_matches("cri-containerd-")
            .trim_start_matches("libpod-")
            .trim_end_matches(".scope");
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(format!("container:{}", &hex[..12]));
        }
        for suffix in [".service", ".scope", ".slice", ".socket", ".mount"] {
            if part.ends_with(suffix) && part != "user.slice" && part != "system.slice" {
                return Some(part.to_owned());
            }
        }
    }
    None
}

/// uid → user name from an /etc/passwd text.
pub fn user_names(passwd: &str) -> HashMap<u32, String> {
    passwd
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_containers_from_cgroup_paths() {
        assert_eq!(
            unit_of("/system.slice/ollama.service").as_deref(),
            Some("ollama.service")
        );
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/code.scope")
                .as_deref(),
            Some("code.scope")
        );
        let id = "a".repeat(64);
        assert_eq!(
            unit_of(&format!("/system.slice/docker-{id}.scope")).as_deref(),
            Some("container:aaaaaaaaaaaa")
        );
        assert_eq!(unit_of("/enforcer-test-x"), None);
    }

    #[test]
    fn ppid_and_users_and_args() {
        assert_eq!(parse_ppid("42 (my (odd) prog) S 7 42 42 0"), Some(7));
        let users = user_names(
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\n",
        );
        assert_eq!(users.get(&65534).map(String::as_str), Some("nobody"));
        assert_eq!(
            split_args(b"probe\x00tcp\x0010.0.0.1:0\x00"),
            ["probe", "tcp", "10.0.0.1:0"]
        );
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_oldest() {
        let mut c = ProcCache::new(2);
        for pid in 1..=3 {
            c.insert(ProcInfo {
                pid,
                ppid: None,
                exe: format!("/bin/p{pid}"),
                cmdline: vec![],
                comm: String::new(),
                uid: 0,
                truncated: false,
            });
        }
        assert_eq!(c.len(), 2);
        assert!(!c.entries.contains_key(&1));
        assert!(c.entries.contains_key(&3));
    }
}

//! The processes of a /proc snapshot that selectors contain: a process is
//! contained by its topmost ancestor (itself included) whose program
//! matches, as the kernel would have marked it had it watched every exec
//! since (the first match is kept; descendants inherit it).

use std::{collections::BTreeMap, path::Path};

use enforcer_common::agents::Contained;

use super::Tables;

/// One process as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// The executable (`/proc/PID/exe`, resolved by the kernel).
    pub exe: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
}

impl Proc {
    /// The selector (rank) its program matches. /proc keeps the resolved
    /// executable, not the path execve was given, so two more paths are
    /// tried: argv[0] when it is a path (a symlinked launcher), and the
    /// script an interpreter runs when that file starts with `#!` (the
    /// kernel saw the script's path as the executable, then the
    /// interpreter).
    pub fn matches(&self, tables: &Tables) -> Option<usize> {
        let argv: Vec<&[u8]> = self.argv.iter().map(Vec::as_slice).collect();
        let mut found = tables.match_exec(&self.exe, &argv);
        let mut also = |path: &[u8]| {
            if let Some(m) = tables.match_exec(path, &argv) {
                found = Some(found.map_or(m, |f| f.min(m)));
            }
        };
        if let Some(a0) = self.argv.first().filter(|a| a.contains(&b'/')) {
            also(a0);
        }
        if let Some(script) = self
            .argv
            .iter()
            .skip(1)
            .find(|a| !a.is_empty() && a[0] != b'-')
            .filter(|a| a.contains(&b'/') && starts_with_shebang(a))
        {
            also(script);
        }
        found
    }
}

fn starts_with_shebang(path: &[u8]) -> bool {
    use std::{io::Read as _, os::unix::ffi::OsStrExt as _};
    let mut head = [0u8; 2];
    std::fs::File::open(std::ffi::OsStr::from_bytes(path))
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == *b"#!"
}

/// pid → containment for every contained process of `procs`, as the
/// kernel would have marked it had it seen every exec since: the topmost
/// matching ancestor (itself included) contains it, and a match further
/// down takes over only if its selector is stricter (`strict[rank]`:
/// audit 0, deny 1, deny-all 2). Marks hold slots (`slots[rank]`).
pub fn contained(
    procs: &[Proc],
    tables: &Tables,
    slots: &[u32],
    strict: &[u8],
) -> BTreeMap<u32, Contained> {
    let by_pid: BTreeMap<u32, &Proc> = procs.iter().map(|p| (p.pid, p)).collect();
    let own: BTreeMap<u32, usize> = procs
        .iter()
        .filter_map(|p| p.matches(tables).map(|s| (p.pid, s)))
        .collect();
    let mut out = BTreeMap::new();
    for p in procs {
        // The chain up (bounded: a pid loop in a torn snapshot must not
        // hang), then judged from the top down.
        let mut chain = Vec::new();
        let mut cur = Some(p);
        for _ in 0..4096 {
            let Some(c) = cur else { break };
            chain.push(c.pid);
            if c.ppid == 0 || c.ppid == c.pid {
                break;
            }
            cur = by_pid.get(&c.ppid).copied();
        }
        let mut found: Option<(usize, u32)> = None;
        for pid in chain.iter().rev() {
            if let Some(&rank) = own.get(pid)
                && found.is_none_or(|(r, _)| strict[rank] > strict[r])
            {
                found = Some((rank, *pid));
            }
        }
        if let Some((rank, root)) = found {
            out.insert(
                p.pid,
                Contained {
                    selector: slots[rank],
                    root,
                },
            );
        }
    }
    out
}

/// Reads every process of `proc_root` (/proc). Processes that exit while
/// it reads, or whose exe cannot be read (kernel threads), are skipped or
/// kept without an exe.
pub fn snapshot(proc_root: &Path) -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let base = entry.path();
        let Ok(stat) = std::fs::read_to_string(base.join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces and parens.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
        else {
            continue;
        };
        // An executable replaced since it started (an auto-update) reads
        // `PATH (deleted)`.
        let exe = std::fs::read_link(base.join("exe"))
            .map(|p| {
                let mut b = p.into_os_string().into_encoded_bytes();
                if b.ends_with(b" (deleted)") {
                    b.truncate(b.len() - b" (deleted)".len());
                }
                b
            })
            .unwrap_or_default();
        // Empty arguments kept: the kernel's capture keeps them too.
        let argv = std::fs::read(base.join("cmdline"))
            .map(|mut c| {
                if c.last() == Some(&0) {
                    c.pop();
                }
                if c.is_empty() {
                    Vec::new()
                } else {
                    c.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
                }
            })
            .unwrap_or_default();
        out.push(Proc {
            pid,
            ppid,
            exe,
            argv,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, Source};

    fn proc(pid: u32, ppid: u32, exe: &str, argv: &[&str]) -> Proc {
        Proc {
            pid,
            ppid,
            exe: exe.into(),
            argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn descendants_inherit_the_topmost_match() {
        let text = r#"{"version": 1, "agents": [
            {"name": "a", "exe": ["/opt/a/*"]},
            {"name": "b", "script": ["/opt/b.py"]}]}"#;
        let p = Policy::parse(text, Source::Embedded).unwrap();
        let t = Tables::compile(&p.agents).unwrap();
        let procs = [
            proc(1, 0, "/sbin/init", &["init"]),
            proc(10, 1, "/opt/a/1.0", &["/opt/a/1.0"]),
            proc(11, 10, "/bin/bash", &["bash"]),
            proc(12, 11, "/usr/bin/python3", &["python3", "/opt/b.py"]),
            proc(13, 12, "/usr/bin/curl", &["curl"]),
            proc(20, 1, "/usr/bin/python3", &["python3", "/opt/b.py"]),
            proc(21, 1, "/usr/bin/python3", &["python3", "/opt/c.py"]),
            // A symlinked launcher: /proc resolves it, argv[0] does not.
            proc(30, 1, "/usr/lib/x", &["/opt/a/launcher", "-p"]),
        ];
        let c = contained(&procs, &t, &[5, 7], &[1, 1]);
        let at = |pid| c.get(&pid).map(|c| (c.selector, c.root));
        assert_eq!(at(1), None);
        assert_eq!(at(10), Some((5, 10)));
        assert_eq!(at(11), Some((5, 10)));
        assert_eq!(at(12), Some((5, 10)), "the topmost match keeps it");
        assert_eq!(at(13), Some((5, 10)));
        assert_eq!(at(20), Some((7, 20)));
        assert_eq!(at(21), None);
        assert_eq!(at(30), Some((5, 30)));
        // A stricter selector further down takes over, as in the kernel.
        let c = contained(&procs, &t, &[5, 7], &[0, 1]);
        assert_eq!(c.get(&11).map(|c| (c.selector, c.root)), Some((5, 10)));
        assert_eq!(c.get(&12).map(|c| (c.selector, c.root)), Some((7, 12)));
        assert_eq!(c.get(&13).map(|c| (c.selector, c.root)), Some((7, 12)));
    }
}

//! The pinned instance (maps, links, the daemon's lock) and the service
//! (systemd, the unit, the control socket).

use std::path::{Path, PathBuf};

use enforcer_common::{maps, programs};

use super::{Check, Status};
use crate::{
    bpf::{CgroupHook, Pins, lock, object::object},
    control::protocol::ErrorCode,
};

/// What is pinned under an instance's directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    pub maps: Vec<String>,
    pub links: Vec<String>,
}

impl Listing {
    pub fn read(pins: &Pins) -> Listing {
        let names = |dir: PathBuf| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        Listing {
            maps: names(pins.maps_dir()),
            links: names(pins.links_dir()),
        }
    }
}

pub fn pins(dir: &Path) -> Vec<Check> {
    let pins = Pins::new(dir);
    // The pins are root's (mode 0700): for anyone else they would all look
    // absent, which is a different finding.
    let denied = [dir.to_owned(), pins.maps_dir()].iter().any(|d| {
        std::fs::read_dir(d).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    });
    if denied {
        return vec![
            Check::new(
                "instance",
                Status::Warn,
                format!(
                    "cannot look at {}: permission denied (the pins are root's)",
                    dir.display()
                ),
            )
            .fix("run `sudo enforcer doctor`"),
        ];
    }
    let listing = Listing::read(&pins);
    // Only when something is pinned: an absent instance has no layout.
    let layout = if listing.maps.is_empty() {
        Ok(())
    } else {
        match object() {
            Some(o) => crate::bpf::layout::check(&pins, o, &[]).map_err(|e| e.to_string()),
            None => Err(crate::bpf::DatapathError::NoObject.to_string()),
        }
    };
    let holder = lock::holder(&pins).map_err(|e| e.to_string());
    assess(dir, &listing, layout, holder)
}

/// The instance's health from what is pinned, whether this build would
/// adopt its maps, and which process holds its lock.
pub fn assess(
    dir: &Path,
    listing: &Listing,
    layout: Result<(), String>,
    holder: Result<Option<u32>, String>,
) -> Vec<Check> {
    let shown = dir.display();
    if listing.maps.is_empty() && listing.links.is_empty() {
        return vec![
            Check::new(
                "instance",
                Status::Warn,
                format!("absent: nothing is pinned at {shown}, so nothing is enforced"),
            )
            .fix("start the service (`systemctl start enforcer`), or `enforcer daemon`"),
        ];
    }
    let mut checks = Vec::new();
    let missing: Vec<&str> = maps::ALL
        .iter()
        .copied()
        .filter(|m| !listing.maps.iter().any(|p| p == m))
        .collect();
    checks.push(if !missing.is_empty() {
        Check::new(
            "instance",
            Status::Fail,
            format!(
                "incomplete at {shown}: maps missing: {}",
                missing.join(", ")
            ),
        )
        .fix(format!(
            "restart the daemon, which recreates them; if it refuses, `enforcer detach --bpffs \
             {shown}` (this removes the enforcement) and start it again"
        ))
    } else if let Err(e) = layout {
        Check::new("instance", Status::Fail, e).fix(format!(
            "`enforcer detach --bpffs {shown}` (this removes the enforcement), then start the daemon"
        ))
    } else {
        Check::ok(
            "instance",
            format!(
                "healthy at {shown}: {} maps pinned, of this build's layout",
                listing.maps.len()
            ),
        )
    });
    let has = |name: &str| listing.links.iter().any(|l| l == name);
    // The Unix-domain hooks exist from Linux 6.7; the daemon runs without
    // them on older kernels (it warns, and `agents` says so).
    let unlinked: Vec<&str> = CgroupHook::ALL
        .iter()
        .filter(|h| !matches!(h, CgroupHook::ConnectUnix | CgroupHook::SendmsgUnix))
        .map(|h| h.program())
        .filter(|p| !has(p))
        .collect();
    let xdp: Vec<String> = listing
        .links
        .iter()
        .filter_map(|l| l.strip_prefix("xdp@"))
        .map(|i| i.replace("%2e", ".").replace("%25", "%"))
        .collect();
    let exec = [programs::EXEC_ARGV, programs::PROCESS_EXEC]
        .iter()
        .all(|p| has(p));
    let unix = has(programs::CONNECT_UNIX) && has(programs::SENDMSG_UNIX);
    checks.push(if unlinked.is_empty() {
        Check::ok(
            "instance-links",
            format!(
                "a link for every hook ({}); exec tracking: {}; agents' Unix-domain sockets: {}; \
                 XDP: {}",
                CgroupHook::ALL
                    .iter()
                    .map(|h| h.program())
                    .filter(|p| has(p))
                    .collect::<Vec<_>>()
                    .join(", "),
                if exec { "linked" } else { "not linked" },
                if unix {
                    "judged"
                } else {
                    "NOT judged (no connect_unix/sendmsg_unix links: a kernel before 6.7 or another \
                     layout; the daemon's log says which)"
                },
                if xdp.is_empty() {
                    "none".to_owned()
                } else {
                    xdp.join(", ")
                }
            ),
        )
    } else {
        Check::new(
            "instance-links",
            Status::Fail,
            format!(
                "hooks without a link, so not enforced: {}",
                unlinked.join(", ")
            ),
        )
        .fix("restart the daemon (`systemctl restart enforcer`): it attaches every hook")
    });
    checks.push(match holder {
        Ok(Some(pid)) => Check::ok(
            "instance-daemon",
            format!("locked: the daemon with pid {pid} runs on it"),
        ),
        Ok(None) => Check::new(
            "instance-daemon",
            Status::Warn,
            "no daemon runs on it: the pinned programs keep enforcing (fail closed), but names \
             are no longer re-resolved, so name bans go stale as their addresses change",
        )
        .fix("start the service (`systemctl start enforcer`), or `enforcer daemon`"),
        Err(e) => Check::new(
            "instance-daemon",
            Status::Warn,
            format!("cannot tell whether a daemon runs on it: {e}"),
        ),
    });
    checks
}

/// What the control socket said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Socket {
    Answers { mode: String, version: String },
    Denied,
    Silent(String),
}

/// Where packages and administrators put the unit, in systemd's order.
const UNIT_PATHS: [&str; 3] = [
    "/etc/systemd/system/enforcer.service",
    "/usr/lib/systemd/system/enforcer.service",
    "/lib/systemd/system/enforcer.service",
];

pub fn service(socket: &Path) -> Vec<Check> {
    let pid1 = std::fs::read_to_string("/proc/1/comm")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let unit = UNIT_PATHS.iter().map(Path::new).find(|p| p.exists());
    let state = match super::super::remote::request::<crate::control::status::Status>(
        socket,
        crate::control::protocol::Command::Status,
    ) {
        Ok(s) => Socket::Answers {
            mode: s.mode,
            version: s.version,
        },
        Err(e) => match super::super::remote::error_code(&e) {
            ErrorCode::Denied | ErrorCode::Forbidden => Socket::Denied,
            _ => Socket::Silent(super::super::chain(&e)),
        },
    };
    assess_service(&pid1, unit, socket, &state, env!("CARGO_PKG_VERSION"))
}

pub fn assess_service(
    pid1: &str,
    unit: Option<&Path>,
    socket: &Path,
    state: &Socket,
    this_version: &str,
) -> Vec<Check> {
    let systemd = pid1 == "systemd";
    let mut checks = vec![if systemd {
        Check::ok("systemd", "PID 1 is systemd")
    } else {
        Check::new(
            "systemd",
            Status::Info,
            format!(
                "PID 1 is {:?}, not systemd: the packaged unit does not run here",
                pid1
            ),
        )
        .fix("start `enforcer daemon` from this host's init (docs/SYSTEMD.md lists what the unit sets)")
    }];
    checks.push(match (unit, systemd) {
        (Some(p), _) => Check::ok("unit", format!("installed at {}", p.display())),
        (None, true) => Check::new("unit", Status::Warn, "enforcer.service is not installed")
            .fix("install the package (docs/PACKAGING.md) or the Ansible role (deploy/ansible)"),
        (None, false) => Check::new(
            "unit",
            Status::Info,
            "enforcer.service is not installed (and would not run without systemd)",
        ),
    });
    checks.push(match state {
        Socket::Answers { mode, version } if mode != "enforce" => Check::new(
            "daemon",
            Status::Warn,
            format!(
                "enforcer {version} answers at {} in {mode} mode: nothing is denied, only reported",
                socket.display()
            ),
        )
        .fix("set \"mode\": \"enforce\" in the policy and `enforcer reload`"),
        Socket::Answers { version, .. } if version != this_version => Check::new(
            "daemon",
            Status::Warn,
            format!(
                "enforcer {version} answers at {}, but this binary is {this_version}: the \
                 daemon runs an older (or newer) build",
                socket.display()
            ),
        )
        .fix("restart the service to run the installed version (the pins are adopted: no gap)"),
        Socket::Answers { version, mode } => Check::ok(
            "daemon",
            format!(
                "enforcer {version} answers at {} ({mode} mode)",
                socket.display()
            ),
        ),
        Socket::Denied => Check::new(
            "daemon",
            Status::Info,
            format!(
                "a daemon listens at {}, but this user may not ask it",
                socket.display()
            ),
        )
        .fix("run as root or as a member of the enforcer group"),
        Socket::Silent(why) => Check::new("daemon", Status::Warn, why.clone()).fix(if systemd {
            "`systemctl start enforcer`; `journalctl -u enforcer` says why it stopped"
        } else {
            "start `enforcer daemon` (or pass --socket to check another instance)"
        }),
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Listing {
        let mut links: Vec<String> = CgroupHook::ALL
            .iter()
            .map(|h| h.program().to_owned())
            .collect();
        links.push(programs::EXEC_ARGV.into());
        links.push(programs::PROCESS_EXEC.into());
        links.push("xdp@eth0%2e100".into());
        Listing {
            maps: maps::ALL.iter().map(|m| (*m).to_owned()).collect(),
            links,
        }
    }

    fn status(checks: &[Check], name: &str) -> Status {
        checks.iter().find(|c| c.name == name).unwrap().status
    }

    #[test]
    fn an_empty_directory_is_an_absent_instance() {
        let c = assess(Path::new("/x"), &Listing::default(), Ok(()), Ok(None));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, Status::Warn);
        assert!(c[0].detail.starts_with("absent"));
    }

    #[test]
    fn a_complete_locked_instance_is_healthy() {
        let c = assess(Path::new("/x"), &full(), Ok(()), Ok(Some(42)));
        assert!(c.iter().all(|c| c.status == Status::Ok), "{c:?}");
        assert!(c[1].detail.contains("XDP: eth0.100"), "{}", c[1].detail);
        assert!(c[1].detail.contains("exec tracking: linked"));
        assert!(c[2].detail.contains("pid 42"));
    }

    #[test]
    fn missing_pieces_and_foreign_layouts_fail_and_an_unlocked_instance_warns() {
        let mut l = full();
        l.maps.retain(|m| m != maps::EVENTS);
        l.links.retain(|p| p != programs::CONNECT6);
        let c = assess(Path::new("/x"), &l, Ok(()), Ok(None));
        assert_eq!(status(&c, "instance"), Status::Fail);
        assert!(c[0].detail.contains("EVENTS"));
        assert_eq!(status(&c, "instance-links"), Status::Fail);
        assert!(c[1].detail.contains("connect6"));
        assert_eq!(status(&c, "instance-daemon"), Status::Warn);
        let c = assess(
            Path::new("/x"),
            &full(),
            Err("other layout".into()),
            Ok(Some(1)),
        );
        assert_eq!(status(&c, "instance"), Status::Fail);
        assert!(
            c[0].fix
                .as_ref()
                .unwrap()
                .contains("enforcer detach --bpffs /x")
        );
    }

    #[test]
    fn the_service_is_judged_by_init_unit_and_socket() {
        let s = Path::new("/run/enforcer/control.sock");
        let answers = |mode: &str, version: &str| Socket::Answers {
            mode: mode.into(),
            version: version.into(),
        };
        let unit = Path::new("/usr/lib/systemd/system/enforcer.service");
        let c = assess_service("systemd", Some(unit), s, &answers("enforce", "1.0"), "1.0");
        assert!(c.iter().all(|c| c.status == Status::Ok), "{c:?}");
        let c = assess_service("systemd", None, s, &answers("audit", "1.0"), "1.0");
        assert_eq!(status(&c, "unit"), Status::Warn);
        assert_eq!(status(&c, "daemon"), Status::Warn);
        assert!(c[2].detail.contains("audit mode"));
        let c = assess_service("systemd", Some(unit), s, &answers("enforce", "0.9"), "1.0");
        assert!(c[2].fix.as_ref().unwrap().contains("restart"));
        let c = assess_service(
            "process_api",
            None,
            s,
            &Socket::Silent("not running".into()),
            "1.0",
        );
        assert_eq!(status(&c, "systemd"), Status::Info);
        assert_eq!(status(&c, "unit"), Status::Info);
        assert_eq!(status(&c, "daemon"), Status::Warn);
        assert_eq!(
            status(
                &assess_service("systemd", Some(unit), s, &Socket::Denied, "1.0"),
                "daemon"
            ),
            Status::Info
        );
    }
}

//! Loading the object, attaching its programs, pinning, and detaching.
//!
//! Fail closed: maps and links are pinned, so the programs keep enforcing
//! when the daemon exits or dies. A restart adopts the pinned maps (their
//! contents stay in force) and replaces each link without a gap: the new
//! link is attached and pinned beside the old one, then renamed over it,
//! which releases the old link. For a moment both run; both deny alike.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, ProgramError,
        TracePoint, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        xdp::XdpLink,
    },
};
use enforcer_common::{maps, programs};
use tracing::{info, warn};

use super::{object::object, pins::Pins};
use crate::sys::bpffs::{self, BpffsError};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(
        "this binary carries no eBPF object (it was built with AYA_BUILD_SKIP); \
         build it with `cargo build` after `cargo xtask setup`"
    )]
    NoObject,
    #[error(transparent)]
    Bpffs(#[from] BpffsError),
    #[error(transparent)]
    Tracefs(#[from] crate::sys::tracefs::TracefsError),
    #[error(
        "loading the eBPF object (maps pinned under {pins}): {source}; `enforcer doctor` \
         names what this kernel lacks"
    )]
    Load {
        pins: PathBuf,
        #[source]
        source: Box<EbpfError>,
    },
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("program {program}: link: {source}")]
    Link {
        program: &'static str,
        #[source]
        source: LinkError,
    },
    #[error("{path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the eBPF object: {0}")]
    Object(String),
    #[error("{path}: cannot read the pinned map's layout: {source}")]
    PinInfo {
        path: PathBuf,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error(
        "the maps pinned under {root} were made by another build of enforcer with another \
         layout, so they are not adopted (nothing was changed; the pinned programs keep \
         enforcing): {list}. Run `enforcer detach --bpffs {root}` (this removes the \
         enforcement), then start the daemon again",
        root = .root.display(),
        list = super::layout::describe(.mismatches)
    )]
    PinLayout {
        root: PathBuf,
        mismatches: Vec<super::layout::Mismatch>,
    },
    #[error(
        "{holder} runs on the pins under {root}; a second daemon there would take over \
         its programs, so this one stops before changing anything. Stop that one first \
         (`enforcer detach` through its socket removes the enforcement), or give this \
         instance its own --bpffs",
        root = .root.display()
    )]
    Locked { root: PathBuf, holder: String },
    #[error(
        "--xdp-iface {iface}: no such network interface ({source}); nothing was attached \
         or changed"
    )]
    NoSuchInterface {
        iface: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "XDP on {iface}: native mode failed ({native}); generic (skb) mode failed too: {source}"
    )]
    Xdp {
        iface: String,
        native: Box<ProgramError>,
        #[source]
        source: Box<ProgramError>,
    },
}

/// The cgroup programs, in attach order. `sock_create` goes first so that
/// owners are recorded for sockets made while the rest attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupHook {
    SockCreate,
    Connect4,
    Connect6,
    Sendmsg4,
    Sendmsg6,
    SkbEgress,
    /// DNS answers into the cgroup: learns the addresses of banned and
    /// allowed names before the application reads them.
    DnsIngress,
    /// sock_ops: TCP connections to a shared name's addresses go under
    /// inspection; attaching it also attaches the sk_msg verdict that
    /// judges their first write by name (`super::sni`).
    SniSockops,
    /// Unix-domain connects and sends of contained processes (kernel
    /// 6.7+; without them, a warning and no link: `super::unix`).
    ConnectUnix,
    SendmsgUnix,
}

impl CgroupHook {
    pub const ALL: [CgroupHook; 10] = [
        CgroupHook::SockCreate,
        CgroupHook::Connect4,
        CgroupHook::Connect6,
        CgroupHook::Sendmsg4,
        CgroupHook::Sendmsg6,
        CgroupHook::SkbEgress,
        CgroupHook::DnsIngress,
        CgroupHook::SniSockops,
        CgroupHook::ConnectUnix,
        CgroupHook::SendmsgUnix,
    ];

    pub const fn program(self) -> &'static str {
        match self {
            CgroupHook::SockCreate => programs::SOCK_CREATE,
            CgroupHook::Connect4 => programs::CONNECT4,
            CgroupHook::Connect6 => programs::CONNECT6,
            CgroupHook::Sendmsg4 => programs::SENDMSG4,
            CgroupHook::Sendmsg6 => programs::SENDMSG6,
            CgroupHook::SkbEgress => programs::SKB_EGRESS,
            CgroupHook::DnsIngress => programs::DNS_INGRESS,
            CgroupHook::SniSockops => programs::SNI_SOCKOPS,
            CgroupHook::ConnectUnix => programs::CONNECT_UNIX,
            CgroupHook::SendmsgUnix => programs::SENDMSG_UNIX,
        }
    }
}

/// A loaded object whose maps live in the pins.
pub struct Datapath {
    ebpf: Ebpf,
    pins: Pins,
    adopted: bool,
    /// Link pins made or kept by this instance; `prune` removes the others.
    attached: Vec<PathBuf>,
    /// The Unix-domain programs, or why they are not in force.
    unix: Result<super::unix::UnixPrograms, super::unix::Unavailable>,
}

impl Datapath {
    /// Loads the object, reusing maps already pinned under `pins` (their
    /// contents stay enforced) or creating and pinning new ones, and loads
    /// every program so verifier errors surface before anything attaches.
    pub fn load(pins: &Pins) -> Result<Datapath, DatapathError> {
        Datapath::load_with_capacity(pins, &[])
    }

    /// As [`Datapath::load`], with the capacity of some maps changed from
    /// the defaults in `enforcer_common`. A pinned map is adopted only if
    /// its type, key and value size, flags and capacity are what this call
    /// would create ([`super::layout`]); otherwise nothing is loaded.
    pub fn load_with_capacity(
        pins: &Pins,
        capacity: &[(&'static str, u32)],
    ) -> Result<Datapath, DatapathError> {
        let object = object().ok_or(DatapathError::NoObject)?;
        if bpffs::ensure_pin_dir(pins.root())? {
            info!("mounted bpffs at {}", bpffs::SYSTEM_BPFFS);
        }
        for dir in [pins.maps_dir(), pins.links_dir()] {
            std::fs::create_dir_all(&dir).map_err(|source| DatapathError::Pin {
                path: dir.clone(),
                source,
            })?;
        }
        let adopted = pins.has_maps();
        // Before the loader opens any pin: a pinned map of another layout
        // is refused, not adopted.
        super::layout::check(pins, object, capacity)?;
        let mut loader = EbpfLoader::new();
        for name in maps::ALL {
            loader.map_pin_path(name, pins.map(name));
        }
        for &(name, max_entries) in capacity {
            loader.map_max_entries(name, max_entries);
        }
        let mut ebpf = loader.load(object).map_err(|source| DatapathError::Load {
            pins: pins.maps_dir(),
            source: Box::new(source),
        })?;
        remove_retired(pins)?;
        super::offsets::write(pins).map_err(|e| DatapathError::Object(e.to_string()))?;
        for (name, program) in ebpf.programs_mut() {
            let program_name = static_name(name);
            // Loaded below with their own attach types.
            if super::unix::PROGRAMS.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let loaded = match program {
                aya::programs::Program::CgroupSockAddr(p) => p.load(),
                aya::programs::Program::CgroupSkb(p) => p.load(),
                aya::programs::Program::CgroupSock(p) => p.load(),
                aya::programs::Program::Xdp(p) => p.load(),
                aya::programs::Program::SockOps(p) => p.load(),
                aya::programs::Program::SkMsg(p) => p.load(),
                // Loaded by attach_exec_tracking: attribution is optional,
                // enforcement must not depend on it.
                aya::programs::Program::TracePoint(_) => Ok(()),
                _ => Ok(()),
            };
            loaded.map_err(|source| DatapathError::Program {
                program: program_name,
                source: Box::new(source),
            })?;
        }
        super::budget::report(&ebpf);
        let started = std::time::Instant::now();
        let unix = super::unix::UnixPrograms::load(object, &ebpf, pins);
        match &unix {
            Ok(_) => info!(
                ms = started.elapsed().as_millis() as u64,
                "Unix-domain programs loaded"
            ),
            // An old kernel: the rest enforces, and `enforcer agents` says
            // these sockets are not judged.
            Err(e @ (super::unix::Unavailable::Kernel | super::unix::Unavailable::Layout(_))) => {
                warn!(error = %e, "agent containment does not reach Unix-domain sockets")
            }
            // Anything else is this build's fault: refused like any other
            // program's load error, before anything is attached or pruned
            // (a previous instance's links stay in force).
            Err(e @ super::unix::Unavailable::Load(_)) => {
                return Err(DatapathError::Object(e.to_string()));
            }
        }
        Ok(Datapath {
            ebpf,
            pins: pins.clone(),
            adopted,
            attached: Vec::new(),
            unix,
        })
    }

    /// The loaded object, for what this type does not wrap (test runs,
    /// benchmarks).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The Unix-domain programs, if loaded.
    /// Each loaded program and the instructions its verification walked.
    pub fn verified_instructions(&self) -> Vec<(String, u32)> {
        super::budget::used(&self.ebpf)
    }

    pub fn unix(&self) -> Option<&super::unix::UnixPrograms> {
        self.unix.as_ref().ok()
    }

    /// Why the Unix-domain programs are not in force, if they are not.
    pub fn unix_unavailable(&self) -> Option<&super::unix::Unavailable> {
        self.unix.as_ref().err()
    }

    /// Whether the maps were adopted from a previous instance.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Attaches `hooks` to the cgroup at `path` and pins their links,
    /// replacing (gap-free) any link a previous instance pinned.
    pub fn attach_cgroup(
        &mut self,
        path: &Path,
        hooks: &[CgroupHook],
    ) -> Result<(), DatapathError> {
        let cgroup = File::open(path).map_err(|source| DatapathError::Cgroup {
            path: path.to_owned(),
            source,
        })?;
        // Through bpf_link (all kernels this targets) the kernel requires
        // flags 0 and treats the link as multi-attach: it coexists with
        // other programs and with the previous instance's link.
        let mode = CgroupAttachMode::Single;
        for &hook in hooks {
            let name = hook.program();
            let prog_err = program_error(name);
            let link_err = link_error(name);
            if matches!(hook, CgroupHook::ConnectUnix | CgroupHook::SendmsgUnix) {
                // Without them (an old kernel), the rest still enforces;
                // `load` warned and `unix_unavailable` says why.
                let Ok(unix) = &self.unix else { continue };
                let pin = self.pins.cgroup_link(name);
                let link = unix
                    .link(name, &cgroup)
                    .map_err(|source| DatapathError::Pin {
                        path: pin.clone(),
                        source,
                    })?;
                replace_pin_with(&pin, |staging| super::unix::pin_fd(&link, staging))?;
                self.attached.push(pin);
                continue;
            }
            if hook == CgroupHook::SniSockops {
                let pin = self.pins.cgroup_link(name);
                replace_pin(super::sni::attach(&mut self.ebpf, &cgroup)?, &pin)?;
                self.attached.push(pin);
                continue;
            }
            let program = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| prog_err(ProgramError::NotLoaded))?;
            let link: FdLink = match hook {
                CgroupHook::SkbEgress | CgroupHook::DnsIngress => {
                    let p: &mut CgroupSkb = program.try_into().map_err(prog_err)?;
                    let direction = if hook == CgroupHook::DnsIngress {
                        CgroupSkbAttachType::Ingress
                    } else {
                        CgroupSkbAttachType::Egress
                    };
                    let id = p.attach(&cgroup, direction, mode).map_err(prog_err)?;
                    p.take_link(id)
                        .map_err(prog_err)?
                        .try_into()
                        .map_err(link_err)?
                }
                CgroupHook::SockCreate => {
                    let p: &mut CgroupSock = program.try_into().map_err(prog_err)?;
                    let id = p.attach(&cgroup, mode).map_err(prog_err)?;
                    p.take_link(id)
                        .map_err(prog_err)?
                        .try_into()
                        .map_err(link_err)?
                }
                _ => {
                    let p: &mut CgroupSockAddr = program.try_into().map_err(prog_err)?;
                    let id = p.attach(&cgroup, mode).map_err(prog_err)?;
                    p.take_link(id)
                        .map_err(prog_err)?
                        .try_into()
                        .map_err(link_err)?
                }
            };
            let pin = self.pins.cgroup_link(name);
            replace_pin(link, &pin)?;
            self.attached.push(pin);
        }
        info!(cgroup = %path.display(), hooks = hooks.len(), "cgroup programs attached");
        Ok(())
    }

    /// Attaches the exec-tracking tracepoints (global: they observe every
    /// exec, fork and exit on the host, judge no connection, and mark the
    /// processes agent selectors contain) and pins their links, replacing
    /// a previous instance's gap-free.
    pub fn attach_exec_tracking(&mut self) -> Result<(), DatapathError> {
        if crate::sys::tracefs::ensure()? {
            info!("mounted tracefs at {}", crate::sys::tracefs::TRACEFS);
        }
        for (name, category, event) in [
            (programs::EXEC_ARGV, "syscalls", "sys_enter_execve"),
            (programs::EXECVEAT_ARGV, "syscalls", "sys_enter_execveat"),
            // Agent containment: children inherit the mark at fork, and
            // exited processes leave the map.
            (programs::PROCESS_FORK, "sched", "sched_process_fork"),
            (programs::PROCESS_EXIT, "sched", "sched_process_exit"),
            // Last: once it runs, every exec is matched, and argv of the
            // execs it sees has been captured by the hooks above.
            (programs::PROCESS_EXEC, "sched", "sched_process_exec"),
        ] {
            let prog_err = program_error(name);
            let link_err = link_error(name);
            let program = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| prog_err(ProgramError::NotLoaded))?;
            let tp: &mut TracePoint = program.try_into().map_err(prog_err)?;
            tp.load().map_err(prog_err)?;
            let id = tp.attach(category, event).map_err(prog_err)?;
            let link: FdLink = tp
                .take_link(id)
                .map_err(prog_err)?
                .try_into()
                .map_err(link_err)?;
            let pin = self.pins.cgroup_link(name);
            replace_pin(link, &pin)?;
            self.attached.push(pin);
        }
        Ok(())
    }

    /// Attaches the XDP filter to `iface`: native mode, else generic mode
    /// with a warning. A link pinned by a previous instance is updated in
    /// place (atomic program replacement). Returns the mode used.
    pub fn attach_xdp(&mut self, iface: &str) -> Result<&'static str, DatapathError> {
        let name = programs::XDP;
        let prog_err = program_error(name);
        let link_err = link_error(name);
        let pin = self.pins.xdp_link(iface);
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| prog_err(ProgramError::NotLoaded))?;
        let xdp: &mut Xdp = program.try_into().map_err(prog_err)?;
        let mode = if pin.exists() {
            let old: FdLink = PinnedLink::from_pin(&pin).map_err(link_err)?.into();
            let old = XdpLink::try_from(old).map_err(link_err)?;
            let id = xdp.attach_to_link(old).map_err(prog_err)?;
            // Still pinned: closing our fd leaves it attached.
            drop(xdp.take_link(id).map_err(prog_err)?);
            "replaced in place"
        } else {
            let (id, mode) = match xdp.attach(iface, XdpMode::Driver) {
                Ok(id) => (id, "native"),
                Err(native) => {
                    warn!(
                        iface,
                        error = %native,
                        "native XDP is not available; falling back to generic (skb) mode, \
                         which drops later in the stack and costs more per frame"
                    );
                    let id =
                        xdp.attach(iface, XdpMode::Skb)
                            .map_err(|source| DatapathError::Xdp {
                                iface: iface.to_owned(),
                                native: Box::new(native),
                                source: Box::new(source),
                            })?;
                    (id, "generic")
                }
            };
            let link: FdLink = xdp
                .take_link(id)
                .map_err(prog_err)?
                .try_into()
                .map_err(link_err)?;
            link.pin(&pin).map_err(|e| DatapathError::Pin {
                path: pin.clone(),
                source: io::Error::other(e),
            })?;
            mode
        };
        info!(iface, mode, "XDP filter attached");
        self.attached.push(pin);
        Ok(mode)
    }

    /// Removes link pins this instance did not make or keep (hooks or
    /// interfaces a previous run had and this one does not), detaching them.
    /// Call after every attach, so nothing is dropped before its successor is in.
    pub fn prune(&self) -> Result<Vec<PathBuf>, DatapathError> {
        let dir = self.pins.links_dir();
        let mut removed = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|source| DatapathError::Pin {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if !self.attached.contains(&path) {
                std::fs::remove_file(&path).map_err(|source| DatapathError::Pin {
                    path: path.clone(),
                    source,
                })?;
                info!(pin = %path.display(), "removed a link this instance does not use");
                removed.push(path);
            }
        }
        Ok(removed)
    }
}

/// Checks that every interface exists (in this network namespace) before
/// anything is loaded or attached, so a mistyped name fails whole instead
/// of after the cgroup programs were attached.
pub fn check_xdp_ifaces(ifaces: &[String]) -> Result<(), DatapathError> {
    for iface in ifaces {
        let no_such = |source| DatapathError::NoSuchInterface {
            iface: iface.clone(),
            source,
        };
        let name = std::ffi::CString::new(iface.as_bytes())
            .map_err(|_| no_such(io::Error::from(io::ErrorKind::InvalidInput)))?;
        // SAFETY: a valid C string for the call's duration.
        if unsafe { libc::if_nametoindex(name.as_ptr()) } == 0 {
            return Err(no_such(io::Error::last_os_error()));
        }
    }
    Ok(())
}

pub(super) fn program_error(
    program: &'static str,
) -> impl Fn(ProgramError) -> DatapathError + Copy {
    move |source| DatapathError::Program {
        program,
        source: Box::new(source),
    }
}

pub(super) fn link_error(program: &'static str) -> impl Fn(LinkError) -> DatapathError + Copy {
    move |source| DatapathError::Link { program, source }
}

fn static_name(name: &str) -> &'static str {
    [
        programs::CONNECT4,
        programs::CONNECT6,
        programs::SENDMSG4,
        programs::SENDMSG6,
        programs::SKB_EGRESS,
        programs::SOCK_CREATE,
        programs::XDP,
        programs::EXEC_ARGV,
        programs::EXECVEAT_ARGV,
        programs::PROCESS_EXEC,
        programs::PROCESS_FORK,
        programs::PROCESS_EXIT,
        programs::SNI_SOCKOPS,
        programs::SNI_MSG,
        programs::CONNECT_UNIX,
        programs::SENDMSG_UNIX,
    ]
    .into_iter()
    .find(|p| *p == name)
    .unwrap_or("<unknown program>")
}

/// Pins `link` at `path`, atomically taking the place of any link pinned
/// there before (which is then released and detaches).
fn replace_pin(link: FdLink, path: &Path) -> Result<(), DatapathError> {
    let mut pinned = None;
    replace_pin_with(path, |staging| {
        pinned = Some(link.pin(staging).map_err(io::Error::other)?);
        Ok(())
    })?;
    drop(pinned);
    Ok(())
}

/// Pins through `pin` at a staging path, then renames it over `path`.
fn replace_pin_with(
    path: &Path,
    pin: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<(), DatapathError> {
    // bpffs refuses names with a '.', hence no "x.new".
    let mut staging = path.as_os_str().to_owned();
    staging.push("-staging");
    let staging = PathBuf::from(staging);
    let _ = std::fs::remove_file(&staging);
    pin(&staging).map_err(|source| DatapathError::Pin {
        path: staging.clone(),
        source,
    })?;
    std::fs::rename(&staging, path).map_err(|source| DatapathError::Pin {
        path: path.to_owned(),
        source,
    })?;
    Ok(())
}

/// Removes the pins of maps this build no longer has (`maps::RETIRED`).
/// Safe at any time: programs still running from a previous instance hold
/// their own references to those maps; the pin was the last one after.
fn remove_retired(pins: &Pins) -> Result<(), DatapathError> {
    for name in maps::RETIRED {
        let path = pins.map(name);
        match std::fs::remove_file(&path) {
            Ok(()) => info!(pin = %path.display(), "removed the pin of a retired map"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(DatapathError::Pin { path, source }),
        }
    }
    Ok(())
}

/// What `detach` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DetachReport {
    pub links: usize,
    pub maps: usize,
}

/// Removes the enforcement of the instance pinned under `pins`: every link
/// (the programs detach), then every map, then the directories.
pub fn detach(pins: &Pins) -> Result<DetachReport, DatapathError> {
    let mut report = DetachReport::default();
    for (dir, count) in [
        (pins.links_dir(), &mut report.links),
        (pins.maps_dir(), &mut report.maps),
    ] {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(DatapathError::Pin { path: dir, source }),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|source| DatapathError::Pin {
                path: path.clone(),
                source,
            })?;
            *count += 1;
        }
        std::fs::remove_dir(&dir).map_err(|source| DatapathError::Pin { path: dir, source })?;
    }
    match std::fs::remove_dir(pins.root()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(DatapathError::Pin {
                path: pins.root().to_owned(),
                source,
            });
        }
    }
    Ok(report)
}

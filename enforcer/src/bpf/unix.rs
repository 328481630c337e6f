//! The Unix-domain programs (`connect_unix`, `sendmsg_unix`), loaded and
//! attached without aya's program types: aya 0.14 knows no Unix attach
//! type (BPF_CGROUP_UNIX_CONNECT/SENDMSG, kernel 6.7+), and the kernel
//! fixes a program's attach type when it is loaded.
//!
//! The object is parsed a second time with aya's own parser (aya-obj),
//! its map references are pointed at the maps the main load made (the
//! pinned ones by their pins, `.rodata` through aya's handle),
//! and the two programs are loaded with raw `BPF_PROG_LOAD` and attached
//! with `BPF_LINK_CREATE`. A kernel without these attach types refuses the
//! load before verifying (no verifier log): containment then does not
//! reach Unix-domain sockets, which the daemon says (`Unavailable`).

use std::{
    collections::{HashMap, HashSet},
    ffi::CString,
    io,
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    path::Path,
};

use aya::{Ebpf, maps::MapData};
use enforcer_common::{
    agents::{UNIX_UADDR_OFFSET as UADDR_OFFSET, UNIX_UADDRLEN_OFFSET as UADDRLEN_OFFSET},
    maps as names, programs,
};

use super::{pins::Pins, syscall::bpf};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
const BPF_CGROUP_UNIX_CONNECT: u32 = 49;
const BPF_CGROUP_UNIX_SENDMSG: u32 = 50;
/// Enough for the verifier's report on these small programs.
const LOG_BYTES: usize = 1 << 20;

/// The programs this module loads, with their attach types.
pub const PROGRAMS: [(&str, u32); 2] = [
    (programs::CONNECT_UNIX, BPF_CGROUP_UNIX_CONNECT),
    (programs::SENDMSG_UNIX, BPF_CGROUP_UNIX_SENDMSG),
];

/// Why the Unix-domain programs are not in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error(
        "this kernel has no connect_unix/sendmsg_unix hooks (Linux 6.7+): contained \
         processes' Unix-domain connections are not judged"
    )]
    Kernel,
    #[error(
        "this kernel's struct bpf_sock_addr_kern is not the layout the Unix-domain programs \
         read (uaddr at {UADDR_OFFSET}, uaddrlen at {UADDRLEN_OFFSET}; BTF says {0}): \
         contained processes' Unix-domain connections are not judged"
    )]
    Layout(String),
    #[error("the Unix-domain programs could not be loaded: {0}")]
    Load(String),
}

/// Whether this kernel takes the Unix attach types at all: a program of
/// two instructions (`r0 = 1; exit`) loaded with the connect one.
fn probe_kernel() -> Result<(), Unavailable> {
    let insns = [
        aya_obj::generated::bpf_insn {
            code: 0xb7, // BPF_ALU64 | BPF_MOV | BPF_K
            _bitfield_align_1: [],
            _bitfield_1: aya_obj::generated::bpf_insn::new_bitfield_1(0, 0),
            off: 0,
            imm: 1,
        },
        aya_obj::generated::bpf_insn {
            code: 0x95, // BPF_JMP | BPF_EXIT
            _bitfield_align_1: [],
            _bitfield_1: aya_obj::generated::bpf_insn::new_bitfield_1(0, 0),
            off: 0,
            imm: 0,
        },
    ];
    match prog_load("unix_probe", &insns, BPF_CGROUP_UNIX_CONNECT) {
        Ok(_) => Ok(()),
        // An attach type the kernel does not know. Anything else (an LSM's
        // EPERM, ENOMEM) is not a kernel without the hooks: an error.
        Err((errno, _)) if errno == libc::EINVAL => Err(Unavailable::Kernel),
        Err((_, e)) => Err(Unavailable::Load(e)),
    }
}

/// The layout check against the kernel's BTF (skipped without BTF).
fn check_layout() -> Result<(), Unavailable> {
    let Some(btf) = crate::sys::btf::Structs::kernel() else {
        return Ok(());
    };
    let found = (
        btf.offset("bpf_sock_addr_kern", "uaddr"),
        btf.offset("bpf_sock_addr_kern", "uaddrlen"),
    );
    match found {
        (Some(UADDR_OFFSET), Some(UADDRLEN_OFFSET)) => Ok(()),
        (a, l) => Err(Unavailable::Layout(format!("uaddr {a:?}, uaddrlen {l:?}"))),
    }
}

/// The two loaded programs, by name.
#[derive(Debug)]
pub struct UnixPrograms {
    progs: Vec<(&'static str, u32, OwnedFd)>,
}

impl UnixPrograms {
    /// Loads both programs of `object` with their maps taken from `ebpf`
    /// (already loaded, its maps pinned under `pins`). The object is parsed
    /// again here, on the calling thread: in a thread of its own, the
    /// parse's memory stayed resident in that thread's malloc arena.
    pub fn load(object: &[u8], ebpf: &Ebpf, pins: &Pins) -> Result<UnixPrograms, Unavailable> {
        let load_err = |e: String| Unavailable::Load(e);
        probe_kernel()?;
        check_layout()?;
        let mut obj = aya_obj::Object::parse(object).map_err(|e| load_err(e.to_string()))?;
        let fds = map_fds(&obj, ebpf, pins).map_err(load_err)?;
        let text_sections: HashSet<usize> = obj.functions.keys().map(|(s, _)| *s).collect();
        let maps: Vec<(String, RawFd, aya_obj::Map)> = obj
            .maps
            .iter()
            .map(|(name, m)| (name.clone(), fds[name].as_raw_fd(), m.clone()))
            .collect();
        obj.relocate_maps(
            maps.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)),
            &text_sections,
        )
        .map_err(|e| load_err(e.to_string()))?;
        obj.relocate_calls(&text_sections)
            .map_err(|e| load_err(e.to_string()))?;
        let mut progs = Vec::new();
        for (name, attach_type) in PROGRAMS {
            let program = obj
                .programs
                .get(name)
                .ok_or_else(|| load_err(format!("the object has no program {name}")))?;
            let function = &obj.functions[&program.function_key()];
            let fd = prog_load(name, &function.instructions, attach_type)
                .map_err(|(_, e)| Unavailable::Load(e))?;
            progs.push((name, attach_type, fd));
        }
        Ok(UnixPrograms { progs })
    }

    /// The kernel's id of program `name` (for its run statistics).
    pub fn id(&self, name: &str) -> Option<u32> {
        let (_, _, fd) = self.progs.iter().find(|(n, _, _)| *n == name)?;
        // `bpf_prog_info` begins with `type`, then `id`; the kernel fills
        // what fits `info_len`.
        let mut info = [0u32; 2];
        let mut attr: [u32; 4] = [fd.as_raw_fd() as u32, 8, 0, 0];
        let ptr = info.as_mut_ptr() as u64;
        attr[2] = ptr as u32;
        attr[3] = (ptr >> 32) as u32;
        // SAFETY: `info` (bpf_fd, info_len, info) points to `info`, live
        // for the call; the kernel writes `info_len` bytes there.
        unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }.ok()?;
        Some(info[1])
    }

    /// Attaches program `name` to `cgroup`; returns the link.
    pub fn link(&self, name: &str, cgroup: &std::fs::File) -> io::Result<OwnedFd> {
        let (_, attach_type, fd) = self
            .progs
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| io::Error::other(format!("{name}: not a Unix-domain program")))?;
        link_create(fd.as_raw_fd(), cgroup.as_raw_fd(), *attach_type)
            .map_err(|e| io::Error::new(e.kind(), format!("{name}: BPF_LINK_CREATE: {e}")))
    }
}

/// An fd for every map the object defines: the pinned ones from their
/// pins, the others (`.rodata`, an array) from `ebpf`.
fn map_fds(
    obj: &aya_obj::Object,
    ebpf: &Ebpf,
    pins: &Pins,
) -> Result<HashMap<String, OwnedFd>, String> {
    let mut fds = HashMap::new();
    for name in obj.maps.keys() {
        let fd = if names::ALL.contains(&name.as_str()) {
            let path = pins.map(name);
            let data = MapData::from_pin(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            data.fd().as_fd().try_clone_to_owned()
        } else {
            match ebpf.map(name) {
                Some(aya::maps::Map::Array(data)) => data.fd().as_fd().try_clone_to_owned(),
                Some(_) => return Err(format!("map {name}: not an array, not pinned")),
                None => return Err(format!("map {name} was not loaded")),
            }
        }
        .map_err(|e| format!("{name}: {e}"))?;
        fds.insert(name.clone(), fd);
    }
    Ok(fds)
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type` (the
/// kernel takes a shorter attribute and zeroes the rest).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

fn prog_load(
    name: &str,
    insns: &[aya_obj::generated::bpf_insn],
    attach_type: u32,
) -> Result<OwnedFd, (i32, String)> {
    let license = c"GPL";
    let mut prog_name = [0u8; 16];
    for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name,
            expected_attach_type: attach_type,
            ..ProgLoadAttr::default()
        };
        if let Some(log) = log {
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        // SAFETY: `prog_load`'s member; the instructions, license and log
        // it points to live for the call.
        unsafe { bpf(BPF_PROG_LOAD, &mut attr) }
    };
    match attempt(None) {
        // SAFETY: a new fd the kernel just returned, owned by nobody else.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(first) => {
            // Again, for the verifier's report.
            let mut log = vec![0u8; LOG_BYTES];
            let again = attempt(Some(&mut log));
            if let Ok(fd) = again {
                // SAFETY: as above.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            let end = log.iter().position(|&b| b == 0).unwrap_or(0);
            let report = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = report.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err((
                first.raw_os_error().unwrap_or(0),
                format!(
                    "{name}: BPF_PROG_LOAD: {first}; verifier: {}",
                    tail.join(" | ")
                ),
            ))
        }
    }
}

/// `link_create` of `union bpf_attr`: prog_fd, target_fd, attach_type, flags.
fn link_create(prog: RawFd, target: RawFd, attach_type: u32) -> io::Result<OwnedFd> {
    let mut attr: [u32; 8] = [prog as u32, target as u32, attach_type, 0, 0, 0, 0, 0];
    // SAFETY: `link_create`'s member; no pointers.
    let fd = unsafe { bpf(BPF_LINK_CREATE, &mut attr) }?;
    // SAFETY: a new fd the kernel just returned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Pins the object `fd` at `path` (BPF_OBJ_PIN).
pub fn pin_fd(fd: &OwnedFd, path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // pathname (u64), bpf_fd (u32), file_flags (u32), path_fd (u32), pad.
    #[repr(C)]
    struct PinAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: u32,
        pad: u32,
    }
    let mut attr = PinAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        file_flags: 0,
        path_fd: 0,
        pad: 0,
    };
    // SAFETY: `obj_pin`'s member; the path it points to lives for the call.
    unsafe { bpf(BPF_OBJ_PIN, &mut attr) }.map(|_| ())
}

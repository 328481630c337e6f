//! What the kernel accepts, found by loading, never by attaching: the
//! embedded object with unpinned maps and each of its programs through the
//! verifier, minimal programs of each type (aya's probes), and minimal
//! BPF LSM and fentry programs. Everything is closed before returning.

use std::{ffi::CStr, io, mem};

use aya::{EbpfLoader, maps::MapType, programs::ProgramType};
use aya_obj::{
    btf::{Btf, BtfKind},
    generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_insn, bpf_map_type, bpf_prog_type},
};

use super::{DatapathError, object::object};

/// One program of the object through the verifier.
#[derive(Debug)]
pub struct ProgramLoad {
    pub name: String,
    pub program_type: ProgramType,
    /// The loader's or the verifier's refusal.
    pub error: Option<String>,
}

/// Loads the embedded object with fresh, unpinned maps and every program
/// in it, as the daemon does, and drops them. Errs when the object itself
/// (its maps, its BTF) does not load.
pub fn object_programs() -> Result<Vec<ProgramLoad>, DatapathError> {
    let object = object().ok_or(DatapathError::NoObject)?;
    let mut ebpf = EbpfLoader::new()
        .load(object)
        .map_err(|e| DatapathError::Object(format!("loading with unpinned maps: {e}")))?;
    let mut loads = Vec::new();
    for (name, program) in ebpf.programs_mut() {
        use aya::programs::Program as P;
        let result = match program {
            P::CgroupSockAddr(p) => p.load(),
            P::CgroupSkb(p) => p.load(),
            P::CgroupSock(p) => p.load(),
            P::Xdp(p) => p.load(),
            P::TracePoint(p) => p.load(),
            P::SockOps(p) => p.load(),
            P::SkMsg(p) => p.load(),
            other => {
                loads.push(ProgramLoad {
                    name: name.to_owned(),
                    program_type: other.prog_type(),
                    error: Some("a program type this probe does not load".into()),
                });
                continue;
            }
        };
        loads.push(ProgramLoad {
            name: name.to_owned(),
            program_type: program.prog_type(),
            error: result.err().map(|e| error_chain(&e)),
        });
    }
    loads.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(loads)
}

/// The map types the object defines, each once, with a map using it.
pub fn object_map_types() -> Result<Vec<(MapType, String)>, DatapathError> {
    let object = object().ok_or(DatapathError::NoObject)?;
    let parsed =
        aya_obj::Object::parse(object).map_err(|e| DatapathError::Object(e.to_string()))?;
    let mut types: Vec<(MapType, String)> = Vec::new();
    let mut names: Vec<&String> = parsed.maps.keys().collect();
    // The object's own maps name a type better than the loader's
    // sections (.rodata, .bss).
    names.sort_by_key(|n| (n.starts_with('.'), n.as_str()));
    for name in names {
        let raw = parsed.maps[name].map_type();
        let t = bpf_map_type::try_from(raw)
            .ok()
            .and_then(|t| MapType::try_from(t).ok())
            .ok_or_else(|| DatapathError::Object(format!("map {name}: unknown type {raw}")))?;
        if !types.iter().any(|(known, _)| *known == t) {
            types.push((t, name.clone()));
        }
    }
    Ok(types)
}

/// Whether a minimal program of `t` loads (aya's probe; for the types the
/// daemon uses it only loads).
pub fn program_type(t: ProgramType) -> Result<bool, String> {
    aya::sys::is_program_supported(t).map_err(|e| error_chain(&e))
}

/// Whether programs of type `t` may call `helper` (aya's probe, which
/// loads a program calling it).
pub fn helper(t: ProgramType, helper: aya::sys::BpfHelper) -> Result<bool, String> {
    aya::sys::is_helper_supported(t, helper).map_err(|e| error_chain(&e))
}

/// Whether a minimal map of `t` can be created.
pub fn map_type(t: MapType) -> Result<bool, String> {
    aya::sys::is_map_supported(t).map_err(|e| error_chain(&e))
}

/// Programs that need a kernel function from BTF to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BtfProgram {
    /// BPF LSM on the `bpf` hook (`bpf_lsm_bpf`).
    Lsm,
    /// fentry on the kernel's own test function `bpf_fentry_test1`.
    Fentry,
}

/// Loads (and closes) `r0 = 0; exit` as `kind`. Attaching is not tried:
/// a loaded LSM program does nothing until attached, and whether the `bpf`
/// LSM is active is a separate question (the kernel's LSM list).
pub fn btf_program(kind: BtfProgram) -> Result<(), String> {
    let (prog_type, attach, func) = match kind {
        BtfProgram::Lsm => (
            bpf_prog_type::BPF_PROG_TYPE_LSM,
            bpf_attach_type::BPF_LSM_MAC,
            "bpf_lsm_bpf",
        ),
        BtfProgram::Fentry => (
            bpf_prog_type::BPF_PROG_TYPE_TRACING,
            bpf_attach_type::BPF_TRACE_FENTRY,
            "bpf_fentry_test1",
        ),
    };
    let btf = Btf::from_sys_fs().map_err(|e| format!("reading the kernel's BTF: {e}"))?;
    let id = btf
        .id_by_type_name_kind(func, BtfKind::Func)
        .map_err(|_| format!("the kernel's BTF has no function {func}"))?;
    // SAFETY: all-zero is a valid bpf_insn and bpf_attr.
    let mut insns: [bpf_insn; 2] = unsafe { mem::zeroed() };
    insns[0].code = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K: r0 = imm (0)
    insns[1].code = 0x95; // BPF_JMP | BPF_EXIT
    let mut log = vec![0u8; 4096];
    let mut attr: bpf_attr = unsafe { mem::zeroed() };
    // SAFETY: the union's program-load member, which this command reads.
    let u = unsafe { &mut attr.__bindgen_anon_3 };
    u.prog_type = prog_type as u32;
    u.insn_cnt = insns.len() as u32;
    u.insns = insns.as_ptr() as u64;
    u.license = c"GPL".as_ptr() as u64;
    u.expected_attach_type = attach as u32;
    u.attach_btf_id = id;
    u.log_level = 1;
    u.log_size = log.len() as u32;
    u.log_buf = log.as_mut_ptr() as u64;
    // SAFETY: attr and every buffer it points to outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_PROG_LOAD as libc::c_long,
            &attr as *const bpf_attr,
            mem::size_of::<bpf_attr>() as libc::c_long,
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        let verifier = CStr::from_bytes_until_nul(&log)
            .map(|s| s.to_string_lossy().trim().to_owned())
            .unwrap_or_default();
        return Err(if verifier.is_empty() {
            format!("the kernel refused to load it: {err}")
        } else {
            format!("the kernel refused to load it: {err}: {verifier}")
        });
    }
    // SAFETY: a descriptor the kernel just gave us.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// The LSMs the kernel runs (securityfs), if it can be read.
pub fn active_lsms() -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/sys/kernel/security/lsm").ok()?;
    Some(
        text.trim()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let c = s.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = s.source();
    }
    text
}

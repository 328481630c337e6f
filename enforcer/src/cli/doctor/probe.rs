//! The program and map types the daemon needs, its own programs through
//! the verifier, and BPF LSM and fentry for future hardening. The kernel
//! work is in `bpf::probe`; here its answers become checks.

use aya::{maps::MapType, programs::ProgramType};

use super::{Check, Status};
use crate::bpf::probe::{self, BtfProgram, ProgramLoad};

/// (type, check name, what the daemon uses it for, status if refused)
const PROGRAM_TYPES: [(ProgramType, &str, &str, Status); 7] = [
    (
        ProgramType::CgroupSockAddr,
        "prog:cgroup_sock_addr",
        "connect4/6 and sendmsg4/6: connects and sends refused with EPERM",
        Status::Fail,
    ),
    (
        ProgramType::CgroupSkb,
        "prog:cgroup_skb",
        "skb_egress (packets to banned addresses dropped) and dns_ingress (DNS answers learned)",
        Status::Fail,
    ),
    (
        ProgramType::CgroupSock,
        "prog:cgroup_sock",
        "sock_create: the process owning each socket",
        Status::Fail,
    ),
    (
        ProgramType::Xdp,
        "prog:xdp",
        "xdp_filter on --xdp-iface interfaces (loaded at every start)",
        Status::Fail,
    ),
    (
        ProgramType::SockOps,
        "prog:sock_ops",
        "sni_sockops: connections to shared names' addresses put under inspection",
        Status::Fail,
    ),
    (
        ProgramType::SkMsg,
        "prog:sk_msg",
        "sni_msg: the first write of such a connection judged by its name (TLS server_name, Host)",
        Status::Fail,
    ),
    (
        ProgramType::TracePoint,
        "prog:tracepoint",
        "exec tracking: the executable behind short-lived processes (optional)",
        Status::Warn,
    ),
];

pub fn all(root: bool) -> Vec<Check> {
    if !root {
        return vec![
            Check::new(
                "bpf",
                Status::Warn,
                "not run as root: the kernel lets only root (CAP_BPF) load programs, so no \
                 program or map type was probed",
            )
            .fix("run `sudo enforcer doctor`"),
        ];
    }
    let mut checks: Vec<Check> = PROGRAM_TYPES
        .iter()
        .map(|&(t, name, what, refused)| program_type(name, what, refused, probe::program_type(t)))
        .collect();
    checks.push(program_type(
        "helper:bpf_loop",
        "dns_ingress, which walks DNS answers with bpf_loop (Linux 5.17+)",
        Status::Fail,
        probe::helper(ProgramType::CgroupSkb, aya::sys::BpfHelper::BPF_FUNC_loop),
    ));
    match probe::object_map_types() {
        Ok(types) => checks.extend(
            types
                .into_iter()
                .map(|(t, example)| map_type(t, &example, probe::map_type(t))),
        ),
        Err(e) => checks.push(Check::new("maps", Status::Fail, e.to_string())),
    }
    checks.extend(object(probe::object_programs()));
    checks.push(lsm(
        probe::btf_program(BtfProgram::Lsm),
        probe::active_lsms(),
    ));
    checks.push(fentry(probe::btf_program(BtfProgram::Fentry)));
    checks
}

fn program_type(name: &str, what: &str, refused: Status, r: Result<bool, String>) -> Check {
    match r {
        Ok(true) => Check::ok(name, format!("supported; needed for {what}")),
        Ok(false) => Check::new(
            name,
            refused,
            format!("this kernel does not support it, needed for {what}"),
        )
        .fix("use a kernel with CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF (Linux 5.17+)"),
        Err(e) => Check::new(name, refused, format!("probing failed: {e}")),
    }
}

/// `LpmTrie` → `lpm_trie`.
fn snake(t: MapType) -> String {
    let mut out = String::new();
    for (i, c) in format!("{t:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn map_type(t: MapType, example: &str, r: Result<bool, String>) -> Check {
    let name = format!("map:{}", snake(t));
    match r {
        Ok(true) => Check::ok(name, format!("can be created (used by {example})")),
        Ok(false) => Check::new(
            name,
            Status::Fail,
            format!("this kernel cannot create this map type, used by {example}"),
        )
        .fix("use Linux 5.17 or later"),
        Err(e) => Check::new(name, Status::Fail, format!("probing failed: {e}")),
    }
}

/// One check per program of the embedded object.
pub fn object(r: Result<Vec<ProgramLoad>, crate::bpf::DatapathError>) -> Vec<Check> {
    let loads = match r {
        Ok(loads) => loads,
        Err(e) => {
            return vec![
                Check::new("load", Status::Fail, e.to_string())
                    .fix("the prog: and map: checks above name what this kernel lacks"),
            ];
        }
    };
    loads
        .into_iter()
        .map(|l| {
            let name = format!("load:{}", l.name);
            // Exec tracking is optional; enforcement is not.
            let refused = if l.program_type == ProgramType::TracePoint {
                Status::Warn
            } else {
                Status::Fail
            };
            match l.error {
                None => Check::ok(
                    name,
                    format!(
                        "the daemon's {:?} program passes the verifier",
                        l.program_type
                    ),
                ),
                Some(e) => Check::new(name, refused, format!("the verifier refused it: {e}"))
                    .fix("report it with this output and `uname -r`"),
            }
        })
        .collect()
}

const FUTURE: &str = "future hardening (process identity at exec, tamper protection) needs it; \
                      enforcement does not";

pub fn lsm(load: Result<(), String>, active: Option<Vec<String>>) -> Check {
    match (load, active) {
        (Ok(()), Some(list)) if list.iter().any(|l| l == "bpf") => Check::ok(
            "bpf-lsm",
            format!(
                "BPF LSM programs load and bpf is an active LSM ({})",
                list.join(",")
            ),
        ),
        (Ok(()), Some(list)) => Check::new(
            "bpf-lsm",
            Status::Info,
            format!(
                "not available: BPF LSM programs load but bpf is not an active LSM ({}); {FUTURE}",
                list.join(",")
            ),
        )
        .fix("add bpf to the kernel's lsm= boot parameter"),
        (Ok(()), None) => Check::new(
            "bpf-lsm",
            Status::Info,
            format!(
                "BPF LSM programs load, but whether bpf is an active LSM is unknown \
                 (/sys/kernel/security/lsm is not readable); {FUTURE}"
            ),
        )
        .fix("mount securityfs (`mount -t securityfs securityfs /sys/kernel/security`) to see"),
        (Err(e), _) => Check::new(
            "bpf-lsm",
            Status::Info,
            format!("not available: {e}; {FUTURE}"),
        )
        .fix("a kernel with CONFIG_BPF_LSM=y and bpf in lsm="),
    }
}

pub fn fentry(load: Result<(), String>) -> Check {
    match load {
        Ok(()) => Check::ok("fentry", "fentry programs load (attaching was not tried)"),
        Err(e) => Check::new(
            "fentry",
            Status::Info,
            format!("not available: {e}; {FUTURE}"),
        )
        .fix("a kernel with CONFIG_DEBUG_INFO_BTF and BPF trampolines (x86-64, or arm64 6.4+)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_types_read_in_snake_case() {
        assert_eq!(snake(MapType::LpmTrie), "lpm_trie");
        assert_eq!(snake(MapType::RingBuf), "ring_buf");
        assert_eq!(snake(MapType::Hash), "hash");
    }

    #[test]
    fn lsm_and_fentry_never_fail() {
        let refused = || Err("the kernel refused to load it: EINVAL".to_owned());
        assert_eq!(lsm(refused(), None).status, Status::Info);
        assert!(lsm(refused(), None).detail.starts_with("not available"));
        assert_eq!(fentry(refused()).status, Status::Info);
        let inactive = lsm(Ok(()), Some(vec!["lockdown".into(), "yama".into()]));
        assert_eq!(inactive.status, Status::Info);
        assert!(inactive.fix.unwrap().contains("lsm="));
        assert_eq!(
            lsm(Ok(()), Some(vec!["yama".into(), "bpf".into()])).status,
            Status::Ok
        );
    }

    #[test]
    fn an_unsupported_essential_type_fails_and_tracepoints_only_warn() {
        assert_eq!(
            program_type("prog:xdp", "x", Status::Fail, Ok(false)).status,
            Status::Fail
        );
        assert_eq!(
            program_type("prog:tracepoint", "x", Status::Warn, Ok(false)).status,
            Status::Warn
        );
        assert_eq!(
            program_type("prog:xdp", "x", Status::Fail, Ok(true)).status,
            Status::Ok
        );
    }
}

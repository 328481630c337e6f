//! `enforcer doctor`: can this host run the enforcer, and is it running?
//!
//! Each check is a pure function over what was read from the host (file
//! texts, a uname, a listing), so that the judgement is unit-tested without
//! root; the reading and the kernel probes stay thin.
//!
//! # Layout
//! - here: the check model, the order of checks, printing, exit code;
//! - `kernel`: kernel version, BTF, memlock, cgroup2, bpffs;
//! - `probe`: program and map types, the daemon's own programs, LSM/fentry;
//! - `xdp`: native XDP per interface (the kernel's netdev netlink family);
//! - `instance`: the pinned instance and the service;
//! - `dns`: resolv.conf, nsswitch, systemd-resolved;
//! - `forwarder`: the local process serving a loopback nameserver.

mod dns;
mod forwarder;
mod instance;
mod kernel;
mod probe;
mod xdp;

use std::{path::PathBuf, process::ExitCode};

use serde::Serialize;

use super::DEFAULT_SOCKET;
use crate::bpf::pins::DEFAULT_BPFFS_DIR;

/// Exit codes: the worst status found.
pub const EXIT_OK: u8 = 0;
pub const EXIT_WARN: u8 = 1;
pub const EXIT_FAIL: u8 = 2;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The instance's bpffs pin directory.
    #[arg(long, default_value = DEFAULT_BPFFS_DIR)]
    pub bpffs: PathBuf,
    /// The daemon's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Also check native XDP support of this interface (repeatable).
    #[arg(long, value_name = "IFACE")]
    pub iface: Vec<String>,
    /// The resolver configuration whose DNS visibility is judged.
    #[arg(long, value_name = "PATH", default_value = crate::resolve::dns::RESOLV_CONF)]
    pub resolv_conf: PathBuf,
    /// {"checks":[{"name","status","detail","fix"}],"worst"}.
    #[arg(long)]
    pub json: bool,
}

/// Ordered: `info` says something worth knowing that needs no action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Info,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Info => "info",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to do; `None` when nothing needs doing.
    pub fix: Option<String>,
}

impl Check {
    pub fn new(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, detail)
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

/// The worst status of `checks` (`Ok` for none).
pub fn worst(checks: &[Check]) -> Status {
    checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok)
}

/// 0: everything ok (info included); 1: a warning; 2: a failure.
pub fn exit_code(worst: Status) -> u8 {
    match worst {
        Status::Ok | Status::Info => EXIT_OK,
        Status::Warn => EXIT_WARN,
        Status::Fail => EXIT_FAIL,
    }
}

/// Every check, in the order a reader fixes things: what the kernel
/// offers, then the instance, then DNS, then the service.
pub fn checks(args: &DoctorArgs) -> Vec<Check> {
    let mut checks = Vec::new();
    let kernel = kernel::Kernel::read();
    checks.push(kernel::version(&kernel.release));
    checks.push(kernel::btf(kernel.btf));
    checks.extend(kernel::cgroup2(kernel.mountinfo.as_deref()));
    checks.extend(kernel::mixed_mode(
        kernel::parse_release(&kernel.release),
        kernel.mountinfo.as_deref(),
    ));
    checks.push(kernel::bpffs(&args.bpffs));
    checks.push(kernel::memlock(
        kernel::parse_release(&kernel.release),
        kernel.memlock,
    ));
    checks.extend(probe::all(super::is_root()));
    for iface in &args.iface {
        checks.push(xdp::check(iface));
    }
    checks.extend(instance::pins(&args.bpffs));
    checks.extend(dns::all(&args.resolv_conf));
    checks.extend(instance::service(&args.socket));
    checks
}

pub fn run(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let checks = checks(args);
    let worst = worst(&checks);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"checks": checks, "worst": worst}))?
        );
    } else {
        print!("{}", render(&checks, worst));
    }
    Ok(ExitCode::from(exit_code(worst)))
}

/// One line per check, its fix indented below it, and a closing verdict.
pub fn render(checks: &[Check], worst: Status) -> String {
    use std::fmt::Write as _;
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut o = String::new();
    for c in checks {
        let _ = writeln!(
            o,
            "{:<4}  {:<width$}  {}",
            c.status.label(),
            c.name,
            c.detail
        );
        if let Some(fix) = &c.fix {
            let _ = writeln!(o, "      {:<width$}  -> {fix}", "");
        }
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    let _ = writeln!(
        o,
        "\n{} checks: {} ok, {} info, {} warn, {} failed (worst: {})",
        checks.len(),
        count(Status::Ok),
        count(Status::Info),
        count(Status::Warn),
        count(Status::Fail),
        worst.label()
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_status_decides_the_exit_code() {
        let c = |s| Check::new("x", s, "");
        assert_eq!(worst(&[]), Status::Ok);
        assert_eq!(worst(&[c(Status::Ok), c(Status::Info)]), Status::Info);
        assert_eq!(exit_code(worst(&[c(Status::Ok), c(Status::Info)])), 0);
        assert_eq!(exit_code(worst(&[c(Status::Warn), c(Status::Info)])), 1);
        assert_eq!(
            exit_code(worst(&[c(Status::Warn), c(Status::Fail), c(Status::Ok)])),
            2
        );
    }

    #[test]
    fn checks_serialise_with_lowercase_status_and_a_null_fix() {
        let v =
            serde_json::to_value(Check::new("kernel", Status::Warn, "old").fix("upgrade")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "kernel", "status": "warn", "detail": "old", "fix": "upgrade"})
        );
        let v = serde_json::to_value(Check::ok("btf", "present")).unwrap();
        assert_eq!(v["fix"], serde_json::Value::Null);
    }

    #[test]
    fn the_text_form_puts_each_fix_under_its_check() {
        let checks = [
            Check::ok("kernel", "6.1"),
            Check::new("bpffs", Status::Fail, "missing").fix("mount it"),
        ];
        let text = render(&checks, worst(&checks));
        assert!(text.contains("ok    kernel  6.1\n"), "{text}");
        assert!(text.contains("FAIL  bpffs   missing\n"), "{text}");
        assert!(text.contains("-> mount it\n"), "{text}");
        assert!(text.contains("2 checks: 1 ok, 0 info, 0 warn, 1 failed (worst: FAIL)"));
    }
}

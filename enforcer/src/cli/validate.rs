//! `enforcer policy validate`: each file checked as the daemon would check
//! it, warnings included; `--strict` turns warnings into an exit code, so
//! config management can refuse a dangerous policy before it ships.

use std::{path::PathBuf, process::ExitCode};

use crate::policy::{Policy, PolicyError};

/// Every file is valid (and, with --strict, has no warning).
pub const VALID: u8 = 0;
/// A file is invalid.
pub const INVALID: u8 = 1;
/// --strict: every file is valid, but one has warnings.
pub const WARNINGS: u8 = 2;

pub fn run(files: &[PathBuf], json: bool, strict: bool, with_drop_ins: bool) -> ExitCode {
    let mut invalid = false;
    let mut warned = false;
    for file in files {
        let result = if with_drop_ins {
            Policy::resolve(Some(file))
        } else {
            Policy::load(file)
        };
        let result: Result<Policy, PolicyError> = result.map(|mut p| {
            // The servers the daemon would ask: a ban over them cuts it
            // off DNS. Read here, where the host's resolv.conf is at hand.
            let resolv_conf = std::path::Path::new(crate::resolve::dns::RESOLV_CONF);
            let upstreams =
                crate::resolve::dns::upstreams(p.resolver.upstreams.as_deref(), resolv_conf);
            p.check_upstreams(&upstreams.unwrap_or_default(), resolv_conf);
            p
        });
        match result {
            Ok(p) => {
                warned |= !p.warnings.is_empty();
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"file": file, "ok": true, "warnings": p.warnings})
                    );
                    continue;
                }
                let ports = p.deny.ports.len() + p.allow.ports.len();
                let ports = if ports > 0 {
                    format!(", {ports} rules with a port")
                } else {
                    String::new()
                };
                println!(
                    "{}: ok ({} mode, {} deny and {} allow CIDRs, {} deny and {} allow domains{ports})",
                    file.display(),
                    p.mode,
                    p.deny.cidrs.len(),
                    p.allow.cidrs.len(),
                    p.deny.domains.len(),
                    p.allow.domains.len()
                );
                for w in &p.warnings {
                    println!("warning: {w}");
                }
            }
            Err(e) => {
                invalid = true;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"file": file, "ok": false, "error": e.to_string()})
                    );
                } else {
                    eprintln!("{e}");
                }
            }
        }
    }
    ExitCode::from(if invalid {
        INVALID
    } else if strict && warned {
        if !json {
            eprintln!("policy validate --strict: warnings count as failures");
        }
        WARNINGS
    } else {
        VALID
    })
}

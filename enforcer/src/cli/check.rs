//! `enforcer check NAME|IP[:PORT]`: what the kernel does with a
//! destination, asked of the daemon or judged from the pinned maps.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use super::{DEFAULT_SOCKET, PolicyAt, remote, show};
use crate::{
    bpf::{Pins, pins::DEFAULT_BPFFS_DIR},
    policy::Policy,
};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// A DNS name or an IP address, optionally with :PORT[/tcp|/udp].
    pub target: String,
    #[command(flatten)]
    pub at: PolicyAt,
    /// The daemon's control socket (asked first; offline otherwise).
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// bpffs directory of the instance to ask when the daemon is not running.
    #[arg(long, default_value = DEFAULT_BPFFS_DIR)]
    pub bpffs: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let CheckArgs {
        target,
        at,
        socket,
        bpffs,
        json,
    } = args;
    if remote::reachable(&socket) {
        let v: crate::control::protocol::CheckReply =
            remote::request(&socket, crate::control::protocol::Command::Check { target })?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v.detail)?);
        } else {
            println!("{}", v.text);
        }
        return Ok(ExitCode::from(if v.blocked {
            show::BLOCKED
        } else {
            show::NOT_BLOCKED
        }));
    }
    let policy = std::sync::Arc::new(Policy::resolve(at.policy.as_deref())?);
    let _ = at.state_dir;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let v = runtime.block_on(crate::check::live(
        &policy,
        &crate::check::rules_of(&policy),
        &Pins::new(&bpffs),
        Path::new(crate::resolve::dns::RESOLV_CONF),
        &target,
    ))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v.json)?);
    } else {
        println!("{}", v.text);
    }
    Ok(ExitCode::from(if v.blocked {
        show::BLOCKED
    } else {
        show::NOT_BLOCKED
    }))
}

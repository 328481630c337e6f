//! `enforcer detach`: remove an instance's enforcement, through its daemon
//! or (when it is gone) from its pins directly.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, bail};

use super::{DEFAULT_SOCKET, is_root, remote};
use crate::bpf::{Pins, detach, pins::DEFAULT_BPFFS_DIR};

#[derive(Debug, clap::Args)]
pub struct DetachArgs {
    /// The instance's bpffs pin directory [default: /sys/fs/bpf/enforcer].
    #[arg(long, conflicts_with = "socket")]
    pub bpffs: Option<PathBuf>,
    /// The instance's control socket [default: /run/enforcer/control.sock].
    #[arg(long)]
    pub socket: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DetachArgs) -> anyhow::Result<ExitCode> {
    let DetachArgs {
        bpffs,
        socket,
        json,
    } = args;
    let via_daemon = match (&bpffs, &socket) {
        (_, Some(_)) => true,
        (Some(_), None) => false,
        (None, None) => remote::reachable(Path::new(DEFAULT_SOCKET)),
    };
    if via_daemon {
        let socket = socket.unwrap_or_else(|| DEFAULT_SOCKET.into());
        let r: String = remote::request(&socket, crate::control::protocol::Command::Detach)?;
        if json {
            println!("{}", serde_json::json!({"ok": true, "message": r}));
        } else {
            println!("{r}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let bpffs = bpffs.unwrap_or_else(|| DEFAULT_BPFFS_DIR.into());
    if !is_root() {
        return Err(remote::Denied("detach removes the enforcement and needs root".into()).into());
    }
    let pins = Pins::new(&bpffs);
    if !pins.root().exists() {
        bail!("nothing to detach: {} does not exist", bpffs.display());
    }
    // Held while detaching: no daemon starts on these pins meanwhile.
    let _lock = match crate::bpf::InstanceLock::existing(&pins) {
        Err(crate::bpf::DatapathError::Locked { holder, .. }) => bail!(
            "{holder} runs on {}: detach through it (`enforcer detach --socket PATH` \
             with its control socket), or stop it and run this again; nothing was removed",
            bpffs.display()
        ),
        other => other?,
    };
    let report = detach(&pins).with_context(|| format!("detaching {}", bpffs.display()))?;
    println!(
        "detached: removed {} links and {} maps from {}",
        report.links,
        report.maps,
        bpffs.display()
    );
    Ok(ExitCode::SUCCESS)
}

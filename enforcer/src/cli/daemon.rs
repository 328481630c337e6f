//! `enforcer daemon`: the enforcement in the foreground, until SIGTERM or
//! SIGINT (the enforcement stays in the kernel when it stops).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use super::{DEFAULT_SOCKET, DEFAULT_STATE_DIR, is_root, remote};
use crate::bpf::{CgroupHook, pins::DEFAULT_BPFFS_DIR};

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Policy file [default: /etc/enforcer/policy.json if it exists, else the embedded default].
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Enforce only in this cgroup (v2) and below [default: the whole host].
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Also filter this interface with XDP (repeatable).
    #[arg(long = "xdp-iface", value_name = "IFACE")]
    pub xdp_iface: Vec<String>,
    /// bpffs directory for this instance's pins.
    #[arg(long, default_value = DEFAULT_BPFFS_DIR)]
    pub bpffs: PathBuf,
    /// Control socket path.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Directory for persistent state.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// The resolver configuration read for DNS servers when the policy
    /// names none (followed while running).
    #[arg(long, default_value = crate::resolve::dns::RESOLV_CONF)]
    pub resolv_conf: PathBuf,
}

pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    if !is_root() {
        return Err(remote::Denied(
            "the daemon loads eBPF programs and needs root (or CAP_BPF, CAP_NET_ADMIN \
             and CAP_SYS_ADMIN)"
                .into(),
        )
        .into());
    }
    let config = crate::daemon::Config {
        policy: args.policy,
        cgroup: args.cgroup,
        xdp_ifaces: args.xdp_iface,
        bpffs: args.bpffs,
        socket: args.socket,
        state_dir: args.state_dir,
        hooks: CgroupHook::ALL.to_vec(),
        resolv_conf: args.resolv_conf,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        // Registered before anything else: a SIGTERM that arrives
        // while the daemon starts must stop it cleanly, not kill it.
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        crate::daemon::run(config, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })?;
    Ok(ExitCode::SUCCESS)
}

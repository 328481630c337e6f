//! The command line of the `enforcer` binary.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    bpf::{CgroupHook, Pins, detach, pins::DEFAULT_BPFFS_DIR},
    daemon,
    policy::{DEFAULT_POLICY, Policy},
};

pub const DEFAULT_SOCKET: &str = "/run/enforcer/control.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/enforcer";

#[derive(Debug, Parser)]
#[command(
    name = "enforcer",
    version,
    about = "Host egress enforcer: bans AI model APIs at the kernel"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the enforcement daemon in the foreground.
    Daemon(DaemonArgs),
    /// Remove the enforcement of an instance: its programs detach and its
    /// pinned maps are deleted (root only).
    Detach {
        /// The instance's bpffs pin directory.
        #[arg(long, default_value = DEFAULT_BPFFS_DIR)]
        bpffs: PathBuf,
    },
    /// Check or print policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

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
    /// Control socket path (the socket is served once the control-socket work lands).
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Directory for persistent state.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files; exit 1 if any is invalid.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the embedded default policy.
    Default,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("enforcer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Daemon(args) => {
            if !is_root() {
                bail!(
                    "the daemon loads eBPF programs and needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)"
                );
            }
            let config = daemon::Config {
                policy: args.policy,
                cgroup: args.cgroup,
                xdp_ifaces: args.xdp_iface,
                bpffs: args.bpffs,
                socket: args.socket,
                state_dir: args.state_dir,
                hooks: CgroupHook::ALL.to_vec(),
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
                daemon::run(config, shutdown)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Detach { bpffs } => {
            if !is_root() {
                bail!("detach removes the enforcement and needs root");
            }
            let pins = Pins::new(&bpffs);
            if !pins.root().exists() {
                bail!("nothing to detach: {} does not exist", bpffs.display());
            }
            let report = detach(&pins).with_context(|| format!("detaching {}", bpffs.display()))?;
            println!(
                "detached: removed {} links and {} maps from {}",
                report.links,
                report.maps,
                bpffs.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy { command } => match command {
            PolicyCommand::Default => {
                print!("{DEFAULT_POLICY}");
                Ok(ExitCode::SUCCESS)
            }
            PolicyCommand::Validate { files } => {
                let mut ok = true;
                for file in files {
                    match Policy::load(&file) {
                        Ok(p) => println!(
                            "{}: ok ({} mode, {} deny and {} allow CIDRs, {} deny domains)",
                            file.display(),
                            p.mode,
                            p.deny.cidrs.len(),
                            p.allow.cidrs.len(),
                            p.deny.domains.len()
                        ),
                        Err(e) => {
                            eprintln!("{e}");
                            ok = false;
                        }
                    }
                }
                Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        },
    }
}

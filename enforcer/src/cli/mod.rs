//! The command line of the `enforcer` binary.

mod docs;
mod doctor;
mod flows;
mod remote;
pub(crate) mod show;
mod status;
mod table;
mod validate;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

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
    /// pinned maps are deleted (root only). With --socket (or, given
    /// neither flag, when the default daemon runs) the daemon does it and
    /// stops; with --bpffs the pins are removed directly.
    Detach {
        /// The instance's bpffs pin directory [default: /sys/fs/bpf/enforcer].
        #[arg(long, conflicts_with = "socket")]
        bpffs: Option<PathBuf>,
        /// The instance's control socket [default: /run/enforcer/control.sock].
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The daemon's state: mode, attachments, policy, maps, names, events.
    Status {
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Ask the daemon to re-read its policy (root only).
    Reload {
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check or print policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The blocked flows, most recent first, from the daemon's store.
    Flows {
        /// Only flows seen within this long (10m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        pid: Option<u32>,
        /// Executable path, exactly.
        #[arg(long)]
        exe: Option<String>,
        /// User name or uid.
        #[arg(long)]
        user: Option<String>,
        /// A banned name the destination resolved from.
        #[arg(long)]
        domain: Option<String>,
        /// The name an application asked for (or one on its CNAME chain)
        /// whose DNS answer gave the destination.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Keep printing the matching flows as the daemon writes them
        /// (about once a second; each row's COUNT is the flow's attempts so
        /// far); exit 3 when the daemon stops.
        #[arg(long)]
        follow: bool,
        /// The daemon's control socket (asked first).
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// The daemon's state directory (read when the daemon is not running).
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Check that this host can run the enforcer and that it runs: kernel,
    /// BTF, cgroup v2, bpffs, the program and map types (loaded, never
    /// attached), memlock, the pinned instance, DNS visibility, the service.
    /// Each check says ok, info, warn or FAIL and what to do.
    /// Exit 0: all ok (info included); 1: a warning; 2: a failure.
    Doctor(doctor::DoctorArgs),
    /// Write the man pages and shell completions into DIR (packaging).
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
    /// What will the kernel do with NAME or IP? A name is resolved now
    /// and each of its addresses judged by the enforced maps with the
    /// programs' own lookups; the rules that matched are named. Asks the
    /// daemon when it runs, else reads the pinned maps itself. Exit 0: not
    /// blocked (some address passes, or audit mode); 1: blocked (the kernel
    /// denies every address); 2: error. With a port (`8.8.8.8:853/tcp`,
    /// `[2001:db8::1]:853`, `dns.google:443`), traffic to that port is
    /// judged, rules with a port included (both protocols unless one is given).
    Check {
        /// A DNS name or an IP address, optionally with :PORT[/tcp|/udp].
        target: String,
        #[command(flatten)]
        at: PolicyAt,
        /// The daemon's control socket (asked first; offline otherwise).
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// bpffs directory of the instance to ask when the daemon is not running.
        #[arg(long, default_value = DEFAULT_BPFFS_DIR)]
        bpffs: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Which policy and state a command reads.
#[derive(Debug, clap::Args)]
pub struct PolicyAt {
    /// Policy file [default: /etc/enforcer/policy.json if it exists, else the embedded default], with its drop-ins.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The daemon's state directory (its last resolved state).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
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

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files, each on its own, and print their warnings
    /// (dangerous but valid shapes: an allow over a whole address family,
    /// a ban over loopback or the resolvers, a mode set by a drop-in).
    /// Exit 0: every file is valid (with --strict: and has no warning);
    /// 1: a file is invalid; 2: with --strict, a file has warnings.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// One JSON object per file.
        #[arg(long)]
        json: bool,
        /// Fail (exit 2) on any warning.
        #[arg(long)]
        strict: bool,
        /// Read each FILE as the daemon reads a main policy: merged with
        /// the drop-ins of its drop-in directory.
        #[arg(long)]
        with_drop_ins: bool,
    },
    /// Show the merged policy (main file and drop-ins); with --resolved,
    /// every name with its addresses, TTL and state.
    Show {
        #[command(flatten)]
        at: PolicyAt,
        #[arg(long)]
        resolved: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print the embedded default policy.
    Default,
    /// Print the JSON Schema of the policy format.
    Schema,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Daemon(_)) {
        // Rust ignores SIGPIPE, so `enforcer status | head` would panic on
        // the closed pipe (exit 101); a command's output ends quietly
        // instead, as for any Unix filter. The daemon keeps ignoring it: a
        // client going away must never kill it.
        // SAFETY: setting a signal's disposition before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    init_logging();
    // `check` reserves 1 for "blocked", `doctor` for warnings; their errors are 2.
    let error_code = if matches!(cli.command, Command::Check { .. } | Command::Doctor(_)) {
        2
    } else {
        1
    };
    let json = cli.command.json();
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = remote::error_code(&e);
            // People read stderr; with --json, scripts read the error where
            // the answer would have been.
            eprintln!("enforcer: {}", chain(&e));
            if json {
                println!("{}", remote::json_error(code, &chain(&e)));
            }
            ExitCode::from(remote::exit_code(code, error_code))
        }
    }
}

impl Command {
    /// Whether `--json` was asked for (errors are then JSON too).
    fn json(&self) -> bool {
        match self {
            Command::Detach { json, .. }
            | Command::Status { json, .. }
            | Command::Reload { json, .. }
            | Command::Flows { json, .. }
            | Command::Check { json, .. } => *json,
            Command::Policy {
                command: PolicyCommand::Validate { json, .. } | PolicyCommand::Show { json, .. },
            } => *json,
            Command::Daemon(_)
            | Command::Doctor(_)
            | Command::GenerateDocs { .. }
            | Command::Policy { .. } => false,
        }
    }
}

/// The error and its causes, skipping a cause whose text the message
/// before it already carries.
fn chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

/// Logs for who reads them: journald fields under systemd, readable text
/// on a terminal, JSON lines otherwise (log shippers).
fn init_logging() {
    use std::io::IsTerminal as _;
    use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        tracing_subscriber::registry()
            .with(filter)
            .with(journald.with_syslog_identifier("enforcer".into()))
            .init();
        return;
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Daemon(args) => {
            if !is_root() {
                return Err(remote::Denied(
                    "the daemon loads eBPF programs and needs root (or CAP_BPF, CAP_NET_ADMIN \
                     and CAP_SYS_ADMIN)"
                        .into(),
                )
                .into());
            }
            let config = daemon::Config {
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
                daemon::run(config, shutdown)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { socket, json } => status::run(&socket, json),
        Command::Doctor(args) => doctor::run(&args),
        Command::GenerateDocs { dir } => {
            docs::generate(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload { socket, json } => remote::reload(&socket, json),
        Command::Detach {
            bpffs,
            socket,
            json,
        } => {
            let via_daemon = match (&bpffs, &socket) {
                (_, Some(_)) => true,
                (Some(_), None) => false,
                (None, None) => remote::reachable(Path::new(DEFAULT_SOCKET)),
            };
            if via_daemon {
                let socket = socket.unwrap_or_else(|| DEFAULT_SOCKET.into());
                let r: String =
                    remote::request(&socket, crate::control::protocol::Command::Detach)?;
                if json {
                    println!("{}", serde_json::json!({"ok": true, "message": r}));
                } else {
                    println!("{r}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let bpffs = bpffs.unwrap_or_else(|| DEFAULT_BPFFS_DIR.into());
            if !is_root() {
                return Err(
                    remote::Denied("detach removes the enforcement and needs root".into()).into(),
                );
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
        Command::Flows {
            since,
            pid,
            exe,
            user,
            domain,
            name,
            limit,
            json,
            follow,
            socket,
            state_dir,
        } => {
            let since_ms = match since {
                Some(s) => {
                    Some(crate::resolve::now_ms().saturating_sub(flows::parse_duration(&s)?))
                }
                None => None,
            };
            let q = crate::flows::Query {
                since_ms,
                pid,
                exe,
                user,
                domain,
                name,
                limit,
            };
            if follow {
                return flows::follow(&socket, q, json);
            }
            if remote::reachable(&socket) {
                let windowed = q.since_ms.is_some();
                let flows: Vec<crate::flows::Flow> =
                    remote::request(&socket, crate::control::protocol::Command::Flows(q))?;
                return flows::print(&flows, json, windowed);
            }
            flows::run(&state_dir, q, json)
        }
        Command::Check {
            target,
            at,
            socket,
            bpffs,
            json,
        } => {
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
            let policy = Policy::resolve(at.policy.as_deref())?;
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
        Command::Policy { command } => match command {
            PolicyCommand::Default => {
                print!("{DEFAULT_POLICY}");
                Ok(ExitCode::SUCCESS)
            }
            PolicyCommand::Schema => {
                print!("{}", crate::policy::json_schema());
                Ok(ExitCode::SUCCESS)
            }
            PolicyCommand::Show { at, resolved, json } => {
                let policy = Policy::resolve(at.policy.as_deref())?;
                show::show(&policy, &at.state_dir, resolved, json)
            }
            PolicyCommand::Validate {
                files,
                json,
                strict,
                with_drop_ins,
            } => Ok(validate::run(&files, json, strict, with_drop_ins)),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent_and_documents_itself() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
        let dir = std::env::temp_dir().join(format!("enforcer-docs-{}", std::process::id()));
        super::docs::generate(&dir).unwrap();
        let page = std::fs::read_to_string(dir.join("man/enforcer-flows.1")).unwrap();
        assert!(page.contains("follow"));
        for section in ["EXIT STATUS", "FILES", "EXAMPLES"] {
            assert!(page.contains(section), "{section}:\n{page}");
        }
        for shell in ["enforcer.bash", "_enforcer", "enforcer.fish"] {
            let text = std::fs::read_to_string(dir.join("completions").join(shell)).unwrap();
            assert!(text.contains("doctor"), "{shell}");
            assert!(
                !text.contains("generate-docs"),
                "{shell} offers a hidden command"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

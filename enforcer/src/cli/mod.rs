//! The command line of the `enforcer` binary.

mod agents;
mod check;
mod daemon;
mod detach;
mod docs;
mod doctor;
mod flows;
mod policy;
mod remote;
pub(crate) mod show;
mod status;
mod table;
mod validate;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

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
    Daemon(daemon::DaemonArgs),
    /// Remove the enforcement of an instance: its programs detach and its
    /// pinned maps are deleted (root only). With --socket (or, given
    /// neither flag, when the default daemon runs) the daemon does it and
    /// stops; with --bpffs the pins are removed directly.
    Detach(detach::DetachArgs),
    /// The daemon's state: mode, attachments, policy, maps, names, events.
    Status(RemoteArgs),
    /// Ask the daemon to re-read its policy (root only).
    Reload(RemoteArgs),
    /// The agent selectors in force (how each names its programs, what it
    /// may reach, its action and provenance) and the processes they
    /// contain now, each with the ancestor whose exec matched.
    Agents(RemoteArgs),
    /// Check or print policies.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// The blocked flows, most recent first, from the daemon's store.
    Flows(flows::FlowsArgs),
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
    Check(check::CheckArgs),
}

/// Where the daemon answers, and how to print its answer.
#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[arg(long)]
    pub json: bool,
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
    let error_code = if matches!(cli.command, Command::Check(_) | Command::Doctor(_)) {
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
            Command::Detach(a) => a.json,
            Command::Status(a) | Command::Reload(a) | Command::Agents(a) => a.json,
            Command::Flows(a) => a.json,
            Command::Check(a) => a.json,
            Command::Policy { command } => command.json(),
            Command::Daemon(_) | Command::Doctor(_) | Command::GenerateDocs { .. } => false,
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

/// Runs one command: each lives in its own file.
fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Daemon(args) => daemon::run(args),
        Command::Status(a) => status::run(&a.socket, a.json),
        Command::Doctor(args) => doctor::run(&args),
        Command::GenerateDocs { dir } => {
            docs::generate(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload(a) => remote::reload(&a.socket, a.json),
        Command::Agents(a) => agents::run(&a.socket, a.json),
        Command::Detach(args) => detach::run(args),
        Command::Flows(args) => flows::command(args),
        Command::Check(args) => check::run(args),
        Command::Policy { command } => policy::run(command),
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

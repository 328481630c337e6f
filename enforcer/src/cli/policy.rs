//! `enforcer policy validate|show|default|schema`.

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;

use super::{PolicyAt, show, validate};
use crate::policy::{DEFAULT_POLICY, Policy};

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

impl PolicyCommand {
    /// Whether `--json` was asked for.
    pub fn json(&self) -> bool {
        match self {
            PolicyCommand::Validate { json, .. } | PolicyCommand::Show { json, .. } => *json,
            PolicyCommand::Default | PolicyCommand::Schema => false,
        }
    }
}

pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
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
            show::show(&std::sync::Arc::new(policy), &at.state_dir, resolved, json)
        }
        PolicyCommand::Validate {
            files,
            json,
            strict,
            with_drop_ins,
        } => Ok(validate::run(&files, json, strict, with_drop_ins)),
    }
}

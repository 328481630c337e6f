//! Policy: raw JSON (serde, `raw`) → validated [`Policy`] (pure, no root).
//!
//! Every error names the file, line, column and field, so that an admin who
//! pushed a bad file through config management can fix it from the log line.

mod domain;
mod raw;

use std::{
    fmt,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::Deserialize;

pub use domain::DomainPattern;
pub use raw::Cidr;

/// The policy compiled into the binary, used when no policy file exists.
pub const DEFAULT_POLICY: &str = include_str!("../../policy/default.json");
/// Where the daemon looks for a policy when `--policy` is not given.
pub const DEFAULT_POLICY_PATH: &str = "/etc/enforcer/policy.json";

/// What the kernel programs do with a banned destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny: EPERM at the syscall, drop on the wire.
    #[default]
    Enforce,
    /// Let it through, but report it exactly as `enforce` would.
    Audit,
}

impl Mode {
    pub const fn as_config(self) -> u32 {
        match self {
            Mode::Enforce => enforcer_common::MODE_ENFORCE,
            Mode::Audit => enforcer_common::MODE_AUDIT,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        })
    }
}

/// Where a policy came from, for messages and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => path.display().fmt(f),
            Source::Embedded => f.write_str("<embedded default policy>"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub domains: Vec<DomainPattern>,
    pub cidrs: Vec<IpNet>,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub source: Source,
    pub mode: Mode,
    pub deny: Rules,
    pub allow: Rules,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read the policy: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: {field}: {message}")]
    Invalid {
        origin: Source,
        line: usize,
        column: usize,
        /// The JSON path of the offending value, e.g. `deny.cidrs[2]`.
        field: String,
        message: String,
    },
}

impl Policy {
    /// Parses and validates a policy text; `source` only names it in errors.
    pub fn parse(text: &str, source: Source) -> Result<Policy, PolicyError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let parsed: Result<raw::RawPolicy, _> = serde_path_to_error::deserialize(&mut *de);
        let raw = match parsed {
            Ok(raw) => raw,
            Err(err) => {
                let field = match err.path().to_string() {
                    p if p == "." => "(top level)".to_owned(),
                    p => p,
                };
                let inner = err.into_inner();
                return Err(invalid(source, &inner, field));
            }
        };
        de.end()
            .map_err(|e| invalid(source.clone(), &e, "(after the policy)".into()))?;
        Ok(Policy {
            source,
            mode: raw.mode.unwrap_or_default(),
            deny: Rules {
                domains: raw.deny.domains,
                cidrs: raw.deny.cidrs.into_iter().map(|c| c.0).collect(),
            },
            allow: Rules {
                domains: raw.allow.domains,
                cidrs: raw.allow.cidrs.into_iter().map(|c| c.0).collect(),
            },
        })
    }

    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Policy::parse(&text, Source::File(path.to_owned()))
    }

    /// The embedded default policy.
    pub fn embedded() -> Policy {
        Policy::parse(DEFAULT_POLICY, Source::Embedded)
            .expect("the embedded default policy is valid (unit-tested)")
    }

    /// `--policy PATH` if given; else the system policy if it exists; else
    /// the embedded default.
    pub fn resolve(explicit: Option<&Path>) -> Result<Policy, PolicyError> {
        match explicit {
            Some(path) => Policy::load(path),
            None if Path::new(DEFAULT_POLICY_PATH).exists() => {
                Policy::load(Path::new(DEFAULT_POLICY_PATH))
            }
            None => Ok(Policy::embedded()),
        }
    }
}

fn invalid(source: Source, err: &serde_json::Error, field: String) -> PolicyError {
    // serde_json appends " at line L column C"; the error shows them itself.
    let text = err.to_string();
    let message = match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    };
    PolicyError::Invalid {
        origin: source,
        line: err.line(),
        column: err.column(),
        field,
        message,
    }
}

#[cfg(test)]
mod tests;

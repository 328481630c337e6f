//! Policy: raw JSON (serde, `raw`) → validated [`Policy`] (pure, no root).
//!
//! Every error names the file, line, column and field, so that an admin who
//! pushed a bad file through config management can fix it from the log line.

pub mod agents;
pub mod catalog;
mod checks;
mod domain;
mod dropins;
mod nat64;
mod origin;
mod ports;
mod raw;
mod shared;

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use ipnet::{IpNet, Ipv6Net};
use serde::Deserialize;

pub use domain::DomainPattern;
pub use origin::{Field, Origin};
pub use ports::{PortRule, PortSpec, PortTarget, Proto};
pub use raw::{Cidr, check_octets};
pub use shared::{EchMode, QuicMode, SharedNameSettings};

/// The policy compiled into the binary, used when no policy file exists.
pub const DEFAULT_POLICY: &str = include_str!("../../policy/default.json");
/// Where the daemon looks for a policy when `--policy` is not given.
pub const DEFAULT_POLICY_PATH: &str = "/etc/enforcer/policy.json";

/// What the kernel programs do with a banned destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, schemars::JsonSchema)]
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

impl<'de> Deserialize<'de> for Mode {
    /// A string only: serde's derived enums also take `{"audit": null}`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const MODES: &[&str] = &["enforce", "audit"];
        let s = String::deserialize(d)?;
        match s.as_str() {
            "enforce" => Ok(Mode::Enforce),
            "audit" => Ok(Mode::Audit),
            other => Err(serde::de::Error::unknown_variant(other, MODES)),
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

/// The most rules a policy may hold: rule ids are `u32` (the kernel maps'
/// values, 0 meaning none), and up to half the space keeps the search for
/// a free id after a hash collision short (`crate::rules`).
pub const MAX_RULES: usize = 1 << 31;

/// One policy entry with where it was written (`<file>: deny.cidrs[3]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<T> {
    pub value: T,
    pub origin: Origin,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub domains: Vec<Entry<DomainPattern>>,
    pub cidrs: Vec<Entry<IpNet>>,
    /// Entries of either list written with a port (`*:853`, `dns.google:443/tcp`).
    pub ports: Vec<Entry<PortRule>>,
    /// Banned names marked `"shared": true` (the last entry of a name
    /// across the files decides): enforced by name, never by address.
    pub shared: std::collections::HashSet<DomainPattern>,
}

impl Rules {
    /// Appends what `raw` adds (the first occurrence of an entry keeps its
    /// place and origin). Duplicates are found through a set, not a scan:
    /// a policy may hold a million entries.
    fn extend(&mut self, source: &Source, deny: bool, raw: raw::RawRules) {
        let shown = std::sync::Arc::new(source.to_string());
        let (domain_field, cidr_field) = if deny {
            (Field::DenyDomains, Field::DenyCidrs)
        } else {
            (Field::AllowDomains, Field::AllowCidrs)
        };
        let mut seen_ports: std::collections::HashSet<PortRule> =
            self.ports.iter().map(|e| e.value.clone()).collect();
        let mut port = |rule: PortRule, origin: Origin| {
            if seen_ports.insert(rule.clone()) {
                self.ports.push(Entry {
                    value: rule,
                    origin,
                });
            }
        };
        let mut domains = Vec::new();
        for (i, d) in raw.domains.into_iter().enumerate() {
            match d.rule {
                ports::DomainRule::Plain(p) => {
                    if d.shared {
                        self.shared.insert(p.clone());
                    } else {
                        self.shared.remove(&p);
                    }
                    domains.push((i, p))
                }
                ports::DomainRule::Port(p) => port(p, Origin::new(shown.clone(), domain_field, i)),
            }
        }
        let mut cidrs = Vec::new();
        for (i, c) in raw.cidrs.into_iter().enumerate() {
            match c {
                ports::CidrRule::Plain(c) => cidrs.push((i, c)),
                ports::CidrRule::Port(p) => port(p, Origin::new(shown.clone(), cidr_field, i)),
            }
        }
        let mut seen: std::collections::HashSet<DomainPattern> =
            self.domains.iter().map(|e| e.value.clone()).collect();
        self.domains.reserve_exact(domains.len());
        for (i, d) in domains {
            if seen.insert(d.clone()) {
                self.domains.push(Entry {
                    value: d,
                    origin: Origin::new(shown.clone(), domain_field, i),
                });
            }
        }
        let mut seen: std::collections::HashSet<IpNet> =
            self.cidrs.iter().map(|e| e.value).collect();
        // Room for all at once: growing by doubling left up to half the
        // list unused (24 MB of a million entries' 40).
        self.cidrs.reserve_exact(cidrs.len());
        for (i, c) in cidrs {
            if seen.insert(c.0) {
                self.cidrs.push(Entry {
                    value: c.0,
                    origin: Origin::new(shown.clone(), cidr_field, i),
                });
            }
        }
    }

    /// The rules these lists make (each entry is one).
    pub fn len(&self) -> usize {
        self.cidrs.len() + self.domains.len() + self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a banned name is shared (enforced by name only).
    pub fn is_shared(&self, d: &DomainPattern) -> bool {
        self.shared.contains(d)
    }

    /// Whether the exact name `name` is a shared banned name.
    pub fn is_shared_name(&self, name: &str) -> bool {
        !self.shared.is_empty() && self.shared.contains(&DomainPattern::Exact(name.to_owned()))
    }

    pub fn domain_values(&self) -> impl Iterator<Item = &DomainPattern> {
        self.domains.iter().map(|e| &e.value)
    }

    pub fn cidr_values(&self) -> impl Iterator<Item = &IpNet> {
        self.cidrs.iter().map(|e| &e.value)
    }
}

/// How names are resolved, with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// `None`: the nameservers of /etc/resolv.conf, read when resolving.
    pub upstreams: Option<Vec<SocketAddr>>,
    pub min_ttl_s: u32,
    pub max_ttl_s: u32,
    pub grace_s: u32,
    pub concurrency: u32,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            upstreams: None,
            min_ttl_s: 30,
            max_ttl_s: 3600,
            grace_s: 300,
            concurrency: 16,
        }
    }
}

/// Reporting settings with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSettings {
    pub retention_days: u32,
    pub max_flows: u64,
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            retention_days: 30,
            max_flows: 1_000_000,
            metrics_listen: None,
        }
    }
}

/// A validated policy: the main file (or the embedded default) with its
/// drop-ins merged in lexical order. Lists are unioned (first occurrence
/// kept); scalars from later files win.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The main source first, then each drop-in read.
    pub sources: Vec<Source>,
    pub mode: Mode,
    pub deny: Rules,
    pub allow: Rules,
    pub resolver: ResolverSettings,
    pub report: ReportSettings,
    /// How shared names are enforced (`shared_names`).
    pub shared_names: SharedNameSettings,
    /// Operator NAT64 /96 prefixes, unioned across files (first kept).
    pub nat64_prefixes: Vec<Entry<Ipv6Net>>,
    /// Agent selectors, merged by name across files (`agents`).
    pub agents: Vec<agents::Agent>,
    /// Not errors, but probably mistakes (an exception that overlaps no ban).
    pub warnings: Vec<String>,
    /// Where drop-ins were looked for (empty for a single parsed text).
    pub drop_in_dir: PathBuf,
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
    /// A drop-in (or the drop-in directory) that is not what it must be.
    #[error("{path}: {message}")]
    DropIn { path: PathBuf, message: String },
    #[error("{origin}: {field}: {message}")]
    Merged {
        /// The file whose value made the merged policy invalid.
        origin: Source,
        field: String,
        message: String,
    },
}

/// One parsed file, before merging.
struct Layer {
    source: Source,
    raw: raw::RawPolicy,
}

fn parse_layer(text: &str, source: Source) -> Result<Layer, PolicyError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let parsed: Result<raw::File, _> = serde_path_to_error::deserialize(&mut *de);
    let raw = match parsed {
        Ok(raw::File(raw)) => raw,
        Err(err) => {
            let field = match err.path().to_string() {
                p if p == "." => "(top level)".to_owned(),
                // Not inside any value: the JSON itself is broken.
                p if p == "?" => "(syntax)".to_owned(),
                p => p,
            };
            let inner = err.into_inner();
            return Err(invalid(source, &inner, field));
        }
    };
    de.end()
        .map_err(|e| invalid(source.clone(), &e, "(after the policy)".into()))?;
    Ok(Layer { source, raw })
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_owned(),
        source,
    })
}

impl Policy {
    /// Parses and validates one policy text, without drop-ins; `source`
    /// only names it in errors.
    pub fn parse(text: &str, source: Source) -> Result<Policy, PolicyError> {
        let layer = parse_layer(text, source)?;
        Policy::merge(vec![layer])
    }

    /// Reads and validates one policy file, without drop-ins.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        Policy::parse(&read(path)?, Source::File(path.to_owned()))
    }

    /// The embedded default policy, without drop-ins.
    pub fn embedded() -> Policy {
        Policy::parse(DEFAULT_POLICY, Source::Embedded)
            .expect("the embedded default policy is valid (unit-tested)")
    }

    /// The policy the daemon enforces: `--policy PATH` if given, else the
    /// system policy if it exists, else the embedded default; then the
    /// drop-ins of its drop-in directory, in lexical order. Any invalid
    /// file rejects the whole.
    pub fn resolve(explicit: Option<&Path>) -> Result<Policy, PolicyError> {
        let main = Policy::main_path(explicit);
        let layer = match &main {
            Some(path) => parse_layer(&read(path)?, Source::File(path.clone()))?,
            None => parse_layer(DEFAULT_POLICY, Source::Embedded)?,
        };
        let dir = Policy::drop_in_dir(main.as_deref(), layer.raw.drop_in_dir.as_deref());
        let paths = dropins::list(&dir, &layer.source)?;
        let mut layers = vec![layer];
        for path in paths {
            let layer = parse_layer(&dropins::read(&path)?, Source::File(path.clone()))?;
            if layer.raw.drop_in_dir.is_some() {
                return Err(PolicyError::Merged {
                    origin: layer.source,
                    field: "drop_in_dir".into(),
                    message: "only the main policy file may set drop_in_dir".into(),
                });
            }
            layers.push(layer);
        }
        let mut policy = Policy::merge(layers)?;
        policy.drop_in_dir = dir;
        Ok(policy)
    }

    /// The main policy file `resolve` reads, if any (`None`: embedded).
    pub fn main_path(explicit: Option<&Path>) -> Option<PathBuf> {
        match explicit {
            Some(path) => Some(path.to_owned()),
            None if Path::new(DEFAULT_POLICY_PATH).exists() => Some(DEFAULT_POLICY_PATH.into()),
            None => None,
        }
    }

    /// Where drop-ins are read from: `drop_in_dir` of the main file (relative
    /// to it), else `policy.d` beside it, else /etc/enforcer/policy.d.
    pub fn drop_in_dir(main: Option<&Path>, configured: Option<&Path>) -> PathBuf {
        let base = main
            .and_then(Path::parent)
            .unwrap_or(Path::new("/etc/enforcer"));
        match configured {
            Some(dir) => base.join(dir),
            None => base.join("policy.d"),
        }
    }

    fn merge(layers: Vec<Layer>) -> Result<Policy, PolicyError> {
        let mut policy = Policy {
            sources: Vec::new(),
            mode: Mode::default(),
            deny: Rules::default(),
            allow: Rules::default(),
            resolver: ResolverSettings::default(),
            report: ReportSettings::default(),
            shared_names: SharedNameSettings::default(),
            nat64_prefixes: Vec::new(),
            agents: Vec::new(),
            warnings: Vec::new(),
            drop_in_dir: PathBuf::new(),
        };
        // The file that last set each TTL bound, for a merged-range error.
        let mut ttl_origin = None;
        let mut warnings = Vec::new();
        for (i, Layer { source, raw }) in layers.into_iter().enumerate() {
            if let Some(mode) = raw.mode {
                if i > 0 {
                    warnings.push(checks::drop_in_mode_warning(&source, mode, policy.mode));
                }
                policy.mode = mode;
            }
            if let Some(i) = raw.allow.domains.iter().position(|d| d.shared) {
                return Err(PolicyError::Merged {
                    origin: source,
                    field: format!("allow.domains[{i}]"),
                    message: "\"shared\" applies to banned names (deny.domains) only".into(),
                });
            }
            policy.deny.extend(&source, true, raw.deny);
            policy.allow.extend(&source, false, raw.allow);
            let rules = policy.deny.len() + policy.allow.len();
            if rules > MAX_RULES {
                return Err(PolicyError::Merged {
                    origin: source,
                    field: "deny, allow".into(),
                    message: format!(
                        "{rules} rules after merging this file; at most {MAX_RULES} are supported (rule ids are 32-bit)"
                    ),
                });
            }
            if let Some(r) = raw.resolver {
                let s = &mut policy.resolver;
                if let Some(ups) = r.upstreams {
                    let list = s.upstreams.get_or_insert_with(Vec::new);
                    for u in ups {
                        if !list.contains(&u.0) {
                            list.push(u.0);
                        }
                    }
                }
                if r.min_ttl_s.is_some() || r.max_ttl_s.is_some() {
                    ttl_origin = Some(source.clone());
                }
                s.min_ttl_s = r.min_ttl_s.unwrap_or(s.min_ttl_s);
                s.max_ttl_s = r.max_ttl_s.unwrap_or(s.max_ttl_s);
                s.grace_s = r.grace_s.unwrap_or(s.grace_s);
                s.concurrency = r.concurrency.unwrap_or(s.concurrency);
            }
            if let Some(r) = raw.report {
                let p = &mut policy.report;
                p.retention_days = r.retention_days.unwrap_or(p.retention_days);
                p.max_flows = r.max_flows.unwrap_or(p.max_flows);
                if let Some(m) = r.metrics_listen {
                    p.metrics_listen = Some(m.0);
                }
            }
            if let Some(s) = raw.shared_names {
                policy.shared_names.merge(s);
            }
            nat64::merge(&mut policy.nat64_prefixes, &source, raw.nat64_prefixes)?;
            agents::merge(&mut policy.agents, &source, raw.agents)?;
            policy.sources.push(source);
        }
        agents::check(&policy.agents)?;
        // Duplicates across files left room unused; the policy is kept as
        // long as it is in force.
        for rules in [&mut policy.deny, &mut policy.allow] {
            rules.cidrs.shrink_to_fit();
            rules.domains.shrink_to_fit();
        }
        if policy.resolver.min_ttl_s > policy.resolver.max_ttl_s {
            return Err(PolicyError::Merged {
                origin: ttl_origin.unwrap_or(Source::Embedded),
                field: "resolver".into(),
                message: format!(
                    "after merging, min_ttl_s ({}) is greater than max_ttl_s ({})",
                    policy.resolver.min_ttl_s, policy.resolver.max_ttl_s
                ),
            });
        }
        warnings.extend(shadow_warnings(&policy));
        warnings.extend(checks::rule_warnings(&policy));
        policy.warnings = warnings;
        Ok(policy)
    }

    /// The main source (the first one read).
    pub fn source(&self) -> &Source {
        &self.sources[0]
    }
}

/// An exception that overlaps no ban changes nothing: probably a typo.
/// Domain exceptions are checked against domain bans by name; the
/// addresses they resolve to may still fall in a banned range, so they are
/// only warned about when no CIDR ban exists at all.
fn shadow_warnings(policy: &Policy) -> Vec<String> {
    let mut warnings = Vec::new();
    for allow in &policy.allow.cidrs {
        let overlaps = policy.deny.cidrs.iter().any(|deny| {
            deny.value.contains(&allow.value.network())
                || allow.value.contains(&deny.value.network())
        });
        if !overlaps {
            warnings.push(format!(
                "{}: allow {} overlaps no banned network; it has no effect",
                allow.origin, allow.value
            ));
        }
    }
    for allow in &policy.allow.domains {
        let shadows = policy
            .deny
            .domains
            .iter()
            .any(|deny| deny.value.covers(&allow.value));
        if !shadows && policy.deny.cidrs.is_empty() {
            warnings.push(format!(
                "{}: allow {} matches no banned name and no banned network exists; it has no effect",
                allow.origin, allow.value
            ));
        }
    }
    warnings
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

/// The JSON Schema of the policy format, generated from the serde types.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(raw::RawPolicy);
    serde_json::to_string_pretty(&schema).expect("a schema serialises") + "\n"
}

#[cfg(test)]
mod tests;

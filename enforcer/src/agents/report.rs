//! What `enforcer agents` and `status` show of containment (the control
//! protocol's reply types).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One selector and how many processes it contains now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectorReport {
    pub name: String,
    pub action: String,
    pub exe: Vec<String>,
    pub script: Vec<String>,
    pub cmdline: Vec<String>,
    pub allow: Vec<String>,
    pub source: Option<String>,
    /// The policy file that defined it first.
    pub defined_in: String,
    pub contained: u64,
}

/// One contained process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainedProc {
    pub pid: u32,
    /// The selector's name.
    pub agent: String,
    /// The process whose exec matched (itself, or the ancestor it inherits from).
    pub root: u32,
    pub root_exe: String,
    pub exe: String,
    pub cmdline: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentsReport {
    pub selectors: Vec<SelectorReport>,
    pub contained: Vec<ContainedProc>,
    /// The kernel's counters (`matched`, `inherited`, `denied`, ...).
    pub counters: BTreeMap<String, u64>,
    /// Whether the Unix-domain hooks are attached (kernel 6.7+): without
    /// them, contained processes' Unix-domain sockets are not judged.
    pub unix_judged: bool,
}

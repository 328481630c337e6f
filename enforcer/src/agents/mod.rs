//! Agent containment, the pure part: the policy's `agents` selectors
//! compiled into what the kernel maps hold (`automaton`: which exec
//! matches; `allow`: what a contained process may reach), and the
//! processes of a /proc snapshot that are contained (`procs`).
//!
//! Matching happens in the kernel, at exec, because it must be in place
//! before the new program runs; the daemon only marks the processes that
//! were running before it started, with the same tables.

pub mod allow;
pub mod automaton;
pub mod procs;
pub mod report;

use enforcer_common::agents::AgentSelector;

pub use allow::AllowMaps;
pub use automaton::{CompileError, Tables};

use crate::policy::agents::Agent;

/// Everything the kernel needs for a policy's selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub tables: Tables,
    pub allow: AllowMaps,
    pub selectors: Vec<AgentSelector>,
    /// The selectors' names, by index (for remapping and reports).
    pub names: Vec<String>,
}

impl Compiled {
    pub fn new(agents: &[Agent]) -> Result<Compiled, CompileError> {
        Ok(Compiled {
            tables: Tables::compile(agents)?,
            allow: AllowMaps::compile(agents),
            selectors: agents
                .iter()
                .map(|a| AgentSelector {
                    action: a.action.as_kernel(),
                    present: 1,
                    name_key: name_key(&a.name),
                })
                .collect(),
            names: agents.iter().map(|a| a.name.clone()).collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }

    /// The selectors' name keys, by index.
    pub fn keys(&self) -> Vec<u64> {
        self.selectors.iter().map(|s| s.name_key).collect()
    }
}

/// `AgentSelector::name_key`: FNV-1a of the name (never 0, which marks an
/// empty slot).
pub fn name_key(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

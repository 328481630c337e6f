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

use enforcer_common::agents::{AgentSelector, MAX_NAME_SELECTORS, MAX_SELECTORS};

pub use allow::AllowMaps;
pub use automaton::{CompileError, Tables};

use crate::policy::agents::Agent;

/// Everything the kernel needs for a policy's selectors, by rank (the
/// selector's place in the policy: the automaton's first match wins by it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub tables: Tables,
    pub agents: Vec<Agent>,
    /// The selectors' names and name keys, by rank.
    pub names: Vec<String>,
    pub keys: Vec<u64>,
}

impl Compiled {
    pub fn new(agents: &[Agent]) -> Result<Compiled, CompileError> {
        Ok(Compiled {
            tables: Tables::compile(agents)?,
            agents: agents.to_vec(),
            names: agents.iter().map(|a| a.name.clone()).collect(),
            keys: agents.iter().map(|a| name_key(&a.name)).collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// The allow lists, keyed by slot (`slots[rank]`).
    pub fn allow(&self, slots: &[u32]) -> AllowMaps {
        AllowMaps::compile(&self.agents, slots)
    }

    /// `AGENT_SELECTORS` as it must be: each slot's selector, or empty.
    pub fn selectors(&self, slots: &[u32]) -> Vec<AgentSelector> {
        let mut out = vec![AgentSelector::default(); MAX_SELECTORS as usize];
        for (rank, a) in self.agents.iter().enumerate() {
            out[slots[rank] as usize] = AgentSelector {
                action: a.action.as_kernel(),
                present: 1,
                name_key: self.keys[rank],
            };
        }
        out
    }
}

/// Where each selector lives in the kernel maps (`slots[rank]`), and the
/// slots that change hands (a selector left and another takes its place:
/// marks and learned addresses of the old one must go first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slots {
    pub slots: Vec<u32>,
    pub reused: Vec<u32>,
}

/// Gives each selector a slot: the one its name had (`previous[slot]`: the
/// name keys the maps hold now, 0 for free), else the lowest slot no
/// selector of the new policy keeps. Selectors whose allow lists hold names
/// need a slot below `MAX_NAME_SELECTORS` (their bit in the learned
/// masks). A selector thus keeps its slot across reloads and restarts, so
/// the marks of its processes never need renumbering.
pub fn assign_slots(c: &Compiled, previous: &[u64]) -> Result<Slots, CompileError> {
    let n = MAX_SELECTORS as usize;
    let mut taken = vec![false; n];
    let mut slots = vec![u32::MAX; c.agents.len()];
    for (rank, key) in c.keys.iter().enumerate() {
        if let Some(slot) = previous.iter().position(|k| k == key) {
            slots[rank] = slot as u32;
            taken[slot] = true;
        }
    }
    let mut reused = Vec::new();
    // Selectors with names first, so that they get the low slots.
    let mut order: Vec<usize> = (0..c.agents.len()).collect();
    order.sort_by_key(|&r| c.agents[r].names().next().is_none());
    for rank in order {
        if slots[rank] != u32::MAX {
            continue;
        }
        let free = (0..n)
            .filter(|&s| !taken[s])
            // A slot no one held before is better than one that changes hands.
            .min_by_key(|&s| (previous.get(s).copied().unwrap_or(0) != 0, s))
            .ok_or(CompileError::Slots {
                name: c.names[rank].clone(),
            })?;
        taken[free] = true;
        slots[rank] = free as u32;
        if previous.get(free).copied().unwrap_or(0) != 0 {
            reused.push(free as u32);
        }
    }
    for (rank, a) in c.agents.iter().enumerate() {
        if a.names().next().is_some() && slots[rank] >= MAX_NAME_SELECTORS {
            return Err(CompileError::Slots {
                name: c.names[rank].clone(),
            });
        }
    }
    Ok(Slots { slots, reused })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, Source};

    fn compiled(names: &[&str]) -> Compiled {
        let list: Vec<String> = names
            .iter()
            .map(|n| format!(r#"{{"name": "{n}", "exe": ["/opt/{n}"]}}"#))
            .collect();
        let text = format!(r#"{{"version": 1, "agents": [{}]}}"#, list.join(","));
        Compiled::new(&Policy::parse(&text, Source::Embedded).unwrap().agents).unwrap()
    }

    #[test]
    fn selectors_keep_their_slots_by_name_and_new_ones_prefer_unused_slots() {
        let first = compiled(&["a", "b", "c"]);
        let s1 = assign_slots(&first, &[]).unwrap();
        assert_eq!(s1.slots, [0, 1, 2]);
        let mut held = vec![0u64; 256];
        for (rank, slot) in s1.slots.iter().enumerate() {
            held[*slot as usize] = first.keys[rank];
        }
        // b dropped, d inserted first, a and c move in the policy.
        let second = compiled(&["d", "c", "a"]);
        let s2 = assign_slots(&second, &held).unwrap();
        assert_eq!(
            s2.slots,
            [3, 2, 0],
            "d takes a slot nobody held; c and a keep theirs"
        );
        assert!(s2.reused.is_empty());
        // With every other slot held, b's old slot changes hands.
        let mut full = held.clone();
        for (s, k) in full.iter_mut().enumerate().skip(3) {
            *k = 1000 + s as u64;
        }
        let s3 = assign_slots(&second, &full).unwrap();
        assert_eq!(s3.slots, [1, 2, 0]);
        assert_eq!(s3.reused, [1]);
    }
}

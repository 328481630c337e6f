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

/// Where each selector lives in the kernel maps (`slots[rank]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slots {
    pub slots: Vec<u32>,
    /// Slots that get a selector they did not hold (free before, or
    /// another's): whatever marks they hold are not this selector's.
    pub fresh: Vec<u32>,
    /// (from, to): a selector that must leave its slot (one that gained
    /// names in its allow list while above the name bits): its marks move.
    pub moved: Vec<(u32, u32)>,
}

/// Gives each selector a slot: the one its name had (`previous[slot]`: the
/// name keys the maps hold now, 0 for free), else the lowest slot no
/// selector of the new policy keeps, one never held first. Selectors whose
/// allow lists hold names live below `MAX_NAME_SELECTORS` (their bit in
/// the learned masks); one kept above moves down. A selector thus keeps
/// its slot across reloads and restarts, so the marks of its processes
/// never need renumbering.
pub fn assign_slots(c: &Compiled, previous: &[u64]) -> Result<Slots, CompileError> {
    let n = MAX_SELECTORS as usize;
    let held = |s: usize| previous.get(s).copied().unwrap_or(0);
    let has_names = |rank: usize| c.agents[rank].names().next().is_some();
    let mut taken = vec![false; n];
    let mut slots = vec![u32::MAX; c.agents.len()];
    let mut from = vec![None; c.agents.len()];
    for (rank, key) in c.keys.iter().enumerate() {
        if let Some(slot) = previous.iter().position(|k| k == key) {
            if has_names(rank) && slot >= MAX_NAME_SELECTORS as usize {
                from[rank] = Some(slot as u32);
            } else {
                slots[rank] = slot as u32;
                taken[slot] = true;
            }
        }
    }
    // Selectors with names first: the low slots are theirs to take.
    let mut order: Vec<usize> = (0..c.agents.len()).collect();
    order.sort_by_key(|&r| !has_names(r));
    let mut moved = Vec::new();
    for rank in order {
        if slots[rank] != u32::MAX {
            continue;
        }
        let range = if has_names(rank) {
            0..MAX_NAME_SELECTORS as usize
        } else {
            0..n
        };
        let free = range
            .filter(|&s| !taken[s])
            .min_by_key(|&s| (held(s) != 0, s))
            .ok_or(CompileError::Slots {
                name: c.names[rank].clone(),
            })?;
        taken[free] = true;
        slots[rank] = free as u32;
        if let Some(old) = from[rank] {
            moved.push((old, free as u32));
        }
    }
    let fresh = slots
        .iter()
        .enumerate()
        .filter(|(rank, s)| held(**s as usize) != c.keys[*rank])
        .map(|(_, s)| *s)
        .collect();
    Ok(Slots {
        slots,
        fresh,
        moved,
    })
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
        assert_eq!(s2.fresh, [3]);
        // With every other slot held, b's old slot changes hands.
        let mut full = held.clone();
        for (s, k) in full.iter_mut().enumerate().skip(3) {
            *k = 1000 + s as u64;
        }
        let s3 = assign_slots(&second, &full).unwrap();
        assert_eq!(s3.slots, [1, 2, 0]);
        assert_eq!(s3.fresh, [1], "b's old slot changes hands");
    }

    #[test]
    fn selectors_with_names_live_below_the_name_bits_and_move_there() {
        let text = |names: bool| {
            let list: Vec<String> = (0..70)
                .map(|i| {
                    let allow = if names && i == 69 {
                        r#", "allow": ["gw.corp.test"]"#
                    } else {
                        ""
                    };
                    format!(r#"{{"name": "s{i}", "exe": ["/opt/{i}"]{allow}}}"#)
                })
                .collect();
            format!(r#"{{"version": 1, "agents": [{}]}}"#, list.join(","))
        };
        let c = |t: String| {
            Compiled::new(&Policy::parse(&t, Source::Embedded).unwrap().agents).unwrap()
        };
        let before = c(text(false));
        let s1 = assign_slots(&before, &[]).unwrap();
        assert_eq!(s1.slots[69], 69);
        let mut held = vec![0u64; 256];
        for (rank, slot) in s1.slots.iter().enumerate() {
            held[*slot as usize] = before.keys[rank];
        }
        // s69 gains a name while every low slot is held: it moves down,
        // taking a slot s0 leaves.
        let mut after_text = text(true);
        after_text = after_text.replacen(r#"{"name": "s0", "exe": ["/opt/0"]},"#, "", 1);
        let after = c(after_text);
        let s2 = assign_slots(&after, &held).unwrap();
        let rank69 = after.names.iter().position(|n| n == "s69").unwrap();
        assert_eq!(s2.slots[rank69], 0);
        assert_eq!(s2.moved, [(69, 0)]);
        assert_eq!(s2.fresh, [0]);
    }
}

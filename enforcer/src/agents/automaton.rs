//! The selectors compiled into one automaton, as the kernel runs it.
//!
//! Every pattern of every selector becomes a regular expression prefixed
//! by its kind's tag byte (`TAG_EXE`, ...); regex-automata builds one
//! anchored DFA of them all, which is then flattened into the tables the
//! exec tracepoint walks a byte at a time: a byte → class map, a
//! transition table (state × class), and per state the selector that
//! matches if the input ends there. State 0 is dead (stop early), 1 the
//! start. [`Tables::run`] walks the same tables the same way, so the
//! daemon's view of a process (the /proc scan, `enforcer agents`) agrees
//! with the kernel's by construction.

use std::collections::HashMap;

use enforcer_common::{
    ARGS_BYTES, FILENAME_BYTES, MAX_ARGV,
    agents::{
        KIND_CMDLINE, KIND_EXE, KIND_SCRIPT, MAX_STATES, MAX_TRANSITIONS, STATE_DEAD, STATE_START,
        TAG_CMDLINE, TAG_EXE, TAG_SCRIPT,
    },
};
use regex_automata::{
    Anchored, MatchKind,
    dfa::{Automaton, StartKind, dense},
    nfa::thompson,
    util::{primitives::StateID, start, syntax},
};

use crate::policy::agents::{Agent, PatternKind};

/// The flattened automaton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub classes: [u8; 256],
    /// Classes per state.
    pub stride: u32,
    /// `state * stride + class` → state.
    pub trans: Vec<u32>,
    /// State → selector index + 1 matched at the end of input (0: none).
    pub accept: Vec<u32>,
    /// `KIND_*` bits of the kinds some pattern has.
    pub kinds: u32,
}

/// Bytes regex-automata may use while building the automaton.
const DETERMINIZE_LIMIT: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Patterns that can each match anywhere in a long string (`*x*`
    /// command lines) make the automaton remember which of them matched
    /// so far: its size doubles with each.
    #[error(
        "agent selectors: the patterns need an automaton larger than the kernel tables can hold          ({cmdline} cmdline patterns; each with a '*' on both sides can double its size): match          most agents by exe or script, and keep two-sided cmdline patterns to a few"
    )]
    Exploded { cmdline: usize },
    #[error(
        "agent selector {name:?}: no slot left for it in the kernel maps (256 selectors, of \
         which the first 64 may name hosts in their allow lists); fewer selectors, or allow \
         networks instead of names"
    )]
    Slots { name: String },
    #[error("agent selectors: the patterns do not compile: {0}")]
    Build(String),
    #[error(
        "agent selectors: the patterns need {states} automaton states × {classes} byte classes; \
         the kernel tables hold {max_states} states and {max_transitions} transitions \
         (fewer or simpler patterns: a leading ** costs most)"
    )]
    TooLarge {
        states: usize,
        classes: usize,
        max_states: u32,
        max_transitions: u32,
    },
}

const fn tag(kind: PatternKind) -> u8 {
    match kind {
        PatternKind::Exe => TAG_EXE,
        PatternKind::Script => TAG_SCRIPT,
        PatternKind::Cmdline => TAG_CMDLINE,
    }
}

const fn kind_bit(kind: PatternKind) -> u32 {
    match kind {
        PatternKind::Exe => KIND_EXE,
        PatternKind::Script => KIND_SCRIPT,
        PatternKind::Cmdline => KIND_CMDLINE,
    }
}

impl Tables {
    /// No selectors: nothing matches.
    pub fn empty() -> Tables {
        Tables {
            classes: [0; 256],
            stride: 1,
            trans: vec![STATE_DEAD; 2],
            accept: vec![0; 2],
            kinds: 0,
        }
    }

    pub fn states(&self) -> usize {
        self.accept.len()
    }

    pub fn compile(agents: &[Agent]) -> Result<Tables, CompileError> {
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        let mut kinds = 0;
        for (i, a) in agents.iter().enumerate() {
            for (kind, glob) in a.patterns() {
                patterns.push(format!("\\x{:02x}(?:{})", tag(kind), glob.regex(kind)));
                owner.push(i as u32);
                kinds |= kind_bit(kind);
            }
        }
        if patterns.is_empty() {
            return Ok(Tables::empty());
        }
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    .match_kind(MatchKind::All)
                    // Far above what the kernel tables hold (a few MB), low
                    // enough that selectors which cannot fit fail in a
                    // second rather than a minute.
                    .dfa_size_limit(Some(DETERMINIZE_LIMIT))
                    .determinize_size_limit(Some(DETERMINIZE_LIMIT)),
            )
            .syntax(
                syntax::Config::new()
                    .unicode(false)
                    .utf8(false)
                    .dot_matches_new_line(true),
            )
            .thompson(thompson::Config::new().utf8(false))
            .build_many(&patterns)
            .map_err(|e| {
                if e.to_string().contains("size limit") {
                    CompileError::Exploded {
                        cmdline: agents.iter().map(|a| a.cmdline.len()).sum(),
                    }
                } else {
                    CompileError::Build(e.to_string())
                }
            })?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| CompileError::Build(e.to_string()))?;
        flatten(&dfa, start, &owner, kinds)
    }

    #[inline]
    fn next(&self, state: u32, byte: u8) -> u32 {
        let i = state as usize * self.stride as usize + self.classes[byte as usize] as usize;
        self.trans.get(i).copied().unwrap_or(STATE_DEAD)
    }

    /// The selector index + 1 matching `tag` then `bytes` (0: none), as
    /// the kernel's walk finds it.
    pub fn run(&self, tag: u8, bytes: impl IntoIterator<Item = u8>) -> u32 {
        let mut state = self.next(STATE_START, tag);
        for b in bytes {
            if state == STATE_DEAD {
                break;
            }
            state = self.next(state, b);
        }
        self.accept.get(state as usize).copied().unwrap_or(0)
    }

    /// The selector (index) an exec of `exe` with `argv` matches, with the
    /// kernel's bounds: the path as the tracepoint copies it, argv as the
    /// execve hook captures it (at most `MAX_ARGV` arguments and
    /// `ARGS_BYTES` bytes, NUL-terminated each).
    pub fn match_exec(&self, exe: &[u8], argv: &[&[u8]]) -> Option<usize> {
        let mut best = 0;
        let exe = &exe[..exe.len().min(FILENAME_BYTES - 1)];
        if self.kinds & KIND_EXE != 0 && !exe.is_empty() {
            best = first(best, self.run(TAG_EXE, exe.iter().copied()));
        }
        let mut joined = Vec::with_capacity(ARGS_BYTES);
        for a in argv.iter().take(MAX_ARGV) {
            if joined.len() >= ARGS_BYTES - 1 {
                break;
            }
            joined.extend_from_slice(a);
            joined.push(0);
        }
        joined.truncate(ARGS_BYTES);
        if self.kinds & KIND_SCRIPT != 0
            && let Some(script) = script_of(&joined)
        {
            best = first(best, self.run(TAG_SCRIPT, script.iter().copied()));
        }
        if self.kinds & KIND_CMDLINE != 0 && !joined.is_empty() {
            let line = &joined[..joined.len() - 1];
            let spaced = line.iter().map(|&b| if b == 0 { b' ' } else { b });
            best = first(best, self.run(TAG_CMDLINE, spaced));
        }
        best.checked_sub(1).map(|i| i as usize)
    }
}

/// The first argument after argv[0] that is not empty and does not start
/// with `-`, in NUL-separated argv (the kernel's scan).
fn script_of(joined: &[u8]) -> Option<&[u8]> {
    joined
        .split(|&b| b == 0)
        .skip(1)
        .find(|a| !a.is_empty() && a[0] != b'-')
}

fn first(a: u32, b: u32) -> u32 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) => a.min(b),
    }
}

/// Renumbers the DFA's states (dead 0, start 1, the rest as found),
/// computes byte classes from identical transition columns, and the
/// selector matched at the end of input in each state.
fn flatten(
    dfa: &dense::DFA<Vec<u32>>,
    start: StateID,
    owner: &[u32],
    kinds: u32,
) -> Result<Tables, CompileError> {
    let mut ids: HashMap<StateID, u32> = HashMap::new();
    let mut order: Vec<Option<StateID>> = vec![None, Some(start)];
    ids.insert(start, STATE_START);
    let mut rows: Vec<[u32; 256]> = vec![[STATE_DEAD; 256]];
    let mut accept = vec![0u32];
    let mut i = 1;
    while i < order.len() {
        let sid = order[i].expect("only the dead state has no id");
        let mut row = [STATE_DEAD; 256];
        for b in 0..=255u8 {
            let next = dfa.next_state(sid, b);
            if dfa.is_dead_state(next) || dfa.is_quit_state(next) {
                continue;
            }
            let n = order.len() as u32;
            let id = *ids.entry(next).or_insert_with(|| {
                order.push(Some(next));
                n
            });
            row[b as usize] = id;
        }
        rows.push(row);
        let eoi = dfa.next_eoi_state(sid);
        let mut best = 0;
        if dfa.is_match_state(eoi) {
            for m in 0..dfa.match_len(eoi) {
                let sel = owner[dfa.match_pattern(eoi, m).as_usize()] + 1;
                best = first(best, sel);
            }
        }
        accept.push(best);
        i += 1;
        if order.len() > MAX_STATES as usize {
            // Every state found must have its row in the kernel table: a
            // transition to a row never written would read stale entries.
            return Err(CompileError::TooLarge {
                states: order.len(),
                classes: 256,
                max_states: MAX_STATES,
                max_transitions: MAX_TRANSITIONS,
            });
        }
    }
    // Byte classes: bytes whose columns are equal in every row.
    let mut classes = [0u8; 256];
    let mut columns: HashMap<Vec<u32>, u8> = HashMap::new();
    for b in 0..256 {
        let column: Vec<u32> = rows.iter().map(|r| r[b]).collect();
        let n = columns.len();
        if n > 255 && !columns.contains_key(&column) {
            // 256 distinct columns cannot overflow a u8 index: n ≤ 255 here.
            unreachable!("at most 256 byte values");
        }
        classes[b] = *columns.entry(column).or_insert(n as u8);
    }
    let stride = columns.len();
    let states = rows.len();
    if states > MAX_STATES as usize || states * stride > MAX_TRANSITIONS as usize {
        return Err(CompileError::TooLarge {
            states,
            classes: stride,
            max_states: MAX_STATES,
            max_transitions: MAX_TRANSITIONS,
        });
    }
    let mut representative = vec![0usize; stride];
    for b in (0..256).rev() {
        representative[classes[b] as usize] = b;
    }
    let mut trans = Vec::with_capacity(states * stride);
    for row in &rows {
        trans.extend(representative.iter().map(|&b| row[b]));
    }
    Ok(Tables {
        classes,
        stride: stride as u32,
        trans,
        accept,
        kinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, Source};

    fn tables(agents: &str) -> Tables {
        let text = format!(r#"{{"version": 1, "agents": {agents}}}"#);
        let policy = Policy::parse(&text, Source::Embedded).unwrap();
        Tables::compile(&policy.agents).unwrap()
    }

    #[test]
    fn exe_globs_follow_version_directories_and_homes() {
        let t = tables(
            r#"[{"name": "claude", "exe": ["~/.local/share/claude/versions/*", "**/bin/claude"]}]"#,
        );
        let m = |exe: &str| t.match_exec(exe.as_bytes(), &[exe.as_bytes()]);
        assert_eq!(m("/home/ana/.local/share/claude/versions/1.2.3"), Some(0));
        assert_eq!(m("/home/ana/.local/share/claude/versions/1.2.4"), Some(0));
        assert_eq!(m("/root/.local/share/claude/versions/2.0.0"), Some(0));
        assert_eq!(m("/usr/local/bin/claude"), Some(0));
        assert_eq!(m("bin/claude"), Some(0));
        assert_eq!(m("/home/ana/.local/share/claude/versions/1.2.3/x"), None);
        assert_eq!(m("/home/CORP/ana/.local/share/claude/versions/1"), Some(0));
        assert_eq!(m("/var/home/ana/.local/share/claude/versions/1"), Some(0));
        assert_eq!(m("/srv/ana/.local/share/claude/versions/1"), None);
        assert_eq!(m("/home/a/b/c/.local/share/claude/versions/1"), None);
        assert_eq!(m("/usr/bin/claude2"), None);
        assert_eq!(m("/usr/bin/python3"), None);
    }

    #[test]
    fn scripts_are_the_first_argument_that_is_no_option() {
        let t = tables(r#"[{"name": "fake", "script": ["/opt/fake-agent/cli.py", "aider"]}]"#);
        let m = |argv: &[&str]| {
            let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
            t.match_exec(b"/usr/bin/python3", &argv)
        };
        assert_eq!(m(&["python3", "/opt/fake-agent/cli.py", "--x"]), Some(0));
        assert_eq!(m(&["python3", "-u", "/opt/fake-agent/cli.py"]), Some(0));
        assert_eq!(m(&["python3", "-m", "aider"]), Some(0));
        assert_eq!(
            m(&["python3", "/opt/other.py", "/opt/fake-agent/cli.py"]),
            None
        );
        assert_eq!(
            m(&["/opt/fake-agent/cli.py"]),
            None,
            "argv[0] is not the script"
        );
        assert_eq!(m(&["python3"]), None);
    }

    #[test]
    fn cmdline_stars_cross_spaces_and_the_first_selector_wins() {
        let t = tables(
            r#"[{"name": "a", "cmdline": ["node *claude-code*"]},
                {"name": "b", "exe": ["/usr/bin/node"]}]"#,
        );
        let argv: Vec<&[u8]> = vec![b"node", b"/x/claude-code/cli.js", b"-p"];
        assert_eq!(t.match_exec(b"/usr/bin/node", &argv), Some(0));
        let argv: Vec<&[u8]> = vec![b"node", b"server.js"];
        assert_eq!(t.match_exec(b"/usr/bin/node", &argv), Some(1));
    }

    #[test]
    fn the_embedded_default_compiles_into_the_kernel_tables() {
        let t = Tables::compile(&Policy::embedded().agents).unwrap();
        assert!(t.states() > 2, "the default contains agents");
        assert!(t.trans.len() <= MAX_TRANSITIONS as usize);
    }

    #[test]
    fn selectors_that_cannot_fit_fail_fast_with_advice() {
        let list: Vec<String> = (0..40)
            .map(|i| format!(r#"{{"name": "a{i}", "cmdline": ["* --agent-{i} *"]}}"#))
            .collect();
        let text = format!(r#"{{"version": 1, "agents": [{}]}}"#, list.join(","));
        let policy = Policy::parse(&text, Source::Embedded).unwrap();
        let started = std::time::Instant::now();
        let err = Tables::compile(&policy.agents).unwrap_err().to_string();
        assert!(err.contains("40 cmdline patterns"), "{err}");
        eprintln!("failed in {:?}", started.elapsed());
    }

    #[test]
    fn a_hundred_selectors_fit() {
        let list: Vec<String> = (0..100)
            .map(|i| format!(r#"{{"name": "a{i}", "exe": ["**/bin/agent-{i}", "/opt/agent-{i}/versions/*/run"]}}"#))
            .collect();
        let t = tables(&format!("[{}]", list.join(",")));
        let argv: Vec<&[u8]> = vec![b"x"];
        assert_eq!(t.match_exec(b"/usr/bin/agent-57", &argv), Some(57));
        assert_eq!(t.match_exec(b"/opt/agent-9/versions/3/run", &argv), Some(9));
        assert_eq!(t.match_exec(b"/usr/bin/agent-100", &argv), None);
    }
}

use aya_ebpf::maps::lpm_trie::Key;
use enforcer_common::{
    CONFIG_MODE, MODE_AUDIT, VERDICT_ALLOWED, VERDICT_AUDITED, VERDICT_DENIED, VERDICT_ERROR,
    VERDICT_PASS,
};

use crate::maps::{ALLOW_LPM_V4, ALLOW_LPM_V6, CONFIG, DENY_LPM_V4, DENY_LPM_V6, DENY_V4, DENY_V6};

/// The verdict for an address and the rule behind it. A plain struct, not an
/// `Option`: the verifier rejects the uninitialised payload LLVM leaves in
/// the `None` case.
#[derive(Clone, Copy)]
pub struct Match {
    pub verdict: u32,
    pub rule_id: u32,
}

#[inline(always)]
pub fn audit_mode() -> bool {
    matches!(CONFIG.get(CONFIG_MODE), Some(&MODE_AUDIT))
}

/// Turns "a ban matched" into the final verdict for the current mode.
#[inline(always)]
fn finish(rule_id: u32, allow: Option<&u32>) -> Match {
    match allow {
        Some(&allow_rule) => Match {
            verdict: VERDICT_ALLOWED,
            rule_id: allow_rule,
        },
        None if audit_mode() => Match {
            verdict: VERDICT_AUDITED,
            rule_id,
        },
        None => Match {
            verdict: VERDICT_DENIED,
            rule_id,
        },
    }
}

/// The verdict for an internal error, per the documented policy
/// (`enforcer_common::VERDICT_ERROR`): deny unless auditing.
#[inline(always)]
pub fn error_denies() -> bool {
    !audit_mode()
}

pub const NO_MATCH: Match = Match {
    verdict: VERDICT_PASS,
    rule_id: 0,
};

pub const ERROR: Match = Match {
    verdict: VERDICT_ERROR,
    rule_id: 0,
};

/// `NO_MATCH` when no ban covers the address: the common, cheap path does
/// one hash and one trie lookup and never touches the allow trie.
#[inline(always)]
pub fn check_v4(addr: u32) -> Match {
    let key = Key::new(32, addr);
    let rule_id = match DENY_V4.get_ptr(addr) {
        // SAFETY: the map is BPF_F_NO_PREALLOC, so a value is never reused
        // under us; a u32 read cannot tear.
        Some(rule) => unsafe { *rule },
        None => match DENY_LPM_V4.get(&key) {
            Some(rule) => *rule,
            None => return NO_MATCH,
        },
    };
    finish(rule_id, ALLOW_LPM_V4.get(&key))
}

#[inline(always)]
pub fn check_v6(addr: [u32; 4]) -> Match {
    let key = Key::new(128, addr);
    let rule_id = match DENY_V6.get_ptr(addr) {
        // SAFETY: as in `check_v4`.
        Some(rule) => unsafe { *rule },
        None => match DENY_LPM_V6.get(&key) {
            Some(rule) => *rule,
            None => return NO_MATCH,
        },
    };
    finish(rule_id, ALLOW_LPM_V6.get(&key))
}

/// `::ffff:a.b.c.d` → `a.b.c.d` (as the v4 key).
#[inline(always)]
pub fn v4_mapped(addr: [u32; 4]) -> Option<u32> {
    if addr[0] == 0 && addr[1] == 0 && addr[2] == u32::from_be(0x0000_ffff) {
        Some(addr[3])
    } else {
        None
    }
}

/// Whether the verdict lets the traffic through.
#[inline(always)]
pub fn passes(verdict: u32) -> bool {
    match verdict {
        VERDICT_DENIED => false,
        VERDICT_ERROR => !error_denies(),
        _ => true,
    }
}

//! How much of the verifier's budget each loaded program took. The kernel
//! refuses a program whose verification walks more than
//! `BPF_COMPLEXITY_LIMIT_INSNS` instructions; `sni_msg`, whose parsers are
//! bounded loops over many states, uses most of it. Another kernel's
//! verifier may walk more of the same program, so a program close to the
//! limit here is named at load, before it is refused elsewhere.

use aya::Ebpf;
use tracing::warn;

/// The kernel's limit on instructions walked while verifying one program.
pub const LIMIT: u32 = 1_000_000;

/// The share of `LIMIT` past which a program is reported at load.
pub const WARN_PERCENT: u32 = 95;

/// Each loaded program's name and the instructions its verification
/// walked (kernels before 5.16 do not say: left out).
pub fn used(ebpf: &Ebpf) -> Vec<(String, u32)> {
    ebpf.programs()
        .filter_map(|(name, program)| {
            let count = program.info().ok()?.verified_instruction_count()?;
            Some((name.to_owned(), count))
        })
        .collect()
}

/// Warns of every program past `WARN_PERCENT` of the limit.
pub fn report(ebpf: &Ebpf) {
    for (program, count) in used(ebpf) {
        if u64::from(count) * 100 > u64::from(LIMIT) * u64::from(WARN_PERCENT) {
            warn!(
                program,
                verified = count,
                limit = LIMIT,
                "close to the verifier's limit: a kernel whose verifier walks more may refuse it"
            );
        }
    }
}

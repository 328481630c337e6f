//! The eBPF object, embedded at build time by build.rs.

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/enforcer"));

/// The embedded object, or `None` if this binary was built with
/// `AYA_BUILD_SKIP` (for clippy and docs) and carries an empty stub.
pub fn object() -> Option<&'static [u8]> {
    (!OBJECT.is_empty()).then_some(OBJECT)
}

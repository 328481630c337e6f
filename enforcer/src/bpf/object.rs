//! The eBPF object, embedded at build time by build.rs.

/// 8-byte aligned, as the ELF parser expects of its input (`include_bytes!`
/// alone only promises byte alignment).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer"));

/// The embedded object, or `None` if this binary was built with
/// `AYA_BUILD_SKIP` (for clippy and docs) and carries an empty stub.
pub fn object() -> Option<&'static [u8]> {
    (!OBJECT.is_empty()).then_some(OBJECT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_object_is_8_byte_aligned() {
        assert_eq!(super::OBJECT.as_ptr() as usize % 8, 0);
    }
}

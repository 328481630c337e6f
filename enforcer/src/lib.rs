pub static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/enforcer"));

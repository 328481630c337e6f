//! Struct member offsets from the kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! The Unix-domain hooks read the caller's user namespace through
//! `task_struct` → `cred` → `user_namespace`, whose offsets differ between
//! kernel builds. aya-obj parses BTF but does not expose members; the BTF
//! crate that does (btf-rs) is LGPL. The format is small and stable (uapi
//! `linux/btf.h`): a header, then types, each a 12-byte record followed by
//! kind-specific data whose size the kind and `vlen` give.

use std::collections::HashMap;

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// The members of some structs of one BTF blob: struct name → (member
/// name → bit offset). Only the structs asked for are kept: the kernel's
/// BTF describes tens of thousands.
#[derive(Debug, Default)]
pub struct Structs {
    structs: HashMap<String, HashMap<String, u32>>,
}

impl Structs {
    /// The structs `wanted` of the running kernel's BTF; `None` if it is
    /// absent or unreadable.
    pub fn vmlinux(wanted: &[&str]) -> Option<Structs> {
        Structs::parse(&std::fs::read(VMLINUX).ok()?, wanted)
    }

    /// `None` on anything malformed.
    pub fn parse(data: &[u8], wanted: &[&str]) -> Option<Structs> {
        let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
        let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?));
        if u16_at(0)? != MAGIC {
            return None;
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let str_off = u32_at(16)? as usize;
        let types = hdr_len.checked_add(type_off)?;
        let strings = hdr_len.checked_add(str_off)?;
        let name = |off: u32| -> Option<&str> {
            let start = strings.checked_add(off as usize)?;
            let rest = data.get(start..)?;
            let end = rest.iter().position(|&b| b == 0)?;
            std::str::from_utf8(&rest[..end]).ok()
        };
        let mut out = Structs::default();
        let mut at = types;
        let end = types.checked_add(type_len)?;
        while at < end {
            let name_off = u32_at(at)?;
            let info = u32_at(at + 4)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            at += 12;
            let extra = match kind {
                1 => 4,                    // INT
                3 => 12,                   // ARRAY
                4 | 5 => 12 * vlen,        // STRUCT, UNION
                6 => 8 * vlen,             // ENUM
                13 => 8 * vlen,            // FUNC_PROTO
                14 => 4,                   // VAR
                15 => 12 * vlen,           // DATASEC
                17 => 4,                   // DECL_TAG
                19 => 12 * vlen,           // ENUM64
                2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
                _ => return None,
            };
            if kind == KIND_STRUCT && name_off != 0 {
                let sname = name(name_off)?;
                // The first definition wins (kernel BTF has one per name).
                if wanted.contains(&sname) && !out.structs.contains_key(sname) {
                    let mut members = HashMap::new();
                    for i in 0..vlen {
                        let m = at + 12 * i;
                        let mname = name(u32_at(m)?)?;
                        let bits = u32_at(m + 8)?;
                        // With kind_flag, the low 24 bits are the offset
                        // and the high 8 a bitfield size.
                        let bits = if kind_flag { bits & 0x00ff_ffff } else { bits };
                        if !mname.is_empty() {
                            members.insert(mname.to_owned(), bits);
                        }
                    }
                    out.structs.insert(sname.to_owned(), members);
                }
            }
            at = at.checked_add(extra)?;
        }
        Some(out)
    }

    /// The byte offset of `member` in `struct name` (`None` for a bitfield
    /// not starting a byte).
    pub fn offset(&self, name: &str, member: &str) -> Option<u32> {
        self.bit_offset(name, member)
            .filter(|b| b % 8 == 0)
            .map(|b| b / 8)
    }

    /// The bit offset of `member` (a bitfield's first bit) in `struct name`.
    pub fn bit_offset(&self, name: &str, member: &str) -> Option<u32> {
        self.structs.get(name)?.get(member).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_s_btf_gives_the_user_namespace_path() {
        let Some(s) = Structs::vmlinux(&["task_struct", "cred", "user_namespace", "ns_common"])
        else {
            eprintln!("skipped: {VMLINUX} is absent (a kernel built without BTF)");
            return;
        };
        // Offsets differ per build; they exist and are plausible.
        let cred = s.offset("task_struct", "cred").expect("task_struct.cred");
        assert!(cred > 0 && cred < 1 << 16, "{cred}");
        assert!(s.offset("cred", "user_ns").is_some());
        assert!(s.offset("user_namespace", "ns").is_some());
        assert!(s.offset("ns_common", "inum").is_some());
        assert_eq!(s.offset("task_struct", "no_such_member"), None);
        // A bitfield (TCP Fast Open's socket option) has a bit offset.
        let tcp = Structs::vmlinux(&["tcp_sock"]).unwrap();
        assert!(tcp.offset("tcp_sock", "fastopen_req").is_some());
        assert!(tcp.bit_offset("tcp_sock", "fastopen_connect").is_some());
        assert_eq!(s.offset("sock", "sk_family"), None, "not asked for");
    }

    #[test]
    fn malformed_blobs_are_refused() {
        assert!(Structs::parse(&[], &[]).is_none());
        assert!(Structs::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0], &[]).is_none());
        let mut header = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
        // type_off 0, type_len 12 (one record past the end), str_off, str_len.
        header.extend([0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Structs::parse(&header, &[]).is_none());
    }
}

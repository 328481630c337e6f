//! Struct member offsets from the kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! Some programs read kernel structs through `bpf_probe_read_kernel`
//! (`task_struct` → `real_cred` → `user_namespace`, `tcp_sock`'s Fast Open
//! state), whose offsets differ between kernel builds. aya-obj parses BTF
//! but does not expose members; the BTF crate that does (btf-rs) is LGPL.
//! The format is small and stable (uapi `linux/btf.h`): a header, then
//! types, each a 12-byte record followed by kind-specific data whose size
//! the kind and `vlen` give.

use std::{collections::HashMap, sync::OnceLock};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The structs the programs read, kept from the kernel's BTF.
pub const KERNEL_STRUCTS: [&str; 9] = [
    "task_struct",
    "cred",
    "user_namespace",
    "ns_common",
    "nsproxy",
    "mnt_namespace",
    "tcp_sock",
    "bpf_sock_addr_kern",
    "sk_msg",
];

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
/// Anonymous structs and unions nested in one another (a randomized
/// layout wraps `task_struct`'s fields in one).
const MAX_NESTING: usize = 4;

/// The members of some structs of one BTF blob: struct name → (member
/// name → bit offset), members of anonymous structs and unions included.
/// Only the structs asked for are kept: the kernel's BTF describes tens of
/// thousands.
#[derive(Debug, Default)]
pub struct Structs {
    structs: HashMap<String, HashMap<String, u32>>,
}

/// One type record: where it starts, its kind, vlen and kind_flag.
#[derive(Clone, Copy)]
struct Record {
    at: usize,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
}

impl Structs {
    /// [`KERNEL_STRUCTS`] of the running kernel's BTF, read once per
    /// process; `None` if it is absent or unreadable.
    pub fn kernel() -> Option<&'static Structs> {
        static KERNEL: OnceLock<Option<Structs>> = OnceLock::new();
        KERNEL
            .get_or_init(|| Structs::parse(&std::fs::read(VMLINUX).ok()?, &KERNEL_STRUCTS))
            .as_ref()
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
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let types = hdr_len.checked_add(type_off)?;
        let strings = hdr_len.checked_add(str_off)?;
        let strings_end = strings.checked_add(str_len)?.min(data.len());
        let name = |off: u32| -> Option<&str> {
            let start = strings.checked_add(off as usize)?;
            let rest = data.get(start..strings_end)?;
            let end = rest.iter().position(|&b| b == 0)?;
            std::str::from_utf8(&rest[..end]).ok()
        };
        // Type ids start at 1: records[id - 1].
        let mut records = Vec::new();
        let mut at = types;
        let end = types.checked_add(type_len)?.min(data.len());
        while at < end {
            let info = u32_at(at + 4)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
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
            records.push(Record {
                at,
                kind,
                vlen,
                kind_flag: info >> 31 == 1,
            });
            at = at.checked_add(12 + extra)?;
        }
        if at > end {
            return None;
        }
        let mut out = Structs::default();
        for r in &records {
            if r.kind != KIND_STRUCT {
                continue;
            }
            let Some(sname) = name(u32_at(r.at)?) else {
                continue;
            };
            // The first definition wins (kernel BTF has one per name).
            if !wanted.contains(&sname) || out.structs.contains_key(sname) {
                continue;
            }
            let mut members = HashMap::new();
            let mut stack = vec![(*r, 0u32, 0usize)];
            while let Some((rec, base, depth)) = stack.pop() {
                for i in 0..rec.vlen {
                    let m = rec.at + 12 + 12 * i;
                    let mname = name(u32_at(m)?)?;
                    let bits = u32_at(m + 8)?;
                    // With kind_flag, the low 24 bits are the offset and
                    // the high 8 a bitfield size.
                    let bits = base
                        + if rec.kind_flag {
                            bits & 0x00ff_ffff
                        } else {
                            bits
                        };
                    if !mname.is_empty() {
                        members.entry(mname.to_owned()).or_insert(bits);
                        continue;
                    }
                    // An anonymous struct or union: its members are this
                    // struct's, at its offset.
                    let ty = u32_at(m + 4)? as usize;
                    match ty.checked_sub(1).and_then(|i| records.get(i)) {
                        Some(inner)
                            if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                                && depth < MAX_NESTING =>
                        {
                            stack.push((*inner, bits, depth + 1));
                        }
                        _ => {}
                    }
                }
            }
            out.structs.insert(sname.to_owned(), members);
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
    fn this_kernel_s_btf_gives_what_the_programs_read() {
        let Some(s) = Structs::kernel() else {
            eprintln!("skipped: {VMLINUX} is absent (a kernel built without BTF)");
            return;
        };
        // Offsets differ per build; they exist and are plausible.
        let cred = s.offset("task_struct", "real_cred").expect("real_cred");
        assert!(cred > 0 && cred < 1 << 16, "{cred}");
        for (st, m) in [
            ("cred", "user_ns"),
            ("user_namespace", "ns"),
            ("ns_common", "inum"),
            ("task_struct", "nsproxy"),
            ("nsproxy", "mnt_ns"),
            ("mnt_namespace", "ns"),
            ("tcp_sock", "fastopen_req"),
            ("bpf_sock_addr_kern", "uaddrlen"),
            ("sk_msg", "sk"),
            ("tcp_sock", "write_seq"),
        ] {
            assert!(s.offset(st, m).is_some(), "{st}.{m}");
        }
        assert_eq!(s.offset("task_struct", "no_such_member"), None);
        assert_eq!(s.offset("sock", "sk_family"), None, "not asked for");
        // A bitfield (TCP Fast Open's socket option) has a bit offset.
        assert!(s.bit_offset("tcp_sock", "fastopen_connect").is_some());
    }

    /// A blob of two types: `struct outer { int a; struct { int b; }; }`
    /// with the inner struct anonymous.
    fn nested() -> Vec<u8> {
        let strings = b"\0outer\0a\0b\0int\0";
        let mut types = Vec::new();
        let rec = |types: &mut Vec<u8>, name: u32, info: u32, size: u32| {
            types.extend(name.to_le_bytes());
            types.extend(info.to_le_bytes());
            types.extend(size.to_le_bytes());
        };
        let member = |types: &mut Vec<u8>, name: u32, ty: u32, bits: u32| {
            types.extend(name.to_le_bytes());
            types.extend(ty.to_le_bytes());
            types.extend(bits.to_le_bytes());
        };
        // 1: int
        rec(&mut types, 11, 1 << 24, 4);
        types.extend(32u32.to_le_bytes());
        // 2: struct outer { a @0, anonymous (3) @32 }
        rec(&mut types, 1, 4 << 24 | 2, 8);
        member(&mut types, 7, 1, 0);
        member(&mut types, 0, 3, 32);
        // 3: struct { b @0 }
        rec(&mut types, 0, 4 << 24 | 1, 4);
        member(&mut types, 9, 1, 0);
        let mut blob = vec![0x9f, 0xeb, 1, 0];
        blob.extend(24u32.to_le_bytes());
        blob.extend(0u32.to_le_bytes());
        blob.extend((types.len() as u32).to_le_bytes());
        blob.extend((types.len() as u32).to_le_bytes());
        blob.extend((strings.len() as u32).to_le_bytes());
        blob.extend(types);
        blob.extend(strings);
        blob
    }

    #[test]
    fn members_of_anonymous_structs_are_the_outer_struct_s() {
        let s = Structs::parse(&nested(), &["outer"]).unwrap();
        assert_eq!(s.offset("outer", "a"), Some(0));
        assert_eq!(s.offset("outer", "b"), Some(4));
    }

    #[test]
    fn malformed_blobs_are_refused() {
        assert!(Structs::parse(&[], &[]).is_none());
        assert!(Structs::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0], &[]).is_none());
        let mut blob = nested();
        blob.truncate(blob.len() - 30);
        assert!(Structs::parse(&blob, &["outer"]).is_none_or(|s| s.offset("outer", "b").is_none()));
        // An unknown kind.
        let mut bad = nested();
        bad[24 + 7] = 31;
        assert!(Structs::parse(&bad, &["outer"]).is_none());
    }
}

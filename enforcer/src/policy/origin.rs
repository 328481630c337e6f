//! Where a policy entry was written (`<file>: deny.cidrs[3]`), without a
//! string per entry: a policy may hold a million entries, and the rule
//! table names each one again. The file name is shared; the text is made
//! when it is shown.

use std::{fmt, sync::Arc};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    source: Arc<str>,
    /// `deny.cidrs`, `nat64_prefixes`, ...
    field: &'static str,
    index: u32,
}

impl Origin {
    pub fn new(source: Arc<str>, field: &'static str, index: usize) -> Origin {
        Origin {
            source,
            field,
            index: u32::try_from(index).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}[{}]", self.source, self.field, self.index)
    }
}

impl PartialEq<&str> for Origin {
    fn eq(&self, other: &&str) -> bool {
        // `<source>: <field>[<index>]`, compared piece by piece.
        other
            .strip_prefix(&*self.source)
            .and_then(|r| r.strip_prefix(": "))
            .and_then(|r| r.strip_prefix(self.field))
            .and_then(|r| r.strip_prefix('['))
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|i| i == self.index.to_string())
    }
}

impl serde::Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

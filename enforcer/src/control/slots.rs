//! Connection slots of the control socket: a total, a share per uid, and
//! slots only root may take, so that no reader (however many
//! connections it opens, from however many of its uids) locks root out
//! of `status`, `reload` or `detach`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub total: usize,
    /// Connections one non-root uid may hold.
    pub per_uid: usize,
    /// Of `total`, how many only root may take.
    pub root_reserved: usize,
}

pub const LIMITS: Limits = Limits {
    total: 64,
    per_uid: 8,
    root_reserved: 4,
};

#[derive(Debug, Default)]
struct Used {
    total: usize,
    others: usize,
    per_uid: HashMap<u32, usize>,
}

/// Shared by the accept loop and the connection tasks.
#[derive(Debug, Clone)]
pub struct Slots {
    limits: Limits,
    used: Arc<Mutex<Used>>,
}

/// A taken slot; dropping it gives it back.
#[derive(Debug)]
pub struct Slot {
    uid: u32,
    used: Arc<Mutex<Used>>,
}

impl Slots {
    pub fn new(limits: Limits) -> Slots {
        Slots {
            limits,
            used: Arc::default(),
        }
    }

    /// A slot for a connection of `uid`, or `None` when its share is
    /// taken.
    pub fn take(&self, uid: u32) -> Option<Slot> {
        let mut used = self.used.lock().expect("slot accounting never panics");
        let mine = used.per_uid.get(&uid).copied().unwrap_or(0);
        let free = if uid == 0 {
            used.total < self.limits.total
        } else {
            used.total < self.limits.total
                && used.others < self.limits.total - self.limits.root_reserved
                && mine < self.limits.per_uid
        };
        if !free {
            return None;
        }
        used.total += 1;
        if uid != 0 {
            used.others += 1;
        }
        *used.per_uid.entry(uid).or_default() += 1;
        Some(Slot {
            uid,
            used: self.used.clone(),
        })
    }

    /// Connections held now.
    pub fn in_use(&self) -> usize {
        self.used
            .lock()
            .expect("slot accounting never panics")
            .total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = self.used.lock().expect("slot accounting never panics");
        used.total -= 1;
        if self.uid != 0 {
            used.others -= 1;
        }
        if let Some(n) = used.per_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                used.per_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        total: 10,
        per_uid: 3,
        root_reserved: 2,
    };

    #[test]
    fn one_uid_gets_its_share_and_no_more() {
        let slots = Slots::new(SMALL);
        let held: Vec<_> = (0..3).map(|_| slots.take(1000).unwrap()).collect();
        assert!(slots.take(1000).is_none());
        assert!(slots.take(1001).is_some(), "others are not affected");
        drop(held);
        assert_eq!(slots.in_use(), 0);
        assert!(slots.take(1000).is_some(), "given back on drop");
    }

    #[test]
    fn many_uids_cannot_take_the_slots_reserved_for_root() {
        let slots = Slots::new(SMALL);
        let mut held = Vec::new();
        for uid in 1..=10 {
            while let Some(s) = slots.take(uid) {
                held.push(s);
            }
        }
        assert_eq!(held.len(), 8, "total minus the reserve");
        let root: Vec<_> = (0..2).map(|_| slots.take(0).unwrap()).collect();
        assert!(slots.take(0).is_none(), "the total bounds root too");
        held.pop();
        assert!(slots.take(0).is_some(), "a freed slot serves root");
        drop(root);
        assert!(slots.take(42).is_some());
    }

    #[test]
    fn root_may_use_every_slot() {
        let slots = Slots::new(SMALL);
        let held: Vec<_> = (0..10).map(|_| slots.take(0).unwrap()).collect();
        assert!(slots.take(0).is_none());
        assert!(slots.take(5).is_none());
        drop(held);
        assert_eq!(slots.in_use(), 0);
    }
}

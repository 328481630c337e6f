//! Writes the verdict maps: takes the desired contents, applies the diff
//! against what the kernel holds. Adds go in before removes, tightening
//! before loosening, and capacity is checked before the first write, so a
//! change either fits or leaves the maps exactly as they were.

use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, OwnedFd},
    path::PathBuf,
};

use aya::maps::{HashMap, LpmTrie, Map, MapData, MapError, lpm_trie::Key};
use enforcer_common::maps as names;

use super::pins::Pins;
use crate::{
    desired::{Desired, Prefix, V4, V6},
    mapdiff::{MapDiff, diff},
};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("opening pinned map {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: MapError,
    },
    #[error("{path}: cannot watch the ring buffer for events: {source}")]
    Poll {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading map {map}: {source}")]
    Read {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error(
        "map {map} holds at most {capacity} entries but the policy needs {needed}; \
         nothing was changed"
    )]
    Capacity {
        map: &'static str,
        needed: usize,
        capacity: u32,
    },
    #[error("writing map {map}: {source} (entries written before this one stay in force)")]
    Write {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

/// What one `apply` changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub upserts: usize,
    pub removes: usize,
}

/// One verdict map, seen as `key → rule id`.
trait Table<K> {
    fn put(&mut self, key: &K, rule: u32) -> Result<(), MapError>;
    /// Many entries at once (one by one unless the map can do better).
    fn put_many(&mut self, entries: &[(K, u32)]) -> Result<(), MapError> {
        for (k, v) in entries {
            self.put(k, *v)?;
        }
        Ok(())
    }
    fn delete(&mut self, key: &K) -> Result<(), MapError>;
    fn read_all(&self) -> Result<BTreeMap<K, u32>, MapError>;
}

/// A hash map, with its descriptor for batch updates.
struct Exact<K: aya::Pod>(HashMap<MapData, K, u32>, OwnedFd);

impl<K: aya::Pod + Ord + Copy> Table<K> for Exact<K> {
    fn put(&mut self, key: &K, rule: u32) -> Result<(), MapError> {
        self.0.insert(key, rule, 0)
    }
    /// `BPF_MAP_UPDATE_BATCH` in chunks (a full load of a million
    /// addresses is a few hundred syscalls); one by one where the kernel
    /// has no batch updates.
    fn put_many(&mut self, entries: &[(K, u32)]) -> Result<(), MapError> {
        if entries.len() < 64 {
            for (k, v) in entries {
                self.put(k, *v)?;
            }
            return Ok(());
        }
        let keys: Vec<K> = entries.iter().map(|(k, _)| *k).collect();
        let values: Vec<u32> = entries.iter().map(|(_, v)| *v).collect();
        match super::batch::update(self.1.as_fd(), &keys, &values) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                for (k, v) in entries {
                    self.put(k, *v)?;
                }
                Ok(())
            }
            Err(io_error) => Err(MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_update_batch",
                io_error,
            })),
        }
    }
    fn delete(&mut self, key: &K) -> Result<(), MapError> {
        self.0.remove(key)
    }
    fn read_all(&self) -> Result<BTreeMap<K, u32>, MapError> {
        self.0.iter().collect()
    }
}

struct Trie<A: aya::Pod>(LpmTrie<MapData, A, u32>);

impl<A: aya::Pod + Ord> Table<Prefix<A>> for Trie<A> {
    fn put(&mut self, key: &Prefix<A>, rule: u32) -> Result<(), MapError> {
        self.0.insert(&Key::new(key.len, key.addr), rule, 0)
    }
    fn delete(&mut self, key: &Prefix<A>) -> Result<(), MapError> {
        self.0.remove(&Key::new(key.len, key.addr))
    }
    fn read_all(&self) -> Result<BTreeMap<Prefix<A>, u32>, MapError> {
        self.0
            .iter()
            .map(|kv| {
                kv.map(|(k, v)| {
                    (
                        Prefix {
                            len: k.prefix_len(),
                            addr: k.data(),
                        },
                        v,
                    )
                })
            })
            .collect()
    }
}

/// Upserts from which the writer's copy of a map is repacked (`upsert`).
const REPACK_MIN: usize = 4096;

/// A table with its name, capacity and the writer's copy of its contents.
struct Slot<K, T> {
    name: &'static str,
    capacity: u32,
    table: T,
    current: BTreeMap<K, u32>,
}

impl<K: Ord + Copy, T: Table<K>> Slot<K, T> {
    fn open(
        pins: &Pins,
        name: &'static str,
        wrap: impl FnOnce(Map, OwnedFd) -> Result<T, MapError>,
    ) -> Result<Self, WriteError> {
        let path = pins.map(name);
        let open_err = |source| WriteError::Open {
            path: path.clone(),
            source,
        };
        let data = MapData::from_pin(&path).map_err(open_err)?;
        let capacity = data.info().map_err(open_err)?.max_entries();
        let fd = data.fd().as_fd().try_clone_to_owned().map_err(|io_error| {
            open_err(MapError::SyscallError(aya::sys::SyscallError {
                call: "dup",
                io_error,
            }))
        })?;
        let map = Map::from_map_data(data).map_err(open_err)?;
        let table = wrap(map, fd).map_err(open_err)?;
        let current = table
            .read_all()
            .map_err(|source| WriteError::Read { map: name, source })?;
        Ok(Slot {
            name,
            capacity,
            table,
            current,
        })
    }

    fn plan(&self, desired: &BTreeMap<K, u32>) -> Result<Plan<K>, WriteError> {
        if desired.len() > self.capacity as usize {
            return Err(WriteError::Capacity {
                map: self.name,
                needed: desired.len(),
                capacity: self.capacity,
            });
        }
        let diff = diff(&self.current, desired);
        let tight = diff.peak(self.current.len()) > self.capacity as usize;
        Ok(Plan { diff, tight })
    }

    fn upsert(&mut self, d: &MapDiff<K>) -> Result<usize, WriteError> {
        let entries: Vec<(K, u32)> = d.upserts.iter().map(|(k, r)| (*k, *r)).collect();
        self.table
            .put_many(&entries)
            .map_err(|source| WriteError::Write {
                map: self.name,
                source,
            })?;
        for (key, rule) in entries {
            self.current.insert(key, rule);
        }
        // Inserting in key order (a diff's order) leaves the B-tree's nodes
        // about half full; after a large load the copy is rebuilt from its
        // sorted entries, which fills them (at 1M entries 25 MB -> 13 MB).
        if d.upserts.len() >= REPACK_MIN && d.upserts.len() * 4 >= self.current.len() {
            self.current = std::mem::take(&mut self.current).into_iter().collect();
        }
        Ok(d.upserts.len())
    }

    /// Refuses a patch that would overflow the map before its removes.
    fn room_for(&self, d: &MapDiff<K>) -> Result<(), WriteError> {
        let needed = d.peak(self.current.len());
        if needed > self.capacity as usize {
            return Err(WriteError::Capacity {
                map: self.name,
                needed,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    fn upsert_roomy(&mut self, p: &Plan<K>) -> Result<usize, WriteError> {
        if p.tight { Ok(0) } else { self.upsert(&p.diff) }
    }

    fn remove_roomy(&mut self, p: &Plan<K>) -> Result<usize, WriteError> {
        if p.tight { Ok(0) } else { self.remove(&p.diff) }
    }

    fn make_room_and_upsert(&mut self, p: &Plan<K>) -> Result<(usize, usize), WriteError> {
        if !p.tight {
            return Ok((0, 0));
        }
        Ok((self.remove(&p.diff)?, self.upsert(&p.diff)?))
    }

    fn remove(&mut self, d: &MapDiff<K>) -> Result<usize, WriteError> {
        for key in &d.removes {
            match self.table.delete(key) {
                Ok(()) => {}
                // Already gone (someone else removed it): the goal is met.
                Err(MapError::KeyNotFound) => {}
                Err(source) => {
                    return Err(WriteError::Write {
                        map: self.name,
                        source,
                    });
                }
            }
            self.current.remove(key);
        }
        Ok(d.removes.len())
    }
}

/// A map's diff, and whether adding before removing would overflow it.
struct Plan<K> {
    diff: MapDiff<K>,
    tight: bool,
}

/// A few keys to change, worked out without the whole desired state (the
/// resolver's path): the maps names put host routes in.
#[derive(Debug, Default)]
pub struct Patch {
    pub deny_v4: MapDiff<V4>,
    pub deny_v6: MapDiff<V6>,
    pub allow_lpm_v4: MapDiff<Prefix<V4>>,
    pub allow_lpm_v6: MapDiff<Prefix<V6>>,
}

/// The writer's copy of what the maps hold, borrowed.
pub struct Held<'a> {
    pub deny_v4: &'a BTreeMap<V4, u32>,
    pub deny_v6: &'a BTreeMap<V6, u32>,
    pub deny_lpm_v4: &'a BTreeMap<Prefix<V4>, u32>,
    pub deny_lpm_v6: &'a BTreeMap<Prefix<V6>, u32>,
    pub allow_lpm_v4: &'a BTreeMap<Prefix<V4>, u32>,
    pub allow_lpm_v6: &'a BTreeMap<Prefix<V6>, u32>,
}

/// The writer of one instance's verdict maps, opened from its pins.
pub struct MapWriter {
    deny_v4: Slot<V4, Exact<V4>>,
    deny_v6: Slot<V6, Exact<V6>>,
    deny_lpm_v4: Slot<Prefix<V4>, Trie<V4>>,
    deny_lpm_v6: Slot<Prefix<V6>, Trie<V6>>,
    allow_lpm_v4: Slot<Prefix<V4>, Trie<V4>>,
    allow_lpm_v6: Slot<Prefix<V6>, Trie<V6>>,
}

impl MapWriter {
    /// Opens the pinned maps and reads what they hold now.
    pub fn open(pins: &Pins) -> Result<MapWriter, WriteError> {
        Ok(MapWriter {
            deny_v4: Slot::open(pins, names::DENY_V4, |m, fd| {
                HashMap::try_from(m).map(|h| Exact(h, fd))
            })?,
            deny_v6: Slot::open(pins, names::DENY_V6, |m, fd| {
                HashMap::try_from(m).map(|h| Exact(h, fd))
            })?,
            deny_lpm_v4: Slot::open(pins, names::DENY_LPM_V4, |m, _| {
                LpmTrie::try_from(m).map(Trie)
            })?,
            deny_lpm_v6: Slot::open(pins, names::DENY_LPM_V6, |m, _| {
                LpmTrie::try_from(m).map(Trie)
            })?,
            allow_lpm_v4: Slot::open(pins, names::ALLOW_LPM_V4, |m, _| {
                LpmTrie::try_from(m).map(Trie)
            })?,
            allow_lpm_v6: Slot::open(pins, names::ALLOW_LPM_V6, |m, _| {
                LpmTrie::try_from(m).map(Trie)
            })?,
        })
    }

    /// What the maps hold, without a copy.
    pub fn held(&self) -> Held<'_> {
        Held {
            deny_v4: &self.deny_v4.current,
            deny_v6: &self.deny_v6.current,
            deny_lpm_v4: &self.deny_lpm_v4.current,
            deny_lpm_v6: &self.deny_lpm_v6.current,
            allow_lpm_v4: &self.allow_lpm_v4.current,
            allow_lpm_v6: &self.allow_lpm_v6.current,
        }
    }

    /// Applies a patch in `apply`'s order (bans in, exceptions out,
    /// exceptions in, bans out), touching only its keys. A map without
    /// room for its adds before its removes refuses the patch with nothing
    /// changed; `apply` knows how to make room.
    pub fn patch(&mut self, p: &Patch) -> Result<Applied, WriteError> {
        self.deny_v4.room_for(&p.deny_v4)?;
        self.deny_v6.room_for(&p.deny_v6)?;
        self.allow_lpm_v4.room_for(&p.allow_lpm_v4)?;
        self.allow_lpm_v6.room_for(&p.allow_lpm_v6)?;
        let mut done = Applied::default();
        done.upserts += self.deny_v4.upsert(&p.deny_v4)?;
        done.upserts += self.deny_v6.upsert(&p.deny_v6)?;
        done.removes += self.allow_lpm_v4.remove(&p.allow_lpm_v4)?;
        done.removes += self.allow_lpm_v6.remove(&p.allow_lpm_v6)?;
        done.upserts += self.allow_lpm_v4.upsert(&p.allow_lpm_v4)?;
        done.upserts += self.allow_lpm_v6.upsert(&p.allow_lpm_v6)?;
        done.removes += self.deny_v4.remove(&p.deny_v4)?;
        done.removes += self.deny_v6.remove(&p.deny_v6)?;
        Ok(done)
    }

    /// What the maps hold, as last read or written.
    pub fn current(&self) -> Desired {
        Desired {
            deny_v4: self.deny_v4.current.clone(),
            deny_v6: self.deny_v6.current.clone(),
            deny_lpm_v4: self.deny_lpm_v4.current.clone(),
            deny_lpm_v6: self.deny_lpm_v6.current.clone(),
            allow_lpm_v4: self.allow_lpm_v4.current.clone(),
            allow_lpm_v6: self.allow_lpm_v6.current.clone(),
        }
    }

    /// Makes the maps hold exactly `desired`.
    ///
    /// Order: bans in, exceptions out, exceptions in, bans out. At no point
    /// does an address banned both before and after pass. A ban map too
    /// full to take its adds before its removes (it fits only at the end)
    /// drops its stale entries first, after every other map's adds are in:
    /// those entries are not banned by the new policy, so nothing banned
    /// before and after opens.
    pub fn apply(&mut self, desired: &Desired) -> Result<Applied, WriteError> {
        let d4 = self.deny_v4.plan(&desired.deny_v4)?;
        let d6 = self.deny_v6.plan(&desired.deny_v6)?;
        let l4 = self.deny_lpm_v4.plan(&desired.deny_lpm_v4)?;
        let l6 = self.deny_lpm_v6.plan(&desired.deny_lpm_v6)?;
        let a4 = self.allow_lpm_v4.plan(&desired.allow_lpm_v4)?;
        let a6 = self.allow_lpm_v6.plan(&desired.allow_lpm_v6)?;
        let mut done = Applied::default();
        // Bans in, where there is room.
        done.upserts += self.deny_v4.upsert_roomy(&d4)?;
        done.upserts += self.deny_v6.upsert_roomy(&d6)?;
        done.upserts += self.deny_lpm_v4.upsert_roomy(&l4)?;
        done.upserts += self.deny_lpm_v6.upsert_roomy(&l6)?;
        // Bans in, where room must be made first.
        for (removes, upserts) in [
            self.deny_v4.make_room_and_upsert(&d4)?,
            self.deny_v6.make_room_and_upsert(&d6)?,
            self.deny_lpm_v4.make_room_and_upsert(&l4)?,
            self.deny_lpm_v6.make_room_and_upsert(&l6)?,
        ] {
            done.removes += removes;
            done.upserts += upserts;
        }
        // Exceptions: out (tightening) before in.
        done.removes += self.allow_lpm_v4.remove(&a4.diff)?;
        done.removes += self.allow_lpm_v6.remove(&a6.diff)?;
        done.upserts += self.allow_lpm_v4.upsert(&a4.diff)?;
        done.upserts += self.allow_lpm_v6.upsert(&a6.diff)?;
        // Bans out.
        done.removes += self.deny_v4.remove_roomy(&d4)?;
        done.removes += self.deny_v6.remove_roomy(&d6)?;
        done.removes += self.deny_lpm_v4.remove_roomy(&l4)?;
        done.removes += self.deny_lpm_v6.remove_roomy(&l6)?;
        Ok(done)
    }
}

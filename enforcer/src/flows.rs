//! Blocked attempts aggregated into flows and kept in SQLite under the
//! state directory (WAL, batched writes, retention by age and rows).
//!
//! A flow is keyed by (pid, executable, destination, port, protocol, rule).
//! Pending counts live in memory until the next flush (every second, or
//! sooner when 10 000 distinct flows are pending), so memory stays bounded
//! whatever the event rate; a crash loses at most the last second. The
//! row bound holds after every flush, and freed pages go back to the file
//! system (incremental vacuum, a bounded WAL), so a flood of distinct
//! flows cannot fill the disk.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use rusqlite::{Connection, OpenFlags, params};
use serde::Serialize;

pub const DB_FILE: &str = "flows.db";
/// The store and the files SQLite keeps beside it.
pub const FILES: [&str; 4] = [DB_FILE, "flows.db-wal", "flows.db-shm", "flows.db-journal"];
/// The WAL is copied into the database once it holds this many pages
/// (1 MiB; SQLite's default is 4)…
const WAL_CHECKPOINT_PAGES: i64 = 256;
/// …and cut back to this after a checkpoint.
const WAL_LIMIT_BYTES: i64 = 1 << 20;
/// Free pages are given back once they are this share of the file (1/n)…
const VACUUM_SHARE: i64 = 4;
/// …and at least this many.
const VACUUM_MIN_PAGES: i64 = 64;
/// Flush early when this many distinct flows are pending.
pub const MAX_PENDING: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub pid: u32,
    pub exe: String,
    pub dst: String,
    pub port: u16,
    pub protocol: u8,
    pub rule_id: u32,
}

/// One flow as stored and as `enforcer flows` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Flow {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub exe: String,
    pub cmdline: String,
    pub comm: String,
    pub uid: u32,
    pub user: Option<String>,
    pub cgroup: Option<String>,
    pub unit: Option<String>,
    pub dst: String,
    pub port: u16,
    pub protocol: u8,
    pub rule_id: u32,
    pub rule: String,
    /// Banned names that resolve to `dst`, comma-separated.
    pub domains: String,
    pub verdict: String,
    /// Hooks that fired, comma-separated.
    pub hooks: String,
    /// The IPv6 forms through which the banned IPv4 `dst` was reached
    /// (`nat64`, `6to4`, `v4mapped`), comma-separated; empty if directly.
    #[serde(default)]
    pub via: String,
    /// The name the application asked for when a DNS answer taught the
    /// kernel `dst` (empty if none did).
    #[serde(default)]
    pub name: String,
    /// The CNAME chain from `name` to the owner of `dst`
    /// (`alias.test -> real.banned.test`); empty without CNAMEs.
    #[serde(default)]
    pub chain: String,
    /// The host that refused the attempt (its hostname), so that flows
    /// merged from a fleet say where each happened.
    #[serde(default)]
    pub host: String,
    /// The agent selector that contained the process, when its allow
    /// list decided (empty otherwise).
    #[serde(default)]
    pub agent: String,
    /// The process whose exec matched that selector (`PID EXE`): the
    /// process itself or the ancestor it inherited containment from.
    #[serde(default)]
    pub agent_root: String,
    /// Attempts. From `flows` and in each `flows --follow` row: all the
    /// attempts of this flow so far, as stored.
    pub count: u64,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

impl Flow {
    pub fn key(&self) -> FlowKey {
        FlowKey {
            pid: self.pid,
            exe: self.exe.clone(),
            dst: self.dst.clone(),
            port: self.port,
            protocol: self.protocol,
            rule_id: self.rule_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("flow store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("flow store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// In-memory aggregation between flushes.
#[derive(Debug, Default)]
pub struct Pending {
    flows: HashMap<FlowKey, Flow>,
}

impl Pending {
    /// Adds one attempt; returns true the first time this flow is pending.
    pub fn add(&mut self, flow: Flow) -> bool {
        match self.flows.get_mut(&flow.key()) {
            Some(f) => {
                f.count += flow.count;
                f.first_seen_ms = f.first_seen_ms.min(flow.first_seen_ms);
                f.last_seen_ms = f.last_seen_ms.max(flow.last_seen_ms);
                add_to_list(&mut f.hooks, &flow.hooks);
                add_to_list(&mut f.via, &flow.via);
                // The latest answer names the flow.
                if !flow.name.is_empty() {
                    f.name = flow.name;
                    f.chain = flow.chain;
                }
                false
            }
            None => {
                self.flows.insert(flow.key(), flow);
                true
            }
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn full(&self) -> bool {
        self.flows.len() >= MAX_PENDING
    }

    fn take(&mut self) -> Vec<Flow> {
        self.flows.drain().map(|(_, f)| f).collect()
    }
}

/// Adds the items of the comma-separated `items` missing from `list`.
fn add_to_list(list: &mut String, items: &str) {
    for item in items.split(',').filter(|i| !i.is_empty()) {
        if !list.split(',').any(|x| x == item) {
            if !list.is_empty() {
                list.push(',');
            }
            list.push_str(item);
        }
    }
}

/// The SQLite store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Rows in the table, kept by the writer so that the row bound costs
    /// nothing while it is not reached.
    rows: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS flows (
  pid INTEGER NOT NULL, ppid INTEGER, exe TEXT NOT NULL, cmdline TEXT NOT NULL,
  comm TEXT NOT NULL, uid INTEGER NOT NULL, user TEXT, cgroup TEXT, unit TEXT,
  dst TEXT NOT NULL, port INTEGER NOT NULL, protocol INTEGER NOT NULL,
  rule_id INTEGER NOT NULL, rule TEXT NOT NULL, domains TEXT NOT NULL,
  verdict TEXT NOT NULL, hooks TEXT NOT NULL, count INTEGER NOT NULL,
  first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,
  via TEXT NOT NULL DEFAULT '',
  name TEXT NOT NULL DEFAULT '',
  chain TEXT NOT NULL DEFAULT '',
  host TEXT NOT NULL DEFAULT '',
  agent TEXT NOT NULL DEFAULT '',
  agent_root TEXT NOT NULL DEFAULT '',
  UNIQUE (pid, exe, dst, port, protocol, rule_id)
);
CREATE INDEX IF NOT EXISTS flows_last_seen ON flows (last_seen_ms);
";

/// Columns added after the first schema, in order (stores written before
/// lack them until a daemon opens them for writing).
const ADDED_COLUMNS: [&str; 6] = ["via", "name", "chain", "host", "agent", "agent_root"];

/// Whether the flows table has `column`.
fn has_column(conn: &Connection, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM pragma_table_info('flows') WHERE name = ?1",
        [column],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

#[cfg(test)]
fn has_via(conn: &Connection) -> rusqlite::Result<bool> {
    has_column(conn, "via")
}

/// Brings a store written by an older build up to `SCHEMA`.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for column in ADDED_COLUMNS {
        if !has_column(conn, column)? {
            conn.execute_batch(&format!(
                "ALTER TABLE flows ADD COLUMN {column} TEXT NOT NULL DEFAULT ''"
            ))?;
        }
    }
    Ok(())
}

/// Filters of `enforcer flows` (and of `flows --follow`, which the daemon
/// applies with [`Query::matches`]). On the control socket its fields sit
/// beside `cmd`; a missing one does not filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Query {
    pub since_ms: Option<u64>,
    pub pid: Option<u32>,
    pub exe: Option<String>,
    /// User name or uid.
    pub user: Option<String>,
    pub domain: Option<String>,
    /// The asked name, or a name on the CNAME chain.
    pub name: Option<String>,
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            since_ms: None,
            pid: None,
            exe: None,
            user: None,
            domain: None,
            name: None,
            limit: 100,
        }
    }
}

impl Query {
    /// Whether `f` is one the SQL of [`Store::query`] selects (`limit`
    /// aside): the same tests, one for one, for flows not read from the
    /// store.
    pub fn matches(&self, f: &Flow) -> bool {
        // instr(sep || list || sep, sep || item || sep) > 0, as the SQL.
        let in_list = |list: &str, sep: &str, item: &str| {
            format!("{sep}{list}{sep}").contains(&format!("{sep}{item}{sep}"))
        };
        self.since_ms.is_none_or(|s| f.last_seen_ms >= s)
            && self.pid.is_none_or(|p| f.pid == p)
            && self.exe.as_ref().is_none_or(|e| &f.exe == e)
            && self
                .user
                .as_ref()
                .is_none_or(|u| f.user.as_ref() == Some(u) || f.uid.to_string() == *u)
            && self
                .domain
                .as_ref()
                .is_none_or(|d| in_list(&f.domains, ",", d))
            && self
                .name
                .as_ref()
                .is_none_or(|n| &f.name == n || in_list(&f.chain, " -> ", n))
    }
}

impl Store {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(DB_FILE)
    }

    /// Opens (creating) the store for writing. A new store is made with
    /// `statedir::FILE_MODE`; SQLite gives its -wal and -shm files the
    /// database's mode and owner.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let path = Store::path(state_dir);
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        match crate::sys::statedir::create_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Io { path, source: e });
            }
            _ => {}
        }
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        // Only takes effect before the first table: a store made by an
        // older version is converted once below.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES)
            .map_err(err)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        migrate(&conn).map_err(err)?;
        let mode: i64 = conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .map_err(err)?;
        if mode != 2 {
            conn.execute_batch("VACUUM").map_err(err)?;
        }
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM flows", [], |r| r.get(0))
            .map_err(err)?;
        Ok(Store {
            conn,
            path,
            rows: rows as u64,
        })
    }

    /// Opens an existing store read-only (the CLI, beside a running daemon).
    pub fn open_read_only(state_dir: &Path) -> Result<Store, StoreError> {
        let path = Store::path(state_dir);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
        Ok(Store {
            conn,
            path,
            rows: 0,
        })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes the pending flows in one transaction, and keeps only the
    /// newest `max_rows` by last sighting. Pending flows beyond the
    /// newest `max_rows` of their own are not written (they would be the
    /// first to go). Returns the flows written, each as its row now reads
    /// (counts and times over every flush), in no particular order.
    pub fn flush(&mut self, pending: &mut Pending, max_rows: u64) -> Result<Vec<Flow>, StoreError> {
        let mut flows = pending.take();
        if flows.is_empty() {
            return Ok(flows);
        }
        let max_rows = max_rows.min(i64::MAX as u64);
        if flows.len() as u64 > max_rows {
            flows.sort_unstable_by_key(|f| std::cmp::Reverse(f.last_seen_ms));
            flows.truncate(max_rows as usize);
        }
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut rows = self.rows;
        {
            // RETURNING tells a new row (its count is this flush's) from
            // an updated one (more).
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO flows (pid, ppid, exe, cmdline, comm, uid, user, cgroup, unit,
                       dst, port, protocol, rule_id, rule, domains, verdict, hooks, count,
                       first_seen_ms, last_seen_ms, via, name, chain, host, agent, agent_root)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)
                     ON CONFLICT (pid, exe, dst, port, protocol, rule_id) DO UPDATE SET
                       count = count + excluded.count,
                       last_seen_ms = max(last_seen_ms, excluded.last_seen_ms),
                       hooks = CASE WHEN instr(',' || hooks || ',', ',' || excluded.hooks || ',') > 0
                               THEN hooks ELSE hooks || ',' || excluded.hooks END,
                       via = CASE WHEN excluded.via = ''
                                    OR instr(',' || via || ',', ',' || excluded.via || ',') > 0 THEN via
                               WHEN via = '' THEN excluded.via
                               ELSE via || ',' || excluded.via END,
                       domains = excluded.domains,
                       name = CASE WHEN excluded.name = '' THEN name ELSE excluded.name END,
                       chain = CASE WHEN excluded.name = '' THEN chain ELSE excluded.chain END,
                       ppid = coalesce(ppid, excluded.ppid),
                       host = excluded.host,
                       agent = CASE WHEN excluded.agent = '' THEN agent ELSE excluded.agent END,
                       agent_root = CASE WHEN excluded.agent = '' THEN agent_root ELSE excluded.agent_root END
                     RETURNING count, first_seen_ms, last_seen_ms, hooks, via, name, chain, ppid",
                )
                .map_err(err)?;
            for f in &mut flows {
                let added = f.count;
                let row: (i64, i64, i64, String, String, String, String, Option<u32>) = stmt
                    .query_row(
                        params![
                            f.pid,
                            f.ppid,
                            f.exe,
                            f.cmdline,
                            f.comm,
                            f.uid,
                            f.user,
                            f.cgroup,
                            f.unit,
                            f.dst,
                            f.port,
                            f.protocol,
                            f.rule_id,
                            f.rule,
                            f.domains,
                            f.verdict,
                            f.hooks,
                            f.count as i64,
                            f.first_seen_ms as i64,
                            f.last_seen_ms as i64,
                            f.via,
                            f.name,
                            f.chain,
                            f.host,
                            f.agent,
                            f.agent_root,
                        ],
                        |r| {
                            Ok((
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                                r.get(6)?,
                                r.get(7)?,
                            ))
                        },
                    )
                    .map_err(err)?;
                (f.hooks, f.via, f.name, f.chain, f.ppid) = (row.3, row.4, row.5, row.6, row.7);
                f.count = row.0 as u64;
                f.first_seen_ms = row.1 as u64;
                f.last_seen_ms = row.2 as u64;
                if f.count == added {
                    rows += 1;
                }
            }
        }
        if rows > max_rows {
            let n = tx
                .execute(
                    "DELETE FROM flows WHERE rowid IN
                       (SELECT rowid FROM flows ORDER BY last_seen_ms DESC LIMIT -1 OFFSET ?1)",
                    params![max_rows as i64],
                )
                .map_err(err)?;
            rows = rows.saturating_sub(n as u64);
        }
        tx.commit().map_err(err)?;
        self.rows = rows;
        self.reclaim()?;
        Ok(flows)
    }

    /// Rows in the store (as its writer counts them).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Gives free pages back to the file system once they are a good
    /// share of the file.
    fn reclaim(&mut self) -> Result<(), StoreError> {
        let page = |name: &str| -> Result<i64, StoreError> {
            self.conn
                .pragma_query_value(None, name, |r| r.get(0))
                .map_err(|e| self.err(e))
        };
        let free = page("freelist_count")?;
        if free >= VACUUM_MIN_PAGES && free * VACUUM_SHARE >= page("page_count")? {
            // The pragma frees one page per step: step it to the end.
            let mut stmt = self
                .conn
                .prepare("PRAGMA incremental_vacuum")
                .map_err(|e| self.err(e))?;
            let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
            while rows.next().map_err(|e| self.err(e))?.is_some() {}
        }
        Ok(())
    }

    /// Drops flows older than `max_age_ms` and beyond the newest
    /// `max_rows`, gives the space back and empties the WAL.
    pub fn retain(
        &mut self,
        now_ms: u64,
        max_age_ms: u64,
        max_rows: u64,
    ) -> Result<usize, StoreError> {
        let cutoff = now_ms.saturating_sub(max_age_ms) as i64;
        let mut n = self
            .conn
            .execute("DELETE FROM flows WHERE last_seen_ms < ?1", params![cutoff])
            .map_err(|e| self.err(e))?;
        n += self
            .conn
            .execute(
                "DELETE FROM flows WHERE rowid IN
                   (SELECT rowid FROM flows ORDER BY last_seen_ms DESC LIMIT -1 OFFSET ?1)",
                params![max_rows.min(i64::MAX as u64) as i64],
            )
            .map_err(|e| self.err(e))?;
        self.rows = self.rows.saturating_sub(n as u64);
        self.reclaim()?;
        // A reader holding the WAL is not waited for (the event loop
        // runs this): a busy checkpoint is retried next time.
        let _ = self.conn.busy_timeout(std::time::Duration::ZERO);
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        let _ = self.conn.busy_timeout(std::time::Duration::from_secs(5));
        Ok(n)
    }

    /// The flows matching `q`, most recent first.
    pub fn query(&self, q: &Query) -> Result<Vec<Flow>, StoreError> {
        // A read-only open cannot migrate: an older store reads as no
        // forms and no names.
        let mut added = Vec::new();
        for column in ADDED_COLUMNS {
            let has = has_column(&self.conn, column).map_err(|e| self.err(e))?;
            added.push(if has { column } else { "''" });
        }
        let mut sql = format!(
            "SELECT pid, ppid, exe, cmdline, comm, uid, user, cgroup, unit, dst, port, protocol, rule_id, rule, domains, verdict, hooks, count, first_seen_ms, last_seen_ms, {} FROM flows WHERE 1=1",
            added.join(", ")
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = q.since_ms {
            sql.push_str(" AND last_seen_ms >= ?");
            args.push((s as i64).into());
        }
        if let Some(p) = q.pid {
            sql.push_str(" AND pid = ?");
            args.push(i64::from(p).into());
        }
        if let Some(e) = &q.exe {
            sql.push_str(" AND exe = ?");
            args.push(e.clone().into());
        }
        if let Some(u) = &q.user {
            sql.push_str(" AND (user = ? OR CAST(uid AS TEXT) = ?)");
            args.push(u.clone().into());
            args.push(u.clone().into());
        }
        if let Some(d) = &q.domain {
            sql.push_str(" AND instr(',' || domains || ',', ',' || ? || ',') > 0");
            args.push(d.clone().into());
        }
        if let Some(n) = &q.name {
            // An added column is '' in an unmigrated store.
            let (name, chain) = (added[1], added[2]);
            sql.push_str(&format!(
                " AND ({name} = ? OR instr(' -> ' || {chain} || ' -> ', ' -> ' || ? || ' -> ') > 0)"
            ));
            args.push(n.clone().into());
            args.push(n.clone().into());
        }
        sql.push_str(" ORDER BY last_seen_ms DESC LIMIT ?");
        args.push((q.limit.max(1) as i64).into());
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok(Flow {
                    pid: r.get(0)?,
                    ppid: r.get(1)?,
                    exe: r.get(2)?,
                    cmdline: r.get(3)?,
                    comm: r.get(4)?,
                    uid: r.get(5)?,
                    user: r.get(6)?,
                    cgroup: r.get(7)?,
                    unit: r.get(8)?,
                    dst: r.get(9)?,
                    port: r.get(10)?,
                    protocol: r.get(11)?,
                    rule_id: r.get(12)?,
                    rule: r.get(13)?,
                    domains: r.get(14)?,
                    verdict: r.get(15)?,
                    hooks: r.get(16)?,
                    count: r.get::<_, i64>(17)? as u64,
                    first_seen_ms: r.get::<_, i64>(18)? as u64,
                    last_seen_ms: r.get::<_, i64>(19)? as u64,
                    via: r.get(20)?,
                    name: r.get(21)?,
                    chain: r.get(22)?,
                    host: r.get(23)?,
                    agent: r.get(24)?,
                    agent_root: r.get(25)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(pid: u32, hook: &str, t: u64) -> Flow {
        Flow {
            pid,
            ppid: None,
            exe: "/usr/bin/curl".into(),
            cmdline: "curl https://api.example".into(),
            comm: "curl".into(),
            uid: 1000,
            user: Some("dev".into()),
            cgroup: None,
            unit: None,
            dst: "160.79.104.10".into(),
            port: 443,
            protocol: 6,
            rule_id: 1,
            rule: "#1 deny 160.79.104.0/23".into(),
            domains: "api.example".into(),
            verdict: "denied".into(),
            hooks: hook.into(),
            via: String::new(),
            name: String::new(),
            chain: String::new(),
            host: "ws-1".into(),
            agent: String::new(),
            agent_root: String::new(),
            count: 1,
            first_seen_ms: t,
            last_seen_ms: t,
        }
    }

    #[test]
    fn flows_aggregate_in_memory_and_in_the_store() {
        let dir = scratch("agg");
        let mut store = Store::open(&dir).unwrap();
        let mut p = Pending::default();
        assert!(p.add(flow(7, "connect4", 10)));
        assert!(!p.add(flow(7, "skb_egress", 20)));
        assert!(p.add(flow(8, "connect4", 30)));
        assert_eq!(store.flush(&mut p, u64::MAX).unwrap().len(), 2);
        assert!(p.is_empty());
        p.add(flow(7, "connect4", 40));
        // A flush gives each flow as its row now reads (what `--follow`
        // prints): the count over every flush.
        let written = store.flush(&mut p, u64::MAX).unwrap();
        assert_eq!(
            (
                written[0].count,
                written[0].first_seen_ms,
                written[0].hooks.as_str()
            ),
            (3, 10, "connect4,skb_egress")
        );
        let all = first_ten(&store);
        assert_eq!(all.len(), 2);
        let seven = all.iter().find(|f| f.pid == 7).unwrap();
        assert_eq!(
            (seven.count, seven.first_seen_ms, seven.last_seen_ms),
            (3, 10, 40)
        );
        assert_eq!(seven.hooks, "connect4,skb_egress");
        let by_domain = store
            .query(&Query {
                domain: Some("api.example".into()),
                pid: Some(8),
                limit: 10,
                ..Query::default()
            })
            .unwrap();
        assert_eq!(by_domain.len(), 1);
        assert_eq!(
            store.retain(1_000, 965, 10).unwrap(),
            1,
            "pid 8 (t=30) is older than 35"
        );
        assert_eq!(store.retain(1_000, 1_000, 0).unwrap(), 1, "row limit");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `Query::matches` (what `flows --follow` filters with) selects what
    /// the SQL of `Store::query` selects, filter by filter and combined.
    #[test]
    fn the_follow_filter_agrees_with_the_stored_query() {
        let dir = scratch("match");
        let mut store = Store::open(&dir).unwrap();
        let mut p = Pending::default();
        let mut all = Vec::new();
        for i in 0..24u32 {
            let mut f = flow(100 + i % 4, "connect4", u64::from(i) * 10);
            f.port = i as u16;
            f.exe = ["/usr/bin/curl", "/usr/bin/python3", "?(x)"][i as usize % 3].into();
            f.uid = [0, 1000, 1001][i as usize % 3];
            f.user = [Some("root".into()), Some("dev".into()), None][i as usize % 3].clone();
            f.domains =
                ["", "api.example", "api.example,b.example", "xapi.example"][i as usize % 4].into();
            (f.name, f.chain) = match i % 5 {
                0 => ("alias.test".into(), "alias.test -> real.banned.test".into()),
                1 => ("real.banned.test".into(), String::new()),
                2 => ("a.test".into(), "a.test -> b.test -> c.test".into()),
                _ => (String::new(), String::new()),
            };
            p.add(f.clone());
            all.push(f);
        }
        store.flush(&mut p, u64::MAX).unwrap();
        let s = |x: &str| Some(x.to_owned());
        let queries = [
            Query::default(),
            Query {
                since_ms: Some(115),
                ..Query::default()
            },
            Query {
                pid: Some(101),
                ..Query::default()
            },
            Query {
                exe: s("/usr/bin/python3"),
                ..Query::default()
            },
            Query {
                exe: s("/usr/bin"),
                ..Query::default()
            },
            Query {
                user: s("dev"),
                ..Query::default()
            },
            Query {
                user: s("1001"),
                ..Query::default()
            },
            Query {
                user: s("0"),
                ..Query::default()
            },
            Query {
                domain: s("api.example"),
                ..Query::default()
            },
            Query {
                domain: s("b.example"),
                ..Query::default()
            },
            Query {
                domain: s("example"),
                ..Query::default()
            },
            Query {
                domain: s(""),
                ..Query::default()
            },
            Query {
                name: s("alias.test"),
                ..Query::default()
            },
            Query {
                name: s("real.banned.test"),
                ..Query::default()
            },
            Query {
                name: s("b.test"),
                ..Query::default()
            },
            Query {
                name: s("banned.test"),
                ..Query::default()
            },
            Query {
                pid: Some(100),
                user: s("root"),
                domain: s("api.example"),
                ..Query::default()
            },
            Query {
                since_ms: Some(50),
                exe: s("/usr/bin/curl"),
                name: s("c.test"),
                ..Query::default()
            },
        ];
        for q in queries {
            let q = Query { limit: 1000, ..q };
            let mut sql: Vec<u16> = store.query(&q).unwrap().iter().map(|f| f.port).collect();
            let mut ours: Vec<u16> = all
                .iter()
                .filter(|f| q.matches(f))
                .map(|f| f.port)
                .collect();
            sql.sort_unstable();
            ours.sort_unstable();
            assert_eq!(ours, sql, "{q:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("enforcer-flows-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `n` flows of `pid`, distinct by port, seen at `t`, `t + 1`, ...
    fn distinct(p: &mut Pending, pid: u32, n: u16, t: u64) {
        for i in 0..n {
            let mut f = flow(pid, "connect4", t + u64::from(i));
            f.port = i;
            f.cmdline = format!("curl --api-key={} https://api.example", "x".repeat(200));
            p.add(f);
        }
    }

    /// The ten most recent flows.
    fn first_ten(store: &Store) -> Vec<Flow> {
        store
            .query(&Query {
                limit: 10,
                ..Query::default()
            })
            .unwrap()
    }

    fn count(store: &Store) -> usize {
        store
            .query(&Query {
                limit: usize::MAX >> 1,
                ..Query::default()
            })
            .unwrap()
            .len()
    }

    fn db_bytes(dir: &Path) -> u64 {
        std::fs::metadata(Store::path(dir)).unwrap().len()
    }

    #[test]
    fn the_row_bound_holds_after_every_flush_and_keeps_the_newest() {
        let dir = scratch("bound");
        let mut store = Store::open(&dir).unwrap();
        let mut p = Pending::default();
        for round in 0..5u64 {
            distinct(&mut p, round as u32, 300, round * 1000);
            store.flush(&mut p, 500).unwrap();
            assert!(count(&store) <= 500, "round {round}: {}", count(&store));
            assert_eq!(
                store.rows(),
                count(&store) as u64,
                "the writer's count is exact"
            );
        }
        let newest = store
            .query(&Query {
                limit: 1,
                ..Query::default()
            })
            .unwrap();
        assert_eq!(newest[0].last_seen_ms, 4299);
        // One flush larger than the bound writes only its newest.
        distinct(&mut p, 10, 2000, 10_000);
        assert_eq!(store.flush(&mut p, 500).unwrap().len(), 500);
        assert_eq!(count(&store), 500);
        // Updates do not count as new rows.
        distinct(&mut p, 10, 10, 20_000);
        store.flush(&mut p, 500).unwrap();
        assert_eq!(store.rows(), 500);
        // A store reopened counts what it holds.
        drop(store);
        assert_eq!(Store::open(&dir).unwrap().rows(), 500);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pruned_space_goes_back_to_the_file_system() {
        let dir = scratch("vacuum");
        let mut store = Store::open(&dir).unwrap();
        let mut p = Pending::default();
        for round in 0..4 {
            distinct(&mut p, round as u32, 5000, round * 10_000);
            store.flush(&mut p, u64::MAX).unwrap();
        }
        store.retain(100_000, 1_000_000, u64::MAX).unwrap();
        let full = db_bytes(&dir);
        assert!(full > 4 << 20, "{full} bytes for 20 000 rows");
        store.retain(100_000, 1_000_000, 100).unwrap();
        let pruned = db_bytes(&dir);
        assert!(
            pruned < full / 10,
            "{pruned} bytes after pruning to 100 rows (from {full})"
        );
        let wal = std::fs::metadata(dir.join("flows.db-wal")).map_or(0, |m| m.len());
        assert!(wal < 1 << 20, "WAL of {wal} bytes after the checkpoint");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_store_made_without_incremental_vacuum_is_converted_once() {
        let dir = scratch("convert");
        {
            let conn = Connection::open(Store::path(&dir)).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.execute_batch(SCHEMA).unwrap();
        }
        let mut store = Store::open(&dir).unwrap();
        let mode: i64 = store
            .conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 2);
        let mut p = Pending::default();
        distinct(&mut p, 1, 10, 1);
        store.flush(&mut p, u64::MAX).unwrap();
        assert_eq!(count(&store), 10);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_forms_of_a_flow_are_kept_and_a_store_without_them_is_migrated() {
        let dir = scratch("via");
        // A store as the previous build wrote it: no via column.
        {
            let old = Connection::open(Store::path(&dir)).unwrap();
            old.execute_batch(
                &SCHEMA
                    .replace("  via TEXT NOT NULL DEFAULT '',\n", "")
                    .replace("  name TEXT NOT NULL DEFAULT '',\n", "")
                    .replace("  chain TEXT NOT NULL DEFAULT '',\n", "")
                    .replace("  host TEXT NOT NULL DEFAULT '',\n", "")
                    .replace("  agent TEXT NOT NULL DEFAULT '',\n", "")
                    .replace("  agent_root TEXT NOT NULL DEFAULT '',\n", ""),
            )
            .unwrap();
            old.execute(
                "INSERT INTO flows VALUES (7, NULL, '/usr/bin/curl', '', 'curl', 0, NULL, NULL,
                   NULL, '160.79.104.10', 443, 6, 1, '#1', '', 'denied', 'connect4', 1, 5, 5)",
                [],
            )
            .unwrap();
            assert!(!has_via(&old).unwrap());
        }
        let before = first_ten(&Store::open_read_only(&dir).unwrap());
        assert_eq!(before[0].via, "", "an unmigrated store still reads");
        let mut store = Store::open(&dir).unwrap();
        let mut p = Pending::default();
        let mut nat64 = flow(7, "connect6", 10);
        nat64.via = "nat64".into();
        let mut sixto4 = flow(7, "connect6", 20);
        sixto4.via = "6to4".into();
        p.add(nat64.clone());
        p.add(sixto4);
        p.add(flow(7, "connect4", 30));
        store.flush(&mut p, u64::MAX).unwrap();
        p.add(nat64);
        store.flush(&mut p, u64::MAX).unwrap();
        let all = first_ten(&store);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].via, "nat64,6to4");
        assert_eq!(all[0].count, 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_name_an_address_came_from_is_kept_and_filtered_on_in_a_migrated_store() {
        let dir = scratch("name");
        {
            let old = Connection::open(Store::path(&dir)).unwrap();
            old.execute_batch(
                &SCHEMA
                    .replace("  name TEXT NOT NULL DEFAULT '',\n", "")
                    .replace("  chain TEXT NOT NULL DEFAULT '',\n", "")
                    .replace("  host TEXT NOT NULL DEFAULT '',\n", ""),
            )
            .unwrap();
        }
        let by_name = |store: &Store, n: &str| {
            store
                .query(&Query {
                    name: Some(n.into()),
                    limit: 10,
                    ..Query::default()
                })
                .unwrap()
        };
        assert!(by_name(&Store::open_read_only(&dir).unwrap(), "x.test").is_empty());
        let mut store = Store::open(&dir).unwrap();
        let mut p = Pending::default();
        let mut named = flow(7, "connect4", 10);
        named.name = "innocent.test".into();
        named.chain = "innocent.test -> real.banned.test".into();
        p.add(named);
        store.flush(&mut p, u64::MAX).unwrap();
        // A later sighting without a name keeps the one it had.
        p.add(flow(7, "skb_egress", 20));
        store.flush(&mut p, u64::MAX).unwrap();
        let all = first_ten(&store);
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].name.as_str(), all[0].chain.as_str()),
            ("innocent.test", "innocent.test -> real.banned.test")
        );
        assert_eq!(by_name(&store, "innocent.test").len(), 1);
        assert_eq!(by_name(&store, "real.banned.test").len(), 1);
        assert!(by_name(&store, "banned.test").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

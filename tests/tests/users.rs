//! Local users: what others can read, who can lock root out, how group
//! membership is judged, and what a flood of distinct flows costs.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    os::unix::{fs::MetadataExt as _, net::UnixStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use enforcer_tests::{
    Probe, World,
    daemon::{Daemon, DaemonArgs, enforcer, enforcer_bin},
    users::{NOBODY, Traversable, as_user, gid_of, peer_bin, run_as},
};
use serde_json::Value;

const BAN: &str = r#"{"version":1,"deny":{"cidrs":["10.77.0.2"]}}"#;

fn world(tag: &str) -> World {
    World::new(tag, &["10.77.0.2/32"])
}

fn args(w: &World, policy: &str) -> DaemonArgs {
    w.args(&w.tmp.write("policy.json", policy))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn enforcer_as(uid: u32, gid: u32, groups: &[u32], args: &[&str]) -> (i32, String, String) {
    run_as(enforcer_bin().to_str().unwrap(), args, uid, gid, groups)
}

const STORE_FILES: [&str; 4] = ["flows.db", "flows.db-wal", "flows.db-shm", "resolved.json"];

#[test]
fn the_state_dir_and_its_flows_are_closed_to_others_with_or_without_the_daemon() {
    let w = world("us");
    let state = w.tmp.path();
    let enforcer_gid = gid_of("enforcer");
    let nogroup = gid_of("nogroup");
    let daemon = Daemon::start(&args(&w, BAN));
    let probe = Probe::new().cgroup(w.cg.path()).netns(w.ns.name());
    assert_eq!(probe.run("tcp", "10.77.0.2:0").result, "EPERM");
    // The flow is written (and the WAL with it) when it is asked for.
    let socket = w.socket();
    let (code, out, err) = enforcer(&["flows", "--json", "--socket", socket.to_str().unwrap()]);
    assert_eq!((code, out.lines().count()), (0, 1), "{out}{err}");
    // Files of an older version, left world-readable, are narrowed too.
    daemon.stop();
    std::fs::set_permissions(state, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for f in ["flows.db", "resolved.json"] {
        std::fs::set_permissions(
            state.join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
    }
    let daemon = Daemon::start(&args(&w, BAN));
    assert_eq!(probe.run("tcp", "10.77.0.2:0").result, "EPERM");
    let (code, _, err) = enforcer(&["flows", "--json", "--socket", socket.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let meta = std::fs::metadata(state).unwrap();
    assert_eq!(
        (mode(state), meta.uid(), meta.gid()),
        (0o2750, 0, enforcer_gid),
        "the state dir: root's, the group reads, setgid"
    );
    for f in STORE_FILES {
        let p = state.join(f);
        let m = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!((mode(&p), m.gid()), (0o640, enforcer_gid), "{f}");
    }
    // Someone else: no listing, no file.
    let (code, _, err) = run_as("ls", &[state.to_str().unwrap()], NOBODY, nogroup, &[]);
    assert_ne!(code, 0, "nobody listed the state dir");
    assert!(err.contains("Permission denied"), "{err}");
    for f in STORE_FILES {
        let p = state.join(f);
        let (code, out, _) = run_as("cat", &[p.to_str().unwrap()], NOBODY, nogroup, &[]);
        assert_ne!(code, 0, "nobody read {f}: {out:.100}");
    }
    // A member reads the directory.
    let (code, out, err) = run_as("ls", &[state.to_str().unwrap()], NOBODY, enforcer_gid, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("flows.db"), "{out}");
    daemon.stop();
    // Without the daemon the CLI reads the store itself: not for others
    // (exit 4, as the socket would refuse), still for root and members.
    let flows_args = [
        "flows",
        "--json",
        "--socket",
        socket.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let (code, out, err) = enforcer_as(NOBODY, nogroup, &[], &flows_args);
    assert_eq!(code, 4, "{out}{err}");
    assert!(err.contains("permission denied"), "{err}");
    // No flow, only the error (--json prints it where the answer would be).
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(v["error"]["code"], "denied", "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, out, err) = enforcer(&flows_args);
    assert_eq!((code, out.lines().count()), (0, 2), "{out}{err}");
    let (code, out, err) = enforcer_as(NOBODY, nogroup, &[enforcer_gid], &flows_args);
    assert_eq!((code, out.lines().count()), (0, 2), "a member: {out}{err}");
}

/// Starts `peer hold n` as `uid` (a member through a supplementary group).
fn spawn_hold(uid: u32, n: usize, socket: &Path) -> Child {
    let peer = Traversable::new(&peer_bin());
    let mut cmd = Command::new(peer.path());
    cmd.args(["hold", &n.to_string(), socket.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    as_user(&mut cmd, uid, gid_of("nogroup"), &[gid_of("enforcer")])
        .spawn()
        .unwrap()
}

/// What a holder got: {"held", "refused", "failed"}.
fn held(child: &mut Child) -> Value {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

#[test]
fn readers_holding_idle_connections_do_not_lock_root_out() {
    let w = world("ul");
    let daemon = Daemon::start(&args(&w, BAN));
    let socket = w.socket();
    // One member opening 70: its share is 8.
    let mut first = spawn_hold(60_001, 70, &socket);
    let v = held(&mut first);
    assert_eq!(
        (&v["held"], &v["refused"], &v["failed"]),
        (&8.into(), &62.into(), &0.into()),
        "{v}"
    );
    // Many members together cannot take root's reserve. (Within the idle
    // timeout: the connections are closed 10 s after they were opened.)
    let mut holders: Vec<Child> = (60_002..60_010)
        .map(|uid| spawn_hold(uid, 10, &socket))
        .collect();
    let total: u64 = 8 + holders
        .iter_mut()
        .map(|h| held(h)["held"].as_u64().unwrap())
        .sum::<u64>();
    holders.push(first);
    assert_eq!(total, 60, "64 connections, 4 kept for root");
    let socket_arg = socket.to_str().unwrap();
    let (code, out, err) = enforcer(&["status", "--json", "--socket", socket_arg]);
    assert_eq!(code, 0, "root's status: {out}{err}");
    let (code, out, err) = enforcer(&["reload", "--socket", socket_arg]);
    assert_eq!(code, 0, "root's reload: {out}{err}");
    for mut h in holders {
        drop(h.stdin.take());
        h.wait().unwrap();
    }
    daemon.stop();
}

#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let w = world("ui");
    let daemon = Daemon::start(&args(&w, BAN));
    let mut silent = UnixStream::connect(w.socket()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = silent.read(&mut buf);
    let waited = start.elapsed();
    assert!(
        matches!(n, Ok(0)) && waited < Duration::from_secs(15),
        "{n:?} after {waited:?}: a silent connection must be closed within 10 s"
    );
    // A connection that keeps asking is not idle.
    let mut busy = UnixStream::connect(w.socket()).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(busy.try_clone().unwrap());
    for _ in 0..3 {
        std::io::Write::write_all(&mut busy, b"{\"v\":1,\"cmd\":\"status\"}\n").unwrap();
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        assert!(reply.contains("\"ok\":true"), "{reply}");
        std::thread::sleep(Duration::from_secs(4));
    }
    daemon.stop();
}

#[test]
fn membership_by_the_supplementary_groups_at_connect_time_counts() {
    let w = world("ug");
    let daemon = Daemon::start(&args(&w, BAN));
    let socket = w.socket();
    // The process that connects (primary group nogroup, `enforcer` only
    // as a supplementary group) sends its request and exits before the
    // daemon gets to it; a child it forked reads the answer.
    daemon.signal(libc::SIGSTOP);
    let peer = Traversable::new(&peer_bin());
    let mut cmd = Command::new(peer.path());
    cmd.args([
        "handoff",
        socket.to_str().unwrap(),
        r#"{"v":1,"cmd":"status"}"#,
    ])
    .stdout(Stdio::piped());
    let mut connector = as_user(&mut cmd, NOBODY, gid_of("nogroup"), &[gid_of("enforcer")])
        .spawn()
        .unwrap();
    let status = connector.wait().unwrap();
    daemon.signal(libc::SIGCONT);
    assert!(status.success(), "{status}");
    let mut reply = String::new();
    connector
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut reply)
        .unwrap();
    let v: Value = serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{reply:?}: {e}"));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["result"]["mode"], "enforce", "{v}");
    daemon.stop();
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces): utime is the 12th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Sets the soft limit on descriptors of `pid`; returns the old limits.
fn set_nofile(pid: u32, soft: u64) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: our own daemon's pid; the pointer is valid.
    let r = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
    restore_nofile(
        pid,
        libc::rlimit {
            rlim_cur: soft,
            rlim_max: old.rlim_max,
        },
    );
    old
}

fn restore_nofile(pid: u32, limit: libc::rlimit) {
    // SAFETY: as above.
    let r = unsafe {
        libc::prlimit(
            pid as i32,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn accept_errors_back_off_instead_of_spinning() {
    let w = world("ue");
    let daemon = Daemon::start(&args(&w, BAN));
    let pid = daemon.pid();
    // Out of descriptors: the limit is set at the lowest free number, so
    // no new descriptor fits (numbers above it that are in use stay in
    // use); connections wait in the backlog and every accept fails with
    // EMFILE.
    let fds: std::collections::BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let lowest_free = (0..).find(|n| !fds.contains(n)).unwrap();
    let old = set_nofile(pid, lowest_free);
    let conns: Vec<UnixStream> = (0..6)
        .map(|_| UnixStream::connect(w.socket()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(pid) - before;
    restore_nofile(pid, old);
    drop(conns);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(
        spent * 10 < 2 * hz,
        "the daemon used {spent} ticks ({hz}/s) in 2 s while accept failed"
    );
    // Descriptors back: served again.
    let (code, out, err) = enforcer(&["status", "--socket", w.socket().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}\n{}", daemon.log_text());
    assert!(
        daemon.log_text().contains("accepting failed"),
        "{}",
        daemon.log_text()
    );
    daemon.stop();
}

/// The sizes of flows.db and its WAL.
fn store_bytes(state: &Path) -> (u64, u64) {
    let len = |f: &str| std::fs::metadata(state.join(f)).map_or(0, |m| m.len());
    (len("flows.db"), len("flows.db-wal"))
}

fn new_flow_lines(daemon: &Daemon) -> usize {
    daemon
        .log_text()
        .lines()
        .filter(|l| l.contains("new blocked flow"))
        .count()
}

#[test]
fn a_flood_of_distinct_flows_stays_within_max_flows_and_is_logged_at_a_bounded_rate() {
    const MAX: usize = 1000;
    const FLOWS: u16 = 25_000;
    let w = world("uf");
    let daemon = Daemon::start(&args(
        &w,
        &format!(
            r#"{{"version":1,"deny":{{"cidrs":["10.77.0.2"]}},"report":{{"max_flows":{MAX}}}}}"#
        ),
    ));
    let socket = w.socket();
    let rows = || {
        let (code, out, err) = enforcer(&[
            "flows",
            "--json",
            "--limit",
            "1000000",
            "--socket",
            socket.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        out.lines().count()
    };
    let start = Instant::now();
    let mut sizes = Vec::new();
    for round in 0..2 {
        let flood = {
            let cg = w.cg.path().to_owned();
            let ns = w.ns.name().to_owned();
            std::thread::spawn(move || {
                Probe::new()
                    .cgroup(&cg)
                    .netns(&ns)
                    .run(&format!("tcp-flood-ports:{FLOWS}"), "10.77.0.2:9")
            })
        };
        // Every look, during the flood and after it, is within the bound.
        let mut seen = 0;
        while !flood.is_finished() {
            let n = rows();
            assert!(n <= MAX, "round {round}: {n} flows stored, max_flows {MAX}");
            seen = seen.max(n);
            std::thread::sleep(Duration::from_millis(200));
        }
        let r = flood.join().unwrap();
        assert_eq!(r.result, format!("EPERM={FLOWS}"));
        std::thread::sleep(Duration::from_millis(1500));
        let n = rows();
        assert!(
            n <= MAX && n > 0,
            "round {round}: {n} flows after the flood"
        );
        sizes.push(store_bytes(w.tmp.path()));
    }
    // Space is given back: the store does not grow with the flows (50 000
    // rows would take 20 MB).
    for (db, wal) in &sizes {
        assert!(
            *db < 2 << 20 && *wal < 3 << 20,
            "flows.db and WAL bytes after each round: {sizes:?}"
        );
    }
    // One line per new flow, at most 20 a second; the rest are counted.
    let lines = new_flow_lines(&daemon);
    let allowed = 20 * (start.elapsed().as_secs() as usize + 2);
    eprintln!(
        "store (db, WAL) bytes after each round {sizes:?}; {lines} new-flow lines in {:?}",
        start.elapsed()
    );
    assert!(
        lines <= allowed,
        "{lines} new-flow lines in {:?} (at most {allowed})",
        start.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon.log_text().contains("new blocked flows not logged") {
        assert!(
            Instant::now() < deadline,
            "no count of the flows not logged"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    daemon.stop();
}

#[test]
fn a_checkout_in_a_private_home_still_runs_its_programs_as_another_user() {
    // As from a checkout under a home directory of mode 0700: nobody
    // cannot traverse it, so the harness runs a copy of the program from a
    // directory of its own (users::Traversable).
    let home = enforcer_tests::TempDir::new("home");
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let bin = home.path().join("enforcer");
    std::fs::copy(enforcer_bin(), &bin).unwrap();
    let (code, out, err) = run_as(
        bin.to_str().unwrap(),
        &["--version"],
        NOBODY,
        gid_of("nogroup"),
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("enforcer "), "{out}");
}

//! Agent containment (issue 13): real processes under the real exec, fork
//! and exit hooks. The fake agent is a copy of the system's python3
//! installed under a versioned directory, running `agents/act.py`, which
//! connects, sends, pings, resolves and starts children as told.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use enforcer_tests::{
    World,
    daemon::{Daemon, enforcer, flows_json},
    dns::DnsServer,
};

const LO: &[&str] = &[
    "10.77.0.2/32",
    "10.77.0.3/32",
    "10.77.0.53/32",
    "10.77.0.54/32",
];
const ACT: &str = include_str!("agents/act.py");
const PYTHON: &str = "/usr/bin/python3";

fn world(tag: &str) -> World {
    World::new(tag, LO)
}

/// Installs the fake agent (a copy of python3) at `dir/versions/VERSION/agent`.
fn install_agent(dir: &Path, version: &str) -> PathBuf {
    let at = dir.join("versions").join(version);
    std::fs::create_dir_all(&at).unwrap();
    let bin = at.join("agent");
    std::fs::copy(PYTHON, &bin).unwrap();
    bin
}

/// `argv` as a process of the world's cgroup and namespace, stdout and
/// stdin piped. It joins the cgroup and namespace before it execs, so the
/// exec the hooks see is its own.
fn spawn(w: &World, argv: &[&str]) -> Child {
    let ns = std::fs::File::open(format!("/run/netns/{}", w.ns.name())).unwrap();
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(w.cg.path().join("cgroup.procs"))
        .unwrap();
    let (ns_fd, procs_fd) = (ns.as_raw_fd(), procs.as_raw_fd());
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        // The copied interpreter finds its library where python3's is.
        .env("PYTHONHOME", "/usr")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: setns and write are async-signal-safe; both descriptors
    // stay open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn");
    drop((ns, procs));
    child
}

/// Runs `argv` (bounded: 20 s) and returns its output line.
fn run(w: &World, argv: &[&str]) -> String {
    let mut child = spawn(w, argv);
    drop(child.stdin.take());
    finish(child)
}

fn finish(mut child: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent process did not finish in 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut out)
        .unwrap();
    out.trim().to_owned()
}

fn socket_arg(w: &World) -> String {
    w.socket().to_str().unwrap().to_owned()
}

fn flows(w: &World) -> Vec<serde_json::Value> {
    // The recorder flushes every second.
    std::thread::sleep(Duration::from_millis(1500));
    flows_json(&["--socket", &socket_arg(w)])
}

fn json(w: &World, cmd: &str) -> serde_json::Value {
    let (code, out, err) = enforcer(&[cmd, "--json", "--socket", &socket_arg(w)]);
    assert_eq!(code, 0, "{cmd}: {err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn an_agent_and_everything_it_starts_reach_only_its_allow_list() {
    let w = world("ag");
    let home = w.tmp.path().join("opt");
    let act = w.tmp.write("act.py", ACT);
    let act = act.to_str().unwrap();
    let glob = format!("{}/versions/*/agent", home.display());
    let policy = w.tmp.write(
        "policy.json",
        &format!(
            r#"{{"version": 1, "deny": {{"cidrs": ["192.0.2.0/24"]}},
               "agents": [{{"name": "fake", "exe": ["{glob}"], "allow": ["10.77.0.2/32"]}}]}}"#
        ),
    );
    let daemon = Daemon::start(&w.args(&policy));
    let all = [
        "tcp:10.77.0.2:9",
        "tcp:10.77.0.3:9",
        "tcp:127.0.0.1:1080",
        "udp:10.77.0.3:9",
        "icmp:10.77.0.3",
    ];
    for version in ["1.2.3", "1.2.4"] {
        let agent = install_agent(&home, version);
        let mut argv = vec![agent.to_str().unwrap(), act];
        argv.extend(all);
        assert_eq!(
            run(&w, &argv),
            "ECONNREFUSED EPERM EPERM EPERM socket-EPERM",
            "version {version}: the allowed endpoint passes, everything else is refused \
             (a local SOCKS port, UDP, and ICMP: no raw socket at all)"
        );
    }
    let agent = install_agent(&home, "1.2.4");
    let agent = agent.to_str().unwrap();
    // Only sockets the connect/sendmsg hooks judge can be made: TCP and
    // UDP yes; UDP-Lite (like SCTP or any other protocol) no.
    assert_eq!(
        run(&w, &[agent, act, "proto:1/6", "proto:2/17", "proto:2/136"]),
        "made made socket-EPERM"
    );
    assert_eq!(run(&w, &[PYTHON, act, "proto:2/136"]), "made");
    // What the agent starts stays contained: a shell's child, a
    // grandchild, and a child that execs an uncontained binary.
    let child = format!("sh:{PYTHON} {act} tcp:10.77.0.3:9 tcp:10.77.0.2:9");
    assert_eq!(run(&w, &[agent, act, &child]), "EPERM ECONNREFUSED");
    let grandchild = format!("sh:/bin/sh -c '{PYTHON} {act} tcp:10.77.0.3:9 udp:10.77.0.3:9'");
    assert_eq!(run(&w, &[agent, act, &grandchild]), "EPERM EPERM");
    let exec = format!("exec:{PYTHON} {act}");
    assert_eq!(
        run(
            &w,
            &[agent, act, "tcp:10.77.0.2:9", &exec, "tcp:10.77.0.3:9"]
        ),
        "ECONNREFUSED EPERM"
    );
    // An uncontained process of the same cgroup reaches all of it, but
    // not what is banned for everyone.
    let mut argv = vec![PYTHON, act];
    argv.extend(all);
    argv.push("tcp:192.0.2.1:9");
    assert_eq!(
        run(&w, &argv),
        "ECONNREFUSED ECONNREFUSED ECONNREFUSED sent sent EPERM"
    );

    // Flows name the selector and the process whose exec matched.
    let rows = flows(&w);
    let denied: Vec<_> = rows
        .iter()
        .filter(|r| r["agent"] == "fake" && r["dst"] == "10.77.0.3")
        .collect();
    assert!(!denied.is_empty(), "no agent denial in flows: {rows:#?}");
    assert!(
        denied.iter().all(|r| r["verdict"] == "denied"),
        "{denied:#?}"
    );
    assert!(
        denied.iter().any(|r| r["exe"] == PYTHON
            && r["agent_root"]
                .as_str()
                .unwrap()
                .contains("versions/1.2.4/agent")),
        "the shell's child names the agent it descends from: {denied:#?}"
    );
    let log = daemon.log_text();
    assert!(
        log.lines().any(|l| l.contains("new blocked flow")
            && l.contains(r#""agent":"fake""#)
            && l.contains("versions/1.2.4/agent")),
        "the log names the selector and the agent: {log}"
    );
    let agents = json(&w, "agents");
    assert_eq!(agents["selectors"][0]["name"], "fake", "{agents}");
    assert!(
        agents["counters"]["matched"].as_u64().unwrap() >= 5,
        "{agents}"
    );
    assert!(
        agents["counters"]["inherited"].as_u64().unwrap() >= 3,
        "{agents}"
    );
    daemon.stop();
}

#[test]
fn scripts_running_processes_and_audit_are_contained_as_the_policy_says() {
    let w = world("as");
    let act = w.tmp.write("act.py", ACT);
    for dir in ["fake-agent", "watched"] {
        std::fs::create_dir_all(w.tmp.path().join(dir)).unwrap();
    }
    let cli = w.tmp.write("fake-agent/cli.py", ACT);
    let watched = w.tmp.write("watched/cli.py", ACT);
    let other = w.tmp.write("other.py", ACT);
    let s = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let policy = w.tmp.write(
        "policy.json",
        &format!(
            r#"{{"version": 1, "agents": [
                {{"name": "cli", "script": ["{}"]}},
                {{"name": "watched", "script": ["{}"], "action": "audit"}}]}}"#,
            s(&cli),
            s(&watched)
        ),
    );
    // Running before the daemon starts, waiting for a line to connect.
    let mut early = spawn(&w, &[PYTHON, &s(&cli), "wait", "tcp:10.77.0.3:9"]);
    let daemon = Daemon::start(&w.args(&policy));
    let status = json(&w, "status");
    let contained = status["agents"]["contained"].as_array().unwrap();
    assert!(
        contained
            .iter()
            .any(|c| c["pid"] == early.id() && c["agent"] == "cli"),
        "the running process is listed as contained: {status}"
    );
    writeln!(early.stdin.take().unwrap()).unwrap();
    assert_eq!(
        finish(early),
        "EPERM",
        "a process running before the daemon is contained"
    );

    assert_eq!(run(&w, &[PYTHON, &s(&cli), "tcp:10.77.0.3:9"]), "EPERM");
    assert_eq!(
        run(&w, &[PYTHON, "-u", &s(&cli), "udp:10.77.0.3:9"]),
        "EPERM",
        "interpreter options before the script"
    );
    assert_eq!(
        run(&w, &[PYTHON, &s(&other), "tcp:10.77.0.3:9"]),
        "ECONNREFUSED",
        "the interpreter running another script is not contained"
    );
    assert_eq!(
        run(&w, &[PYTHON, &s(&act), "tcp:10.77.0.3:9", &s(&cli)]),
        "ECONNREFUSED",
        "the script is the first argument, not any argument"
    );
    // audit: reported, not denied.
    assert_eq!(
        run(&w, &[PYTHON, &s(&watched), "tcp:10.77.0.3:9"]),
        "ECONNREFUSED"
    );
    // A stricter selector takes over inside an audited tree; a laxer one
    // never does.
    let denied_child = format!("sh:{PYTHON} {} tcp:10.77.0.3:9", s(&cli));
    assert_eq!(run(&w, &[PYTHON, &s(&watched), &denied_child]), "EPERM");
    let audited_child = format!("sh:{PYTHON} {} tcp:10.77.0.3:9", s(&watched));
    assert_eq!(run(&w, &[PYTHON, &s(&cli), &audited_child]), "EPERM");
    let rows = flows(&w);
    assert!(
        rows.iter().any(|r| r["agent"] == "watched"
            && r["verdict"] == "audited"
            && r["dst"] == "10.77.0.3"),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r["agent"] == "cli" && r["verdict"] == "denied"),
        "{rows:#?}"
    );
    daemon.stop();
}

#[test]
fn names_in_an_allow_list_are_learned_from_the_host_dns_servers_only() {
    let w = world("an");
    let host_dns =
        w.ns.enter(|| DnsServer::start_on("10.77.0.53:53".parse().unwrap()));
    host_dns.set_addrs("gw.corp.test", &["10.77.0.2"], 60);
    host_dns.set_addrs("sink.corp.test", &["127.0.0.1"], 60);
    let rogue =
        w.ns.enter(|| DnsServer::start_on("10.77.0.54:53".parse().unwrap()));
    rogue.set_addrs("gw.corp.test", &["10.77.0.3"], 60);
    let home = w.tmp.path().join("opt");
    let agent = install_agent(&home, "1.0");
    let agent = agent.to_str().unwrap().to_owned();
    let act = w.tmp.write("act.py", ACT);
    let act = act.to_str().unwrap();
    let policy = w.tmp.write(
        "policy.json",
        &format!(
            r#"{{"version": 1,
               "resolver": {{"upstreams": ["10.77.0.53:53"]}},
               "agents": [{{"name": "fake", "exe": ["{}/versions/*/agent"],
                            "allow": ["gw.corp.test", "*.corp.test"]}}]}}"#,
            home.display()
        ),
    );
    let daemon = Daemon::start(&w.args(&policy));
    assert_eq!(
        run(&w, &[&agent, act, "tcp:10.77.0.2:9"]),
        "EPERM",
        "nothing is reachable before a host DNS server answered for the name"
    );
    assert_eq!(
        run(
            &w,
            &[
                &agent,
                act,
                "dns:gw.corp.test@10.77.0.53",
                "tcp:10.77.0.2:9",
                "tcp:10.77.0.3:9"
            ]
        ),
        "10.77.0.2 ECONNREFUSED EPERM",
        "the host's DNS server (port 53, implied) and the address it returned"
    );
    // A rogue server answered an uncontained process in the same cgroup
    // (the agent cannot even ask it): its answer teaches nothing.
    assert_eq!(
        run(&w, &[PYTHON, act, "dns:gw.corp.test@10.77.0.54"]),
        "10.77.0.3"
    );
    assert_eq!(
        run(&w, &[&agent, act, "dns:gw.corp.test@10.77.0.54"]),
        "EPERM"
    );
    assert_eq!(run(&w, &[&agent, act, "tcp:10.77.0.3:9"]), "EPERM");
    // A sinkhole answer for an allowed wildcard opens no loopback port.
    assert_eq!(
        run(
            &w,
            &[
                &agent,
                act,
                "dns:sink.corp.test@10.77.0.53",
                "tcp:127.0.0.1:1080"
            ]
        ),
        "127.0.0.1 EPERM"
    );
    daemon.stop();
    drop((host_dns, rogue));
}

#[test]
fn a_policy_whose_selectors_do_not_compile_is_refused_with_its_field() {
    let w = world("ab");
    let bad = w.tmp.write(
        "bad.json",
        r#"{"version": 1, "agents": [{"name": "x", "exe": ["/opt/[ab"]}]}"#,
    );
    let (code, _, err) = enforcer(&["policy", "validate", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("agents[0].exe[0]") && err.contains("closing ']'"),
        "{err}"
    );
    let empty = w.tmp.write(
        "empty.json",
        r#"{"version": 1, "agents": [{"name": "x", "allow": ["10.0.0.0/8"]}]}"#,
    );
    let (code, _, err) = enforcer(&["policy", "validate", empty.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("agents[x]") && err.contains("contain nothing"),
        "{err}"
    );
    let port = w.tmp.write(
        "port.json",
        r#"{"version": 1, "agents": [{"name": "x", "exe": ["/a"], "allow": ["gw.corp.test:443"]}]}"#,
    );
    let (code, _, err) = enforcer(&["policy", "validate", port.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("agents[0].allow[0]"), "{err}");
    let unix = w.tmp.write(
        "unix.json",
        r#"{"version": 1, "agents": [{"name": "x", "exe": ["/a"], "allow": ["unix:gw.sock"]}]}"#,
    );
    let (code, _, err) = enforcer(&["policy", "validate", unix.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("agents[0].allow[0]") && err.contains("absolute path"),
        "{err}"
    );
}

#[test]
fn containment_survives_a_crash_and_follows_reloads() {
    let w = world("ar");
    let home = w.tmp.path().join("opt");
    let agent = install_agent(&home, "3.0");
    let agent = agent.to_str().unwrap().to_owned();
    let act = w.tmp.write("act.py", ACT);
    let act = act.to_str().unwrap().to_owned();
    let selector = format!(
        r#"{{"name": "fake", "exe": ["{}/versions/*/agent"]}}"#,
        home.display()
    );
    let policy = w.tmp.write(
        "policy.json",
        &format!(r#"{{"version": 1, "agents": [{selector}]}}"#),
    );
    std::fs::create_dir_all(w.tmp.path().join("policy.d")).unwrap();
    let daemon = Daemon::start(&w.args(&policy));
    let mut before_crash = spawn(&w, &[&agent, &act, "wait", "tcp:10.77.0.2:9"]);
    // Marked by the exec hook (no daemon involved); wait for the exec.
    std::thread::sleep(Duration::from_millis(300));
    daemon.kill9();
    // No daemon: the pinned hooks and maps keep containing, new execs too.
    let child = format!("sh:{PYTHON} {act} tcp:10.77.0.3:9");
    assert_eq!(
        run(&w, &[&agent, &act, "tcp:10.77.0.3:9", &child]),
        "EPERM EPERM"
    );
    let daemon = Daemon::start(&w.args(&policy));
    writeln!(before_crash.stdin.take().unwrap()).unwrap();
    assert_eq!(
        finish(before_crash),
        "EPERM",
        "the mark survived the crash and the restart"
    );

    // A drop-in opens the company's gateway to the selector.
    w.tmp.write(
        "policy.d/50-gateway.json",
        r#"{"version": 1, "agents": [{"name": "fake", "allow": ["10.77.0.2/32"]}]}"#,
    );
    let reload = || {
        let (code, _, err) = enforcer(&["reload", "--socket", &socket_arg(&w)]);
        assert_eq!(code, 0, "{err}");
    };
    reload();
    assert_eq!(
        run(&w, &[&agent, &act, "tcp:10.77.0.2:9", "tcp:10.77.0.3:9"]),
        "ECONNREFUSED EPERM"
    );
    // A selector put first moves the existing marks by name.
    let mut running = spawn(
        &w,
        &[&agent, &act, "wait", "tcp:10.77.0.2:9", "tcp:10.77.0.3:9"],
    );
    std::thread::sleep(Duration::from_millis(300));
    w.tmp.write(
        "policy.json",
        &format!(
            r#"{{"version": 1, "agents": [{{"name": "other", "exe": ["/opt/none/*"]}}, {selector}]}}"#
        ),
    );
    reload();
    let agents = json(&w, "agents");
    assert!(
        agents["contained"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["pid"] == running.id() && c["agent"] == "fake"),
        "{agents}"
    );
    // Removing the selector releases its processes.
    w.tmp.write("policy.json", r#"{"version": 1}"#);
    std::fs::remove_file(w.tmp.path().join("policy.d/50-gateway.json")).unwrap();
    reload();
    writeln!(running.stdin.take().unwrap()).unwrap();
    assert_eq!(finish(running), "ECONNREFUSED ECONNREFUSED");
    daemon.stop();
}

#[test]
fn execs_during_reloads_are_always_matched() {
    let w = world("aw");
    let home = w.tmp.path().join("opt");
    let agent = install_agent(&home, "4.0");
    let agent = agent.to_str().unwrap().to_owned();
    let act = w.tmp.write("act.py", ACT);
    let act = act.to_str().unwrap().to_owned();
    let fake = format!(
        r#"{{"name": "fake", "exe": ["{}/versions/*/agent"]}}"#,
        home.display()
    );
    // Two policies whose automata differ in size (the tables are rewritten
    // on every switch) and place the selector at another index.
    let extra: Vec<String> = (0..30)
        .map(|i| {
            format!(
                r#"{{"name": "x{i}", "exe": ["**/bin/other-{i}"], "script": ["**/x{i}/cli.js"]}}"#
            )
        })
        .collect();
    let small = format!(r#"{{"version": 1, "agents": [{fake}]}}"#);
    let large = format!(
        r#"{{"version": 1, "agents": [{}, {fake}]}}"#,
        extra.join(",")
    );
    let policy = w.tmp.write("policy.json", &small);
    let daemon = Daemon::start(&w.args(&policy));
    let results = std::thread::scope(|s| {
        let runs = s.spawn(|| {
            (0..40)
                .map(|_| run(&w, &[&agent, &act, "tcp:10.77.0.3:9"]))
                .collect::<Vec<_>>()
        });
        for i in 0..8 {
            w.tmp
                .write("policy.json", if i % 2 == 0 { &large } else { &small });
            let (code, _, err) = enforcer(&["reload", "--socket", &socket_arg(&w)]);
            assert_eq!(code, 0, "{err}");
        }
        runs.join().unwrap()
    });
    assert!(
        results.iter().all(|r| r == "EPERM"),
        "an exec during a reload escaped: {results:?}"
    );
    daemon.stop();
}

#[test]
fn a_restart_with_another_policy_keeps_each_selector_on_its_processes() {
    let w = world("ak");
    for dir in ["keep", "drop"] {
        std::fs::create_dir_all(w.tmp.path().join(dir)).unwrap();
    }
    let keep = w.tmp.write("keep/cli.py", ACT);
    let drop = w.tmp.write("drop/cli.py", ACT);
    let s = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let keep_sel = format!(r#"{{"name": "keep", "script": ["{}"]}}"#, s(&keep));
    let drop_sel = format!(r#"{{"name": "drop", "script": ["{}"]}}"#, s(&drop));
    let policy = w.tmp.write(
        "policy.json",
        &format!(r#"{{"version": 1, "agents": [{drop_sel}, {keep_sel}]}}"#),
    );
    let daemon = Daemon::start(&w.args(&policy));
    let mut kept = spawn(&w, &[PYTHON, &s(&keep), "wait", "tcp:10.77.0.3:9"]);
    let mut dropped = spawn(&w, &[PYTHON, &s(&drop), "wait", "tcp:10.77.0.3:9"]);
    std::thread::sleep(Duration::from_millis(300));
    daemon.kill9();
    // Started again with `drop` gone and `keep` now first (another rank):
    // `keep` keeps its slot, so its process stays contained by it;
    // `drop`'s process is released.
    w.tmp.write(
        "policy.json",
        &format!(
            r#"{{"version": 1, "agents": [{keep_sel}, {{"name": "new", "exe": ["/opt/none/*"]}}]}}"#
        ),
    );
    let daemon = Daemon::start(&w.args(&policy));
    let agents = json(&w, "agents");
    let contained = agents["contained"].as_array().unwrap();
    assert!(
        contained
            .iter()
            .any(|c| c["pid"] == kept.id() && c["agent"] == "keep"),
        "{agents}"
    );
    assert!(
        !contained.iter().any(|c| c["pid"] == dropped.id()),
        "{agents}"
    );
    writeln!(kept.stdin.take().unwrap()).unwrap();
    writeln!(dropped.stdin.take().unwrap()).unwrap();
    assert_eq!(finish(kept), "EPERM");
    assert_eq!(finish(dropped), "ECONNREFUSED");
    daemon.stop();
}

#[test]
fn an_agent_reaches_only_the_unix_domain_sockets_its_allow_list_names() {
    use std::os::unix::net::{UnixDatagram, UnixListener};
    let w = world("au");
    let home = w.tmp.path().join("opt");
    let act = w.tmp.write("act.py", ACT);
    let act = act.to_str().unwrap();
    // A gateway the company allows, a local SOCKS proxy it does not
    // (`ssh -D /path`), and a datagram socket: path names work across
    // network namespaces, so the test itself serves them.
    let gateway = w.tmp.path().join("gateway.sock");
    let proxy = w.tmp.path().join("proxy.sock");
    let dgram = w.tmp.path().join("log.sock");
    let _gateway = UnixListener::bind(&gateway).unwrap();
    let _proxy = UnixListener::bind(&proxy).unwrap();
    let _dgram = UnixDatagram::bind(&dgram).unwrap();
    let (gateway, proxy, dgram) = (
        gateway.to_str().unwrap(),
        proxy.to_str().unwrap(),
        dgram.to_str().unwrap(),
    );
    let glob = format!("{}/versions/*/agent", home.display());
    let policy = w.tmp.write(
        "policy.json",
        &format!(
            r#"{{"version": 1, "agents": [{{"name": "fake", "exe": ["{glob}"],
                "allow": ["unix:{gateway}", "unix:@enforcer-au-ok"]}}]}}"#
        ),
    );
    let daemon = Daemon::start(&w.args(&policy));
    // Abstract names belong to the network namespace: served inside it.
    let mut servers: Vec<Child> = ["@enforcer-au-ok", "@enforcer-au-no"]
        .iter()
        .map(|name| {
            let mut c = spawn(&w, &[PYTHON, act, &format!("serve:{name}")]);
            let mut line = String::new();
            BufReader::new(c.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), "ready");
            c
        })
        .collect();
    let actions = [
        format!("unix:{gateway}"),
        format!("unix:{proxy}"),
        "unix:@enforcer-au-ok".to_owned(),
        "unix:@enforcer-au-no".to_owned(),
        format!("unixdg:{dgram}"),
        // The allowed path with a trailing slash names another socket.
        format!("unix:{gateway}/"),
        // A path ends at its NUL, whatever the address holds after it.
        format!("unix:{gateway}%00{proxy}"),
        format!("unix:{proxy}%00{gateway}"),
    ];
    let agent = install_agent(&home, "1.0.0");
    let mut argv = vec![agent.to_str().unwrap(), act];
    argv.extend(actions.iter().map(String::as_str));
    assert_eq!(
        run(&w, &argv),
        "ok EPERM ok EPERM EPERM EPERM ok EPERM",
        "the agent reaches the allowed socket and abstract name only"
    );
    // Its children too.
    let child = format!("sh:{PYTHON} {act} unix:{proxy} unix:{gateway}");
    assert_eq!(run(&w, &[agent.to_str().unwrap(), act, &child]), "EPERM ok");
    // In a user namespace of its own the agent could bind-mount any
    // socket over the allowed path: there, no name is trusted.
    let userns = format!(
        "sh:unshare -Urm sh -c 'mount --bind {proxy} {gateway} && {PYTHON} {act} unix:{gateway}'"
    );
    assert_eq!(
        run(&w, &[agent.to_str().unwrap(), act, &userns]),
        "EPERM",
        "the allowed path, bind-mounted over by the proxy in the agent's own namespaces"
    );
    // A mount namespace without a user namespace (what a setuid sandbox
    // such as bwrap builds; root here): the same.
    let mntns = format!(
        "sh:unshare -m --propagation private sh -c 'mount --bind {proxy} {gateway} && {PYTHON} {act} unix:{gateway}'"
    );
    assert_eq!(
        run(&w, &[agent.to_str().unwrap(), act, &mntns]),
        "EPERM",
        "the allowed path, bind-mounted over in a mount namespace of its own"
    );
    // The gateway's socket lies under /tmp (world-writable): the daemon
    // says a local user could put another socket behind that name.
    assert!(
        daemon
            .log_text()
            .contains("could put another socket behind this name"),
        "{}",
        daemon.log_text()
    );
    // An uncontained process of the same cgroup reaches all of them.
    let mut argv = vec![PYTHON, act];
    argv.extend(actions.iter().take(5).map(String::as_str));
    argv.push(&userns);
    argv.push(&mntns);
    assert_eq!(run(&w, &argv), "ok ok ok ok sent ok ok");

    // Flows name the socket, the hook and the selector.
    let rows = flows(&w);
    for (dst, hook) in [
        (format!("unix:{proxy}"), "connect_unix"),
        ("unix:@enforcer-au-no".to_owned(), "connect_unix"),
        (format!("unix:{dgram}"), "sendmsg_unix"),
    ] {
        assert!(
            rows.iter().any(|r| r["dst"] == dst.as_str()
                && r["hooks"] == hook
                && r["agent"] == "fake"
                && r["verdict"] == "denied"),
            "no {hook} denial of {dst} in flows: {rows:#?}"
        );
    }
    // The allowed socket is reported twice: by the processes in their own
    // namespaces, the only ones refused it.
    let gateway_rows: Vec<_> = rows
        .iter()
        .filter(|r| r["dst"] == format!("unix:{gateway}").as_str())
        .collect();
    assert!(
        gateway_rows.len() == 2 && gateway_rows.iter().all(|r| r["count"] == 1),
        "{gateway_rows:#?}"
    );
    let agents = json(&w, "agents");
    assert!(
        agents.to_string().contains(&format!("unix:{gateway}")),
        "`agents` shows the allowed socket: {agents}"
    );
    for s in servers.iter_mut() {
        drop(s.stdin.take());
    }
    for s in servers {
        assert_eq!(finish(s), "served");
    }
    daemon.stop();
}

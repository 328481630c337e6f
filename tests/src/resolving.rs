//! A daemon test world with a real DNS server on loopback: the controller
//! and name tests share it.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use enforcer::{bpf::writer::MapWriter, snapshot::Snapshot};

use crate::{
    World,
    daemon::{DaemonArgs, enforcer},
    dns::DnsServer,
};

/// The shared world plus a DNS server.
pub struct Resolving {
    pub base: World,
    pub dns: DnsServer,
}

impl std::ops::Deref for Resolving {
    type Target = World;
    fn deref(&self) -> &World {
        &self.base
    }
}

pub fn world(tag: &str) -> Resolving {
    let base = World::new(
        tag,
        &[
            "10.77.0.1/32",
            "10.77.0.2/32",
            "10.77.0.3/32",
            "10.77.0.4/32",
            "10.77.0.5/32",
            "fd77::2/128",
        ],
    );
    std::fs::create_dir_all(base.tmp.path().join("policy.d")).unwrap();
    Resolving {
        base,
        dns: DnsServer::start(),
    }
}

impl Resolving {
    /// A policy with `rules` (JSON members) and a resolver on the test's
    /// DNS server with short TTL clamps.
    pub fn policy(&self, rules: &str, grace_s: u32) -> PathBuf {
        let text = format!(
            r#"{{"version": 1, {rules}
  "resolver": {{"upstreams": ["{}"], "min_ttl_s": 1, "max_ttl_s": 2, "grace_s": {grace_s}}}}}"#,
            self.dns.addr()
        );
        self.tmp.write("policy.json", &text)
    }

    pub fn args(&self, policy: PathBuf) -> DaemonArgs {
        self.base.args(&policy)
    }

    /// `enforcer check target` against the policy [`Resolving::policy`]
    /// wrote, answered by the running daemon: (exit code, stdout, stderr).
    pub fn check(&self, target: &str) -> (i32, String, String) {
        self.check_with(target, &self.socket(), &[])
    }

    /// `check` with no daemon to ask: judged from the pinned maps.
    pub fn check_offline(&self, target: &str) -> (i32, String, String) {
        let pins = self.pins().root().to_owned();
        let bpffs = ["--bpffs", pins.to_str().unwrap()];
        self.check_with(target, Path::new("/nonexistent/enforcer.sock"), &bpffs)
    }

    fn check_with(&self, target: &str, socket: &Path, extra: &[&str]) -> (i32, String, String) {
        let policy = self.tmp.path().join("policy.json");
        let mut args = vec![
            "check",
            target,
            "--policy",
            policy.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        enforcer(&args)
    }

    /// Each case is (target, blocked?, an address a real TCP connect
    /// tries): `check` exits 1 when blocked and 0 when not, live and
    /// offline, and the connect is refused exactly when the target is
    /// blocked, so `check` and the kernel agree.
    pub fn expect_checks(&self, cases: &[(&str, bool, Option<&str>)]) {
        for &(target, blocked, addr) in cases {
            for (how, (code, out, err)) in [
                ("live", self.check(target)),
                ("offline", self.check_offline(target)),
            ] {
                assert_eq!(
                    code,
                    if blocked { 1 } else { 0 },
                    "{how} check {target}: {out}{err}"
                );
            }
            if let Some(a) = addr {
                let r = self.probe(a);
                assert_eq!(r == "EPERM", blocked, "{target}: connect gave {r}");
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot::read(self.tmp.path()).expect("the daemon wrote its resolved state")
    }

    pub fn maps(&self) -> enforcer::desired::Desired {
        MapWriter::open(&self.pins()).unwrap().current()
    }
}

/// Polls `cond` every 50 ms for at most `secs` seconds.
pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

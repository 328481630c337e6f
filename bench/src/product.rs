//! Section 8: the product path. The release `enforcer` binary as users run
//! it (`policy validate`, `daemon`, `status`, `reload`) on generated
//! policies of 100k and 1M entries, names resolved from a DNS server on
//! loopback; `nft -f` of the same entries beside it.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    os::unix::net::UnixDatagram,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use enforcer::bpf::Pins;
use enforcer_common::{maps as names, v4_key};
use enforcer_tests::{
    BpffsGuard, CgroupGuard, NetnsGuard, TempDir,
    daemon::{DaemonArgs, wait_ready},
    dns::DnsServer,
};

use crate::{
    Report, median, secs,
    sections::{Rng, exact_v4, nft_file},
};

/// What a generated policy holds.
struct Mix {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    /// /24s in 64.0.0.0/3 (not 127/8: loopback stays reachable).
    r4: Vec<Ipv4Addr>,
    /// /64s under 2001:db8:2::/48 (at most 65536 fit).
    r6: Vec<Ipv6Addr>,
    names: Vec<String>,
}

impl Mix {
    /// `n` entries: `n/100` names (at most 10 000), 10 % v4 /24 ranges,
    /// 5 % v6 /64 ranges, 20 % exact v6, the rest exact v4.
    fn new(n: usize) -> Mix {
        let n_names = (n / 100).min(10_000);
        let n_r4 = n / 10;
        let n_r6 = (n / 20).min(65_536);
        let n_v6 = n / 5;
        let n_v4 = n - n_names - n_r4 - n_r6 - n_v6;
        let v4 = exact_v4(n_v4, 0x9e0 + n as u64);
        let mut rng = Rng(0x51de_0001 + n as u64);
        let mut seen = std::collections::HashSet::new();
        let mut r4 = Vec::with_capacity(n_r4);
        while r4.len() < n_r4 {
            let p = 0x4000_0000 | (rng.next() as u32 & 0x1fff_ff00);
            if seen.insert(p) {
                r4.push(Ipv4Addr::from(p));
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut v6 = Vec::with_capacity(n_v6);
        while v6.len() < n_v6 {
            let a = (0x2001_0db8_0001u128 << 80) | rng.next() as u128;
            if seen.insert(a) {
                v6.push(Ipv6Addr::from(a));
            }
        }
        let r6 = (0..n_r6 as u128)
            .map(|i| Ipv6Addr::from((0x2001_0db8_0002u128 << 80) | (i << 64)))
            .collect();
        let names = (0..n_names).map(|i| format!("n{i}.bench.test")).collect();
        Mix {
            v4,
            v6,
            r4,
            r6,
            names,
        }
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len() + self.r4.len() + self.r6.len() + self.names.len()
    }

    /// The policy file: every address and range under `deny.cidrs`, the
    /// probe and the names under `deny.domains`, resolved by `dns`.
    fn policy(&self, dns: &DnsServer) -> String {
        let mut s = String::with_capacity(self.len() * 30);
        s.push_str("{\"version\":1,\"deny\":{\"cidrs\":[");
        let mut first = true;
        let mut item = |s: &mut String, v: String| {
            if !first {
                s.push(',');
            }
            first = false;
            s.push('"');
            s.push_str(&v);
            s.push('"');
        };
        for a in &self.v4 {
            item(&mut s, a.to_string());
        }
        for a in &self.v6 {
            item(&mut s, a.to_string());
        }
        for a in &self.r4 {
            item(&mut s, format!("{a}/24"));
        }
        for a in &self.r6 {
            item(&mut s, format!("{a}/64"));
        }
        s.push_str("],\"domains\":[");
        let names: Vec<String> = std::iter::once(PROBE)
            .chain(self.names.iter().map(String::as_str))
            .map(|n| format!("\"{n}\""))
            .collect();
        s.push_str(&names.join(","));
        s.push_str(&format!(
            "]}},\"resolver\":{{\"upstreams\":[\"{}\"],\"min_ttl_s\":1}}}}",
            dns.addr()
        ));
        s
    }

    /// The same entries as one nft table: names as the addresses they
    /// resolve to.
    fn nft(&self) -> String {
        let mut v4: Vec<String> = self.v4.iter().map(ToString::to_string).collect();
        let mut v6: Vec<String> = self.v6.iter().map(ToString::to_string).collect();
        for i in 0..self.names.len() {
            let (a, aaaa) = name_addrs(i);
            v4.push(a.to_string());
            v6.push(aaaa.to_string());
        }
        v4.sort();
        v4.dedup();
        let r4: Vec<String> = self.r4.iter().map(|a| format!("{a}/24")).collect();
        let r6: Vec<String> = self.r6.iter().map(|a| format!("{a}/64")).collect();
        format!(
            "table inet bench {{\n\
             set v4 {{ type ipv4_addr; elements = {{ {} }} }}\n\
             set v6 {{ type ipv6_addr; elements = {{ {} }} }}\n\
             set r4 {{ type ipv4_addr; flags interval; elements = {{ {} }} }}\n\
             set r6 {{ type ipv6_addr; flags interval; elements = {{ {} }} }}\n\
             chain out {{ type filter hook output priority 0; ip daddr @v4 reject; \
             ip6 daddr @v6 reject; ip daddr @r4 reject; ip6 daddr @r6 reject; }}\n}}\n",
            v4.join(",\n"),
            v6.join(",\n"),
            r4.join(",\n"),
            r6.join(",\n"),
        )
    }
}

/// What name `i` resolves to: one address of 192.0.2.0/24 or
/// 198.51.100.0/24, one of 2001:db8:ff::/48. 203.0.113.0/24 is kept for
/// the resolver-change probe.
fn name_addrs(i: usize) -> (Ipv4Addr, Ipv6Addr) {
    let a = if i.is_multiple_of(2) {
        Ipv4Addr::new(192, 0, 2, (i / 2 % 256) as u8)
    } else {
        Ipv4Addr::new(198, 51, 100, (i / 2 % 256) as u8)
    };
    let aaaa = Ipv6Addr::from((0x2001_0db8_00ffu128 << 80) | i as u128);
    (a, aaaa)
}

/// TTL of every name but the probe (no refresh while the bench runs).
const LONG_TTL: u32 = 3600;
/// TTL of the probe name (the clamp's minimum is 1 s).
const PROBE_TTL: u32 = 2;

fn bin() -> Result<PathBuf> {
    let bin = std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .join("enforcer");
    if !bin.exists() {
        bail!("{} missing (cargo xtask bench builds it)", bin.display());
    }
    Ok(bin)
}

/// Runs `enforcer args...`; returns the wall time, failing on a non-zero exit.
fn timed(args: &[&std::ffi::OsStr]) -> Result<Duration> {
    let t = Instant::now();
    let out = Command::new(bin()?)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()?;
    let el = t.elapsed();
    if !out.status.success() {
        bail!(
            "enforcer {args:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(el)
}

/// (VmRSS, VmHWM) in MiB.
fn rss(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        s.lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
    };
    Some((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

/// A scoped daemon (its own cgroup, bpffs, state dir and socket), killed by
/// pid and reaped on drop; the guards go after it.
struct Instance {
    child: Option<Child>,
    /// Kept open: the daemon sends STATUS= after READY too.
    _notify: UnixDatagram,
    socket: PathBuf,
    policy: PathBuf,
    pins: Pins,
    tmp: TempDir,
    _bpffs: BpffsGuard,
    _cg: CgroupGuard,
}

impl Instance {
    /// Starts the daemon on `policy_text`; returns it and the time from
    /// spawn to READY=1 on the NOTIFY_SOCKET the bench listens on.
    fn start(policy_text: &str, deadline: Duration) -> Result<(Instance, Duration)> {
        let cg = CgroupGuard::new("pp");
        let bpffs = BpffsGuard::new("pp");
        let pins = Pins::new(bpffs.pins_dir());
        let tmp = TempDir::new("pp");
        let args = DaemonArgs::scoped(
            tmp.write("policy.json", policy_text),
            cg.path(),
            pins.root(),
            tmp.path().join("state"),
        );
        let notify_path = tmp.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path)?;
        notify.set_read_timeout(Some(Duration::from_millis(100)))?;
        let log = std::fs::File::create(tmp.path().join("daemon.log"))?;
        let t = Instant::now();
        let mut child = args
            .command_of(&bin()?, &[])
            .env("NOTIFY_SOCKET", &notify_path)
            // The controller's debug lines time each patch of changed names.
            .env("RUST_LOG", "info,enforcer::daemon::controller=debug")
            .stderr(log)
            .spawn()?;
        let ready = wait_ready(&notify, &mut child, deadline);
        let el = t.elapsed();
        let inst = Instance {
            child: Some(child),
            _notify: notify,
            socket: args.state.join("control.sock"),
            policy: args.policy,
            pins,
            tmp,
            _bpffs: bpffs,
            _cg: cg,
        };
        if let Err(why) = ready {
            bail!("{why}: {}", inst.log_tail());
        }
        Ok((inst, el))
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.tmp.path().join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// The daemon's first log lines (its start-up phases), on stderr.
    fn log_head(&self) {
        let text = std::fs::read_to_string(self.tmp.path().join("daemon.log")).unwrap_or_default();
        for l in text.lines().filter(|l| !l.contains("\"DEBUG\"")).take(8) {
            eprintln!("  daemon: {}", l.chars().take(220).collect::<String>());
        }
    }

    /// The `us` of the daemon's last `n` "changed names patched" lines
    /// that changed an address.
    fn patch_times(&self, n: usize) -> Vec<f64> {
        let text = std::fs::read_to_string(self.tmp.path().join("daemon.log")).unwrap_or_default();
        let v: Vec<f64> = text
            .lines()
            .filter(|l| l.contains("changed names patched") && !l.contains("\"addresses\":0,"))
            .filter_map(|l| {
                let rest = l.split("\"us\":").nth(1)?;
                rest.split([',', '}']).next()?.trim().parse().ok()
            })
            .collect();
        let v = v[v.len().saturating_sub(n)..].to_vec();
        if v.is_empty() { vec![f64::NAN] } else { v }
    }

    /// The daemon's warnings and errors so far, on stderr.
    fn log_problems(&self) {
        let text = std::fs::read_to_string(self.tmp.path().join("daemon.log")).unwrap_or_default();
        for l in text
            .lines()
            .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
            .take(10)
        {
            eprintln!("  daemon: {l}");
        }
    }

    fn cli(&self, cmd: &str) -> Result<Duration> {
        timed(&[cmd.as_ref(), "--socket".as_ref(), self.socket.as_os_str()])
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            for _ in 0..200 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits (bounded) until `key` is in the pinned DENY_V4 map; returns when
/// it was seen. Polls without sleeping: the figure is in microseconds.
fn wait_key_v4(pins: &Pins, addr: Ipv4Addr, limit: Duration) -> Result<Instant> {
    let data = aya::maps::MapData::from_pin(pins.map(names::DENY_V4))?;
    let map: aya::maps::HashMap<_, u32, u32> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data))?;
    let key = v4_key(addr.octets());
    let t = Instant::now();
    loop {
        if map.get(&key, 0).is_ok() {
            return Ok(Instant::now());
        }
        if t.elapsed() > limit {
            bail!("{addr} not in the map after {} s", limit.as_secs());
        }
        std::hint::spin_loop();
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// Sizes measured: (entries, daemon start deadline).
const SIZES: [(usize, u64); 2] = [(100_000, 120), (1_000_000, 300)];
const PROBE: &str = "probe.bench.test";
const RESOLVER_CHANGES: u8 = 5;
const STATUS_RUNS: usize = 5;

pub fn product_path(r: &mut Report) -> Result<()> {
    r.line(
        "The release `enforcer` binary, as users run it. Policy: `n` entries — `n`/100 names \
         (at most 10 000; each resolves to one A in 192.0.2.0/24 or 198.51.100.0/24 and one AAAA in \
         2001:db8:ff::/48, TTL 3600 s), 10 % v4 /24 ranges (in 64.0.0.0/3), 5 % v6 /64 ranges, 20 % exact v6, \
         the rest exact v4 — plus one probe name (TTL 2 s). Names are answered by a DNS server on \
         loopback (`resolver.upstreams`, `min_ttl_s` 1). The daemon runs scoped: `--cgroup` (one \
         made for the run), private `--bpffs`, state dir and socket. \
         *validate*: `enforcer policy validate FILE`, median of 3. *start*: spawn → READY=1 on a \
         NOTIFY_SOCKET the bench listens on (sent once every name was asked and the maps hold the \
         answers). *RSS*: VmRSS / VmHWM of the daemon right after READY. *status*: `enforcer \
         status` wall time, median of 5. *resolver change*: the probe name's A record changes \
         (203.0.113.x); time from the DNS server answering the refresh to the address being in \
         the pinned map (the bench polls it), median of 5. *1 % reload*: 1 % of the exact v4 \
         entries replaced in the file, then `enforcer reload` wall time (it returns once the \
         maps hold the new policy). nft: `nft -f` of one `table inet` (hash sets for the \
         addresses and the names' addresses, interval sets for the ranges, an output chain using \
         them) in a namespace made for the run; its reload deletes and adds the same 1 % as \
         elements.",
    );
    r.line("");
    r.line("| entries | what | enforcer | nft -f | target | status |");
    r.line("|---:|---|---:|---:|---|---|");
    // ENFORCER_BENCH_SIZES=100000 runs one size (while profiling).
    let only: Option<Vec<usize>> = std::env::var("ENFORCER_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    for (n, deadline) in SIZES {
        if only.as_ref().is_some_and(|o| !o.contains(&n)) {
            continue;
        }
        size(r, n, Duration::from_secs(deadline))?;
    }
    Ok(())
}

fn size(r: &mut Report, n: usize, deadline: Duration) -> Result<()> {
    let mut mix = Mix::new(n);
    let dns = DnsServer::start();
    let all: Vec<(String, [String; 2])> = mix
        .names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (a, aaaa) = name_addrs(i);
            (name.clone(), [a.to_string(), aaaa.to_string()])
        })
        .collect();
    for (name, addrs) in &all {
        dns.set_addrs(name, &[&addrs[0], &addrs[1]], LONG_TTL);
    }
    dns.set_addrs(PROBE, &["203.0.113.1"], PROBE_TTL);
    let text = mix.policy(&dns);
    let total = mix.len() + 1;
    eprintln!(
        "  product path: {total} entries ({} names)",
        mix.names.len() + 1
    );
    let tmp = TempDir::new("pp");
    let file = tmp.write("policy.json", &text);

    // policy validate
    let mut v = Vec::new();
    for _ in 0..3 {
        v.push(secs(timed(&[
            "policy".as_ref(),
            "validate".as_ref(),
            file.as_os_str(),
        ])?));
    }
    let validate = median(v);
    r.line(format!(
        "| {total} | `policy validate` | {validate:.2} s | | | |"
    ));

    // start → READY, RSS
    let (inst, start) = Instance::start(&text, deadline)?;
    let start = secs(start);
    inst.log_head();
    let target = if n >= 1_000_000 { 5.0 } else { 0.5 };
    r.line(format!(
        "| {total} | start → enforcing (READY=1) | {start:.2} s | | ≤ {target} s | {} |",
        mark(start <= target)
    ));
    let (vmrss, vmhwm) = rss(inst.pid()).context("daemon gone")?;
    let rss_target = if n >= 1_000_000 { 128.0 } else { 20.0 };
    r.line(format!(
        "| {total} | RSS after start (VmRSS / VmHWM) | {vmrss:.1} / {vmhwm:.1} MiB | | ≤ {rss_target} MiB | {} |",
        mark(vmrss <= rss_target)
    ));

    // status
    let mut v = Vec::new();
    for _ in 0..STATUS_RUNS {
        v.push(secs(inst.cli("status")?) * 1e3);
    }
    r.line(format!(
        "| {total} | `status` | {:.1} ms | | | |",
        median(v)
    ));

    // resolver change
    let mut v = Vec::new();
    for k in 0..RESOLVER_CHANGES {
        let addr = Ipv4Addr::new(203, 0, 113, 10 + k);
        dns.set_addrs(PROBE, &[&addr.to_string()], PROBE_TTL);
        let seen = wait_key_v4(&inst.pins, addr, Duration::from_secs(20))?;
        let served = dns.served_at(PROBE).context("probe never asked")?;
        v.push(seen.saturating_duration_since(served).as_secs_f64() * 1e6);
    }
    eprintln!("  resolver changes µs: {v:?}");
    inst.log_problems();
    let change = median(v);
    let inside = median(inst.patch_times(RESOLVER_CHANGES as usize));
    r.line(format!(
        "| {total} | resolver change: answer → in the map | {change:.0} µs | | {} | {} |",
        if n >= 1_000_000 { "≤ 50 µs" } else { "" },
        if n >= 1_000_000 {
            mark(change <= 50.0)
        } else {
            ""
        }
    ));
    r.line(format!(
        "| {total} | resolver change: the daemon's patch (its log) | {inside:.0} µs | | {} | {} |",
        if n >= 1_000_000 { "≤ 50 µs" } else { "" },
        if n >= 1_000_000 {
            mark(inside <= 50.0)
        } else {
            ""
        }
    ));

    // 1 % reload
    let k = mix.v4.len().min(n / 100);
    let fresh: Vec<Ipv4Addr> = exact_v4(k, 0x77)
        .into_iter()
        .map(|a| Ipv4Addr::from(u32::from(a) ^ 0x8000_0000))
        .collect();
    let old = std::mem::take(&mut mix.v4);
    mix.v4 = fresh.iter().chain(&old[k..]).copied().collect();
    let edited = mix.policy(&dns);
    mix.v4 = old;
    std::fs::write(&inst.policy, &edited)?;
    let reload = secs(inst.cli("reload")?) * 1e3;
    if wait_key_v4(&inst.pins, fresh[0], Duration::from_secs(1)).is_err() {
        bail!("after reload the map lacks {}", fresh[0]);
    }
    drop(inst);

    // nft: the same entries, and the same 1 % as element changes.
    let ns = NetnsGuard::new("pp");
    let nft = tmp.write("load.nft", &mix.nft());
    let nft_load = secs(nft_file(&ns, &nft)?);
    let join = |v: &[Ipv4Addr]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",\n")
    };
    let nft_re = tmp.write(
        "reload.nft",
        &format!(
            "delete element inet bench v4 {{ {} }}\nadd element inet bench v4 {{ {} }}\n",
            join(&mix.v4[..k]),
            join(&fresh)
        ),
    );
    let nft_reload = secs(nft_file(&ns, &nft_re)?) * 1e3;
    drop(ns);
    r.line(format!(
        "| {total} | load (start; nft: `nft -f` of the table) | {start:.2} s | {nft_load:.2} s | | |"
    ));
    let reload_ok = reload <= nft_reload;
    r.line(format!(
        "| {total} | 1 % reload ({k} addresses replaced) | {reload:.0} ms | {nft_reload:.0} ms | {} | {} |",
        if n >= 1_000_000 { "≤ nft" } else { "" },
        if n >= 1_000_000 { mark(reload_ok) } else { "" }
    ));

    // A/A control: a second start of the same policy.
    if n < 1_000_000 {
        let (inst, again) = Instance::start(&text, deadline)?;
        let again = secs(again);
        let (rss2, hwm2) = rss(inst.pid()).context("daemon gone")?;
        drop(inst);
        r.line(format!(
            "| {total} | A/A: second start / its RSS | {again:.2} s / {rss2:.1} ({hwm2:.1}) MiB | | | |"
        ));
    }
    Ok(())
}

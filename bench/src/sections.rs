//! The benchmarks themselves, one function per section of docs/BENCHMARKS.md.

use std::{
    io::Write as _,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::programs::{CgroupSkb, TestRun, TestRunOptions, TestRunResult, Xdp};
use enforcer::{
    bpf::{CgroupHook, Datapath, Pins, stats::Stats, writer::MapWriter},
    desired::{Desired, Prefix},
};
use enforcer_common::{HOOK_XDP, VERDICT_DENIED, maps as names, programs, v4_key, v6_key};
use enforcer_tests::{BpffsGuard, CgroupGuard, NetnsGuard, TempDir, daemon::DaemonArgs};

use crate::{Report, median, raw, secs};

/// Test runs per measurement, and measurements per figure (median).
pub(crate) const REPEAT: u32 = 100_000;
pub(crate) const ROUNDS: usize = 3;

/// Deterministic xorshift64*, so every run bans the same addresses.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Banned exact v4 addresses live in 32.0.0.0/3, banned v4 ranges (/24)
/// in 64.0.0.0/2, exact v6 in 2001:db8:1::/48, v6 ranges (/64) in
/// 2001:db8:2::/48. The miss addresses are outside all of them.
const MISS_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const MISS_V4_DST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const MISS_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
const MISS_V6_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xfffe, 0, 0, 0, 0, 1);

pub(crate) fn exact_v4(n: usize, seed: u64) -> Vec<Ipv4Addr> {
    let mut rng = Rng(seed | 1);
    let mut set = std::collections::BTreeSet::new();
    while set.len() < n {
        set.insert(0x2000_0000 | (rng.next() as u32 & 0x1fff_ffff));
    }
    let mut v: Vec<Ipv4Addr> = set.into_iter().map(Ipv4Addr::from).collect();
    // Random order, so that picks are not sorted neighbours.
    for i in (1..v.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

fn desired_for(n_exact: usize, n_ranges: usize, v6: bool) -> (Desired, Vec<Ipv4Addr>) {
    let mut d = Desired::default();
    let mut rng = Rng(0x5eed_0000 + n_exact as u64);
    let v4 = exact_v4(n_exact, 0xabc + n_exact as u64);
    for (i, a) in v4.iter().enumerate() {
        d.deny_v4.insert(v4_key(a.octets()), i as u32 + 1);
    }
    while d.deny_lpm_v4.len() < n_ranges {
        let p = 0x4000_0000 | ((rng.next() as u32 & 0x3fff_ffff) & 0xffff_ff00);
        d.deny_lpm_v4.insert(
            Prefix {
                len: 24,
                addr: v4_key(Ipv4Addr::from(p).octets()),
            },
            7,
        );
    }
    if v6 {
        while d.deny_v6.len() < n_exact {
            let low = rng.next();
            let a = Ipv6Addr::from(((0x2001_0db8_0001u128) << 80) | low as u128);
            d.deny_v6.insert(v6_key(a.octets()), 9);
        }
        while d.deny_lpm_v6.len() < n_ranges {
            let mid = rng.next() & 0xffff_ffff_ffff;
            // 2001:db8:2:xxxx:xxxx:xxxx::/96 → take a /64 under 2001:db8:2::/48.
            let a = Ipv6Addr::from(((0x2001_0db8_0002u128) << 80) | ((mid as u128 & 0xffff) << 64));
            d.deny_lpm_v6.insert(
                Prefix {
                    len: 64,
                    addr: v6_key(a.octets()),
                },
                11,
            );
            if d.deny_lpm_v6.len() >= 65_536 {
                break; // the /48 holds 65536 /64s
            }
        }
    }
    (d, v4)
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    ethernet_to([0x02, 0, 0, 0, 0, 1], ethertype, payload)
}

fn ethernet_to(dst_mac: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    // Header checksum, so the receive path accepts it.
    let mut sum: u32 = 0;
    for c in ip.chunks(2) {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    ip.extend_from_slice(&[0x1f, 0x90, 0x00, 0x09, 0, 8, 0, 0]);
    ip
}

fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&[0x1f, 0x90, 0x00, 0x09, 0, 8, 0, 0]);
    ip
}

pub(crate) fn xdp_run(dp: &mut Datapath, frame: &[u8]) -> Result<f64> {
    let p: &mut Xdp = dp
        .ebpf_mut()
        .program_mut(programs::XDP)
        .context("xdp program")?
        .try_into()?;
    median_of_runs(p, frame)
}

pub(crate) fn skb_run(dp: &mut Datapath, frame: &[u8]) -> Result<f64> {
    let p: &mut CgroupSkb = dp
        .ebpf_mut()
        .program_mut(programs::SKB_EGRESS)
        .context("skb program")?
        .try_into()?;
    median_of_runs(p, frame)
}

/// The median over ROUNDS of the kernel's ns per run (REPEAT runs each).
pub(crate) fn median_of_runs<P>(p: &mut P, frame: &[u8]) -> Result<f64>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let mut v = Vec::new();
    for _ in 0..ROUNDS {
        let r = p.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: REPEAT,
            ..Default::default()
        })?;
        v.push(r.duration.as_nanos() as f64);
    }
    Ok(median(v))
}

pub(crate) fn floor_run(fd: &std::os::fd::OwnedFd, frame: &[u8]) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..ROUNDS {
        v.push(raw::test_run(fd, frame, REPEAT, None)?.1 as f64);
    }
    Ok(median(v))
}

/// A private bpffs and the object loaded into it, dropped in order.
struct Loaded {
    dp: Option<Datapath>,
    pins: Pins,
    _bpffs: BpffsGuard,
}

impl Loaded {
    fn new(tag: &str, capacity: &[(&'static str, u32)]) -> Result<Loaded> {
        let bpffs = BpffsGuard::new(tag);
        let pins = Pins::new(bpffs.pins_dir());
        let dp = Datapath::load_with_capacity(&pins, capacity)?;
        Ok(Loaded {
            dp: Some(dp),
            pins,
            _bpffs: bpffs,
        })
    }

    fn dp(&mut self) -> &mut Datapath {
        self.dp.as_mut().expect("loaded")
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.dp.take();
    }
}

pub fn per_packet(r: &mut Report) -> Result<()> {
    r.line(format!(
        "The XDP program (`{}`) and the cgroup_skb egress program (`{}`) run by BPF_PROG_TEST_RUN \
         on one crafted UDP frame, {REPEAT} repeats, median of {ROUNDS}; kernel-reported ns per run. \
         The floor is a return-only program of the same type, measured in the same loop. \
         Maps hold N exact v4 + N exact v6 addresses and N v4 /24 + min(N, 65536) v6 /64 ranges \
         (the daemon's capacity for ranges is raised to N for this). Hit = destination banned; \
         `xdp` also checks the source (a miss address). Ratio = program / floor.",
        programs::XDP,
        programs::SKB_EGRESS
    ));
    r.line("");
    let xdp_floor = raw::return_only(raw::PROG_TYPE_XDP, raw::ATTACH_XDP, 1)?;
    let skb_floor = raw::return_only(raw::PROG_TYPE_CGROUP_SKB, raw::ATTACH_CGROUP_INET_EGRESS, 1)?;
    r.line("| entries | family | case | xdp ns | xdp floor ns | xdp ratio | skb ns | skb floor ns | skb ratio |");
    r.line("|---:|---|---|---:|---:|---:|---:|---:|---:|");
    let mut aa = Vec::new();
    for n in [1usize, 1_000, 100_000, 1_000_000] {
        let (desired, v4) = desired_for(n, n, true);
        let cap = (n as u32).max(1 << 18).next_power_of_two();
        let mut l = Loaded::new(
            "bp",
            &[(names::DENY_LPM_V4, cap), (names::DENY_LPM_V6, cap)],
        )?;
        let mut w = MapWriter::open(&l.pins)?;
        let t = Instant::now();
        w.apply(&desired)?;
        eprintln!(
            "  loaded {} entries in {:.2} s",
            desired.len(),
            secs(t.elapsed())
        );
        let range4 = desired.deny_lpm_v4.keys().next().unwrap();
        let range4 = Ipv4Addr::from(enforcer_common::v4_octets(range4.addr));
        let range4 = Ipv4Addr::from(u32::from(range4) | 7);
        let exact6 = Ipv6Addr::from(enforcer_common::v6_octets(
            *desired
                .deny_v6
                .keys()
                .nth(desired.deny_v6.len() / 2)
                .unwrap(),
        ));
        let range6 = desired.deny_lpm_v6.keys().next().unwrap();
        let range6 =
            Ipv6Addr::from(u128::from(Ipv6Addr::from(enforcer_common::v6_octets(range6.addr))) | 7);
        let cases: [(&str, &str, Vec<u8>); 6] = [
            (
                "v4",
                "hit exact",
                ethernet(0x0800, &ipv4_udp(MISS_V4, v4[v4.len() / 2])),
            ),
            (
                "v4",
                "hit range",
                ethernet(0x0800, &ipv4_udp(MISS_V4, range4)),
            ),
            (
                "v4",
                "miss",
                ethernet(0x0800, &ipv4_udp(MISS_V4, MISS_V4_DST)),
            ),
            (
                "v6",
                "hit exact",
                ethernet(0x86dd, &ipv6_udp(MISS_V6, exact6)),
            ),
            (
                "v6",
                "hit range",
                ethernet(0x86dd, &ipv6_udp(MISS_V6, range6)),
            ),
            (
                "v6",
                "miss",
                ethernet(0x86dd, &ipv6_udp(MISS_V6, MISS_V6_DST)),
            ),
        ];
        for (fam, case, frame) in &cases {
            let xf = floor_run(&xdp_floor, frame)?;
            let x = xdp_run(l.dp(), frame)?;
            let sf = floor_run(&skb_floor, frame)?;
            let s = skb_run(l.dp(), frame)?;
            let xf2 = floor_run(&xdp_floor, frame)?;
            aa.push((xf - xf2).abs());
            r.line(format!(
                "| {n} | {fam} | {case} | {x:.0} | {xf:.0} | {:.2} | {s:.0} | {sf:.0} | {:.2} |",
                x / xf.max(1.0),
                s / sf.max(1.0)
            ));
        }
    }
    r.line("");
    r.line(format!(
        "A/A control: the XDP floor measured twice around each row differs by at most {:.0} ns (median {:.0} ns).",
        aa.iter().cloned().fold(0.0, f64::max),
        median(aa.clone())
    ));
    Ok(())
}

fn ifindex_in(ns: &NetnsGuard, dev: &str) -> Result<u32> {
    let path = format!("/sys/class/net/{dev}/ifindex");
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "cat", &path])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

fn mac_in(ns: &NetnsGuard, dev: &str) -> Result<[u8; 6]> {
    let path = format!("/sys/class/net/{dev}/address");
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "cat", &path])
        .output()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let mut mac = [0u8; 6];
    for (i, p) in s.trim().split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(p, 16)?;
    }
    Ok(mac)
}

/// `nft -f FILE` inside `ns`; returns the wall time.
pub(crate) fn nft_file(ns: &NetnsGuard, file: &Path) -> Result<Duration> {
    let t = Instant::now();
    let out = Command::new("timeout")
        .args(["120", "ip", "netns", "exec", ns.name(), "nft", "-f"])
        .arg(file)
        .output()
        .context("running nft (is nftables installed? cargo xtask setup)")?;
    let el = t.elapsed();
    if !out.status.success() {
        bail!("nft -f failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(el)
}

fn nft_cmd(ns: &NetnsGuard, args: &[&str]) -> Result<String> {
    let out = Command::new("timeout")
        .args(["60", "ip", "netns", "exec", ns.name(), "nft"])
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "nft {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn elements_v4(addrs: &[Ipv4Addr]) -> String {
    let mut s = String::with_capacity(addrs.len() * 16);
    for (i, a) in addrs.iter().enumerate() {
        if i > 0 {
            s.push_str(",\n");
        }
        s.push_str(&a.to_string());
    }
    s
}

const LIVE_FRAMES: u32 = 2_000_000;
const LIVE_BATCH: u32 = 64;
/// Distinct source addresses cycled over per run.
const LIVE_SOURCES: usize = 16;

/// Frames injected as received by a generator XDP program in namespace A
/// (BPF_PROG_TEST_RUN, live frames, redirect to `va`), received on `vb` in B.
/// Returns wall ns per frame over all sources.
fn live_run(p: &enforcer_tests::veth::Pair, frames: &[Vec<u8>]) -> Result<f64> {
    let va = ifindex_in(&p.a, "va")?;
    p.a.enter(|| -> Result<f64> {
        let generator = raw::redirect_to(va)?;
        let per = LIVE_FRAMES / frames.len() as u32;
        let t = Instant::now();
        for f in frames {
            raw::test_run(&generator, f, per, Some(LIVE_BATCH))?;
        }
        Ok(t.elapsed().as_nanos() as f64 / (per as f64 * frames.len() as f64))
    })
}

pub fn live_drop(r: &mut Report) -> Result<()> {
    r.line(format!(
        "Generator: an XDP program in namespace A that redirects every frame to veth `va`, driven by \
         BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (batch {LIVE_BATCH}); {LIVE_FRAMES} UDP frames per \
         case, cycling over {LIVE_SOURCES} source addresses, to `vb` in namespace B (its MAC, 10.79.0.2). \
         ns/frame = generator wall time / frames, which includes the receive processing on `vb` \
         (veth NAPI runs on the sending CPU at each batch flush). `vb` always has an XDP program \
         (veth needs one for redirected frames): the enforcer's, or a return-XDP_PASS one for the \
         nftables and no-filter cases. nft: `table netdev` with an ingress chain on `vb`, \
         `ip saddr @ban counter drop`."
    ));
    r.line("");
    let p = enforcer_tests::veth::pair("bl");
    let mac = mac_in(&p.b, "vb")?;
    let vb = ifindex_in(&p.b, "vb")?;
    let dst = Ipv4Addr::new(10, 79, 0, 2);
    let pass_fd = raw::return_only(raw::PROG_TYPE_XDP, raw::ATTACH_XDP, 2)?;
    let mk = |srcs: &[Ipv4Addr]| -> Vec<Vec<u8>> {
        srcs.iter()
            .map(|s| ethernet_to(mac, 0x0800, &ipv4_udp(*s, dst)))
            .collect()
    };
    let legit: Vec<Ipv4Addr> = (0..LIVE_SOURCES as u8)
        .map(|i| Ipv4Addr::new(198, 51, 100, 10 + i))
        .collect();
    let legit_frames = mk(&legit);
    // Baseline (A/A): pass-only XDP, no filter, twice.
    let baseline = |r: &mut Report, label: &str| -> Result<f64> {
        let link = p.b.enter(|| raw::xdp_link(&pass_fd, vb))?;
        let ns = live_run(&p, &legit_frames)?;
        drop(link);
        r.line(format!("- {label}: {ns:.0} ns/frame"));
        Ok(ns)
    };
    // Warm-up (neighbour entries, caches), not reported.
    {
        let link = p.b.enter(|| raw::xdp_link(&pass_fd, vb))?;
        live_run(&p, &legit_frames)?;
        drop(link);
    }
    let drop_fd = raw::return_only(raw::PROG_TYPE_XDP, raw::ATTACH_XDP, 1)?;
    let link = p.b.enter(|| raw::xdp_link(&drop_fd, vb))?;
    let drop_floor = live_run(&p, &legit_frames)?;
    drop(link);
    r.line(format!(
        "- XDP_DROP floor (return-only drop program on `vb`; generator + veth cost): {drop_floor:.0} ns/frame"
    ));
    let base1 = baseline(r, "no filter (pass-only XDP), run 1")?;
    let base2 = baseline(r, "no filter (pass-only XDP), run 2 (A/A)")?;
    let noise = (base1 - base2).abs();
    let base = (base1 + base2) / 2.0;
    r.line(format!(
        "- A/A noise: {noise:.0} ns/frame ({:.1} %)",
        100.0 * noise / base
    ));
    r.line("");
    r.line("| entries | enforcer drop ns | nft hash drop ns | nft interval drop ns | enforcer/nft-hash | enforcer/nft-interval | enforcer pass (miss) ns | miss overhead vs no filter | enforcer drops counted |");
    r.line("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let tmp = TempDir::new("bl");
    let mut in_place = Vec::new();
    for (label, n, ranges) in [
        ("10k /32", 10_000usize, false),
        ("100k /32", 100_000, false),
        ("1M /32", 1_000_000, false),
        ("10k /24 ranges", 10_000, true),
    ] {
        let t = Instant::now();
        let (desired, addrs, nft_elems, banned): (Desired, Vec<Ipv4Addr>, String, Vec<Ipv4Addr>) =
            if ranges {
                let (d, _) = desired_for(0, n, false);
                let nets: Vec<Ipv4Addr> = d
                    .deny_lpm_v4
                    .keys()
                    .map(|k| Ipv4Addr::from(enforcer_common::v4_octets(k.addr)))
                    .collect();
                let elems = nets
                    .iter()
                    .map(|a| format!("{a}/24"))
                    .collect::<Vec<_>>()
                    .join(",\n");
                let banned = nets
                    .iter()
                    .step_by(n / LIVE_SOURCES)
                    .take(LIVE_SOURCES)
                    .map(|a| Ipv4Addr::from(u32::from(*a) | 9))
                    .collect();
                (d, nets, elems, banned)
            } else {
                let (d, v4) = desired_for(n, 0, false);
                let elems = elements_v4(&v4);
                let banned = v4
                    .iter()
                    .step_by(n / LIVE_SOURCES)
                    .take(LIVE_SOURCES)
                    .copied()
                    .collect();
                (d, v4, elems, banned)
            };
        drop(addrs);
        let drop_frames = mk(&banned);
        // Enforcer.
        let (enf_drop, enf_pass, counted) = {
            let mut l = Loaded::new("bl", &[])?;
            MapWriter::open(&l.pins)?.apply(&desired)?;
            let mode = p.b.enter(|| l.dp().attach_xdp("vb"))?;
            if mode != "native" {
                bail!("XDP on vb attached in {mode} mode");
            }
            let before = Stats::read(&l.pins)?.get(HOOK_XDP, VERDICT_DENIED);
            let s0 = prog_stats(l.dp(), programs::XDP);
            let d = live_run(&p, &drop_frames)?;
            let s1 = prog_stats(l.dp(), programs::XDP);
            let counted = Stats::read(&l.pins)?.get(HOOK_XDP, VERDICT_DENIED) - before;
            let pass = live_run(&p, &legit_frames)?;
            let s2 = prog_stats(l.dp(), programs::XDP);
            if let (Some(a), Some(b), Some(c)) = (s0, s1, s2) {
                in_place.push(format!(
                    "{label}: drop {:.0} ns/run, pass {:.0} ns/run",
                    (b.0 - a.0) as f64 / (b.1 - a.1).max(1) as f64,
                    (c.0 - b.0) as f64 / (c.1 - b.1).max(1) as f64
                ));
            }
            // Unmounting the private bpffs (drop) releases the XDP link.
            (d, pass, counted)
        };
        // nftables, hash then interval set.
        let mut nft = Vec::new();
        for flags in ["", "flags interval;"] {
            if ranges && flags.is_empty() {
                nft.push(f64::NAN); // a hash set cannot hold ranges
                continue;
            }
            let file = tmp.write(
                "ban.nft",
                &format!(
                    "table netdev bench {{\n set ban {{ type ipv4_addr; {flags} elements = {{ {nft_elems} }} }}\n \
                     chain in {{ type filter hook ingress device \"vb\" priority 0; ip saddr @ban counter drop; }}\n}}\n"
                ),
            );
            nft_file(&p.b, &file)?;
            let link = p.b.enter(|| raw::xdp_link(&pass_fd, vb))?;
            let ns = live_run(&p, &drop_frames);
            drop(link);
            nft_cmd(&p.b, &["delete", "table", "netdev", "bench"])?;
            nft.push(ns?);
        }
        // A hash set cannot hold ranges: that cell is "n/a", not a number.
        let cell = |v: f64, digits: usize| {
            if v.is_nan() {
                "n/a".to_owned()
            } else {
                format!("{v:.digits$}")
            }
        };
        r.line(format!(
            "| {label} | {enf_drop:.0} | {} | {} | {} | {} | {enf_pass:.0} | {:+.1} % | {counted} |",
            cell(nft[0], 0),
            cell(nft[1], 0),
            cell(enf_drop / nft[0], 2),
            cell(enf_drop / nft[1], 2),
            100.0 * (enf_pass - base) / base
        ));
        eprintln!("  ({label}: {:.1} s)", secs(t.elapsed()));
    }
    r.line("");
    r.line(
        "Ratios below 1 mean the enforcer is cheaper; the inverse (nft/enforcer) is how many times cheaper.",
    );
    r.line("");
    r.line(format!(
        "Enforcer XDP program in place (kernel.bpf_stats_enabled, run_time_ns / run_cnt): {}.",
        in_place.join("; ")
    ));
    Ok(())
}

const CONNECTS: u32 = 20_000;
const CONNECT_SECS: u64 = 5;
const BANNED_DST: Ipv4Addr = Ipv4Addr::new(10, 79, 9, 9);

/// The child of `connect_path`, already in the cgroup and the namespace:
/// `__connect MODE COUNT SECS` prints `done seconds`.
pub fn connect_child(args: &[String]) -> Result<()> {
    let mode = args.first().context("mode")?.clone();
    let count: u32 = args.get(1).context("count")?.parse()?;
    let limit = Duration::from_secs(args.get(2).context("secs")?.parse()?);
    if mode == "unix" {
        return unix_connects(count, limit);
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    // std listens with a backlog of 128; a deeper queue (SOMAXCONN, 4096)
    // keeps SYNs from being dropped (a 1 s retransmit) when the acceptor
    // lags. listen() again on a listening socket only resizes it.
    let _ = nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::MAXCONN);
    let target: SocketAddr = if mode == "refused" {
        SocketAddr::from((BANNED_DST, 80))
    } else {
        listener.local_addr()?
    };
    let start = Instant::now();
    accept_for_30s(start, move || listener.accept().map(drop));
    let mut done = 0u32;
    let mut errors = 0u32;
    while done < count && start.elapsed() < limit {
        match TcpStream::connect_timeout(&target, Duration::from_millis(200)) {
            Ok(s) => {
                // No TIME_WAIT: close with RST.
                let rst = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Linger, &rst);
                if mode == "hello" {
                    // Section 9: one first write, as a TLS client's.
                    let hello = enforcer_tests::tls::client_hello(
                        "ok.test",
                        enforcer_tests::tls::Hello::Plain,
                    );
                    if (&s).write_all(&hello).is_err() {
                        errors += 1;
                    }
                }
                if mode == "refused" {
                    errors += 1_000_000; // must not happen
                }
            }
            Err(e) if mode == "refused" && e.raw_os_error() == Some(libc::EPERM) => {}
            Err(_) => errors += 1,
        }
        done += 1;
    }
    println!("{done} {} {errors}", start.elapsed().as_secs_f64());
    Ok(())
}

/// Accepts (and drops) connections through `accept`, on a thread of its
/// own, for 30 s from `start` at most.
fn accept_for_30s<E>(start: Instant, mut accept: impl FnMut() -> Result<(), E> + Send + 'static) {
    std::thread::spawn(move || {
        while start.elapsed() <= Duration::from_secs(30) {
            let _ = accept();
        }
    });
}

/// `__connect unix`: Unix-domain stream connects to a listener of the
/// child's own (section 11: the connect_unix hook of an uncontained process).
fn unix_connects(count: u32, limit: Duration) -> Result<()> {
    use std::os::unix::net::{UnixListener, UnixStream};
    let dir = std::env::temp_dir().join(format!("enforcer-bench-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("s");
    let listener = UnixListener::bind(&path)?;
    let start = Instant::now();
    accept_for_30s(start, move || listener.accept().map(drop));
    let (mut done, mut errors) = (0u32, 0u32);
    while done < count && start.elapsed() < limit {
        if UnixStream::connect(&path).is_err() {
            errors += 1;
        }
        done += 1;
    }
    println!("{done} {} {errors}", start.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

pub(crate) fn run_connect_child(cg: &Path, mode: &str, ns: &NetnsGuard) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let procs = std::ffi::CString::new(cg.join("cgroup.procs").as_os_str().as_encoded_bytes())?;
    let mut cmd = Command::new("timeout");
    cmd.args(["60", "ip", "netns", "exec", ns.name()])
        .arg(&exe)
        .args([
            "__connect",
            mode,
            &CONNECTS.to_string(),
            &CONNECT_SECS.to_string(),
        ])
        .stdout(Stdio::piped());
    // SAFETY: only async-signal-safe calls (open, write, close) after fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = cmd.output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    if !out.status.success() || f.len() != 3 {
        bail!("connect child ({mode}) failed: {} {text}", out.status);
    }
    eprintln!("  connect child {mode}: {}", text.trim());
    if f[2] >= 1_000_000.0 || f[2] > f[0] / 100.0 {
        bail!(
            "connect child ({mode}): {} unexpected results of {}",
            f[2],
            f[0]
        );
    }
    Ok((f[0] - f[2]) / f[1])
}

pub(crate) fn prog_stats(dp: &mut Datapath, name: &str) -> Option<(u64, u64)> {
    let info = dp.ebpf_mut().program(name)?.info().ok()?;
    Some((info.run_time().as_nanos() as u64, info.run_count()))
}

pub fn connect_path(r: &mut Report) -> Result<()> {
    r.line(format!(
        "A child process moved into a cgroup made for the run (then `ip netns exec` into a fresh \
         namespace per case) connects over TCP to a listener of its own on 127.0.0.1 (an allowed \
         destination), up to {CONNECTS} connections or {CONNECT_SECS} s, each closed with RST. \
         Enforcer: all cgroup hooks attached to that cgroup, 100k exact v4 bans + {BANNED_DST}. \
         nft: `table inet` output chain, `ip daddr @ban reject` with the same 100k + {BANNED_DST} in a hash set. \
         In-place cost per program run comes from kernel.bpf_stats_enabled."
    ));
    r.line("");
    let cg = CgroupGuard::new("bc");
    let (desired, v4) = desired_for(100_000, 0, false);
    let mut desired = desired;
    desired.deny_v4.insert(v4_key(BANNED_DST.octets()), 999_999);
    let phase = |mode: &str| -> Result<f64> {
        let ns = NetnsGuard::new("bc");
        run_connect_child(cg.path(), mode, &ns)
    };
    let none1 = phase("allowed")?;
    let none2 = phase("allowed")?;
    let base = (none1 + none2) / 2.0;
    let noise = 100.0 * (none1 - none2).abs() / base;
    r.line(format!("- no enforcement, run 1: {none1:.0} connects/s"));
    r.line(format!(
        "- no enforcement, run 2 (A/A): {none2:.0} connects/s; A/A noise {noise:.1} %"
    ));
    let (enf, refused, per_prog) = {
        let mut l = Loaded::new("bc", &[])?;
        MapWriter::open(&l.pins)?.apply(&desired)?;
        l.dp().attach_cgroup(cg.path(), &CgroupHook::ALL)?;
        let before: Vec<_> = [
            programs::CONNECT4,
            programs::SKB_EGRESS,
            programs::SOCK_CREATE,
        ]
        .iter()
        .map(|p| prog_stats(l.dp(), p))
        .collect();
        let enf = phase("allowed")?;
        let after: Vec<_> = [
            programs::CONNECT4,
            programs::SKB_EGRESS,
            programs::SOCK_CREATE,
        ]
        .iter()
        .map(|p| prog_stats(l.dp(), p))
        .collect();
        let refused = phase("refused")?;
        let mut per = Vec::new();
        for (i, name) in [
            programs::CONNECT4,
            programs::SKB_EGRESS,
            programs::SOCK_CREATE,
        ]
        .iter()
        .enumerate()
        {
            if let (Some(b), Some(a)) = (before[i], after[i]) {
                let runs = a.1 - b.1;
                if runs > 0 {
                    per.push(format!(
                        "`{name}` {:.0} ns/run ({runs} runs)",
                        (a.0 - b.0) as f64 / runs as f64
                    ));
                }
            }
        }
        (enf, refused, per)
    };
    r.line(format!(
        "- enforcer (100k entries): {enf:.0} connects/s, overhead {:+.1} %",
        100.0 * (base - enf) / enf.max(1.0)
    ));
    r.line(format!("- enforcer in place: {}", per_prog.join(", ")));
    r.line(format!(
        "- refused connects to a banned destination (EPERM): {refused:.0} /s"
    ));
    let tmp = TempDir::new("bc");
    let ns = NetnsGuard::new("bc");
    let mut all = v4;
    all.push(BANNED_DST);
    let file = nft_ban_file(&tmp, &all);
    nft_file(&ns, &file)?;
    let nft = run_connect_child(cg.path(), "allowed", &ns)?;
    r.line(format!(
        "- nftables (100k hash set, output hook): {nft:.0} connects/s, overhead {:+.1} %",
        100.0 * (base - nft) / nft.max(1.0)
    ));
    r.line("");
    r.line(
        "Overhead = (no-enforcement rate − rate) / rate: the extra time per connect, in percent.",
    );
    Ok(())
}

/// The `memlock` line of a pinned map's fdinfo (bytes the kernel charges).
fn map_memlock(pins: &Pins, name: &str) -> Option<u64> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let m = aya::maps::MapData::from_pin(pins.map(name)).ok()?;
    let fd = m.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

fn slab_kib() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn policy_load(r: &mut Report) -> Result<()> {
    r.line(
        "Enforcer: `MapWriter::apply` (the daemon's map writer) into empty maps of a freshly loaded \
         object; kernel memory is the map's `memlock` from fdinfo. nft: `nft -f` of a `table netdev` \
         with one hash set of the same addresses, in a fresh namespace; memory is the growth of \
         Slab in /proc/meminfo (approximate). Reload: 1 % of the entries replaced by others. Single change: \
         one entry added to the loaded set; through `apply` it includes diffing the whole desired state, the last column is one `bpf_map_update_elem` alone.",
    );
    r.line("");
    r.line("| entries | enforcer load s | enforcer memory MiB | nft -f s | nft memory MiB (Slab growth) | enforcer 1 % reload ms | nft 1 % reload ms | enforcer single change via apply µs | one map update syscall µs |");
    r.line("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let tmp = TempDir::new("bp");
    for n in [100_000usize, 1_000_000] {
        let (desired, v4) = desired_for(n, 0, false);
        let (load, mem, reload, single) = {
            let l = Loaded::new("bp", &[])?;
            let mut w = MapWriter::open(&l.pins)?;
            let t = Instant::now();
            w.apply(&desired)?;
            let load = secs(t.elapsed());
            let mem = map_memlock(&l.pins, names::DENY_V4).unwrap_or(0) as f64 / 1048576.0;
            let mut changed = desired.clone();
            let fresh = exact_v4(n / 100, 0x77);
            for (i, a) in v4.iter().take(n / 100).enumerate() {
                changed.deny_v4.remove(&v4_key(a.octets()));
                changed
                    .deny_v4
                    .insert(v4_key(fresh[i].octets()) ^ 0x0000_0080, 5);
            }
            let t = Instant::now();
            w.apply(&changed)?;
            let reload = secs(t.elapsed()) * 1e3;
            changed.deny_v4.insert(v4_key([203, 0, 113, 7]), 6);
            let t = Instant::now();
            w.apply(&changed)?;
            let single = secs(t.elapsed()) * 1e6;
            let mut map: aya::maps::HashMap<_, u32, u32> = aya::maps::HashMap::try_from(
                aya::maps::Map::HashMap(aya::maps::MapData::from_pin(l.pins.map(names::DENY_V4))?),
            )?;
            let t = Instant::now();
            for i in 0..1000u32 {
                map.insert(v4_key([203, 0, 114, (i % 250) as u8]) ^ (i << 24), 8, 0)?;
            }
            let raw_update = secs(t.elapsed()) * 1e6 / 1000.0;
            (load, mem, reload, (single, raw_update))
        };
        let ns = NetnsGuard::new("bp");
        let file = tmp.write(
            "load.nft",
            &format!(
                "table netdev bench {{\n set ban {{ type ipv4_addr; elements = {{ {} }} }}\n}}\n",
                elements_v4(&v4)
            ),
        );
        // Let the maps freed above go (RCU) before the baseline.
        std::thread::sleep(Duration::from_secs(2));
        let slab = slab_kib();
        let nft_load = secs(nft_file(&ns, &file)?);
        std::thread::sleep(Duration::from_millis(500));
        let nft_mem = (slab_kib() - slab) as f64 / 1024.0;
        let fresh = exact_v4(n / 100, 0x77);
        let file = tmp.write(
            "reload.nft",
            &format!(
                "delete element netdev bench ban {{ {} }}\nadd element netdev bench ban {{ {} }}\n",
                elements_v4(&v4[..n / 100]),
                elements_v4(
                    &fresh
                        .iter()
                        .map(|a| Ipv4Addr::from(u32::from_be_bytes(a.octets()) ^ 0x8000_0000))
                        .collect::<Vec<_>>()
                )
            ),
        );
        let nft_reload = secs(nft_file(&ns, &file)?) * 1e3;
        r.line(format!(
            "| {n} | {load:.3} | {mem:.1} | {nft_load:.3} | {nft_mem:.1} | {reload:.1} | {nft_reload:.1} | {:.0} | {:.2} |",
            single.0, single.1
        ));
        let _ = std::io::stderr().flush();
    }
    Ok(())
}

const IDLE_SECS: u64 = 60;

/// (RSS KiB, CPU ticks utime+stime) of `pid`.
fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3 (index 0 here); utime 14, stime 15.
    let cpu = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((rss, cpu))
}

/// The daemon, killed (by its pid) and reaped on drop.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn daemon_footprint(r: &mut Report) -> Result<()> {
    let bin = std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .join("enforcer");
    r.line(format!(
        "`enforcer daemon` (release build) scoped to a cgroup made for the run, private bpffs, \
         state and socket in a temporary directory; policy: 100k denied /32 + {BANNED_DST}. \
         Idle: {IDLE_SECS} s after start-up. Flood: the refused-connect loop of section 3 \
         (up to {CONNECTS} connects or {CONNECT_SECS} s) in that cgroup; events lost = ring buffer \
         full counter."
    ));
    r.line("");
    let cg = CgroupGuard::new("bd");
    let bpffs = BpffsGuard::new("bd");
    let pins = Pins::new(bpffs.pins_dir());
    let tmp = TempDir::new("bd");
    let v4 = exact_v4(100_000, 0xd00d);
    let mut cidrs: Vec<String> = v4.iter().map(|a| format!("\"{a}\"")).collect();
    cidrs.push(format!("\"{BANNED_DST}\""));
    let policy = tmp.write(
        "policy.json",
        &format!(
            "{{\"version\":1,\"deny\":{{\"cidrs\":[{}]}}}}",
            cidrs.join(",")
        ),
    );
    let args = DaemonArgs::scoped(policy, cg.path(), pins.root(), tmp.path().join("state"));
    let log = std::fs::File::create(tmp.path().join("daemon.log"))?;
    let t = Instant::now();
    let child = args
        .command_of(&bin, &[])
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let d = Daemon(child);
    let pid = d.0.id();
    let ready = pins.cgroup_link(programs::CONNECT4);
    while !ready.exists() {
        if t.elapsed() > Duration::from_secs(60) {
            bail!("the daemon did not attach within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let it finish applying the policy.
    std::thread::sleep(Duration::from_secs(3));
    r.line(format!(
        "- start-up to programs attached: {:.2} s",
        secs(t.elapsed()) - 3.0
    ));
    let (_, cpu0) = proc_usage(pid).context("daemon exited")?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(IDLE_SECS));
    let (rss, cpu1) = proc_usage(pid).context("daemon exited")?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let idle_cpu = 100.0 * (cpu1 - cpu0) as f64 / hz / secs(t0.elapsed());
    r.line(format!(
        "- idle {IDLE_SECS} s: RSS {:.1} MiB, CPU {idle_cpu:.2} % ({} ticks)",
        rss as f64 / 1024.0,
        cpu1 - cpu0
    ));
    let lost0 = Stats::read(&pins)?.ringbuf_full();
    let denied0 = Stats::read(&pins)?.get(enforcer_common::HOOK_CONNECT4, VERDICT_DENIED);
    let ns = NetnsGuard::new("bd");
    let t1 = Instant::now();
    let rate = run_connect_child(cg.path(), "refused", &ns)?;
    let flood_secs = secs(t1.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    let (rss2, cpu2) = proc_usage(pid).context("daemon exited")?;
    let lost = Stats::read(&pins)?.ringbuf_full() - lost0;
    let denied = Stats::read(&pins)?.get(enforcer_common::HOOK_CONNECT4, VERDICT_DENIED) - denied0;
    let flood_cpu = 100.0 * (cpu2 - cpu1) as f64 / hz / (flood_secs + 0.5);
    r.line(format!(
        "- flood: {rate:.0} refused connects/s, {denied} denials → {:.0} events/s offered over {flood_secs:.1} s, \
         {lost} events lost (ring buffer full); daemon CPU {flood_cpu:.1} %, RSS {:.1} MiB after",
        (denied - lost) as f64 / flood_secs,
        rss2 as f64 / 1024.0
    ));
    drop(d);
    Ok(())
}

/// An nftables ruleset rejecting output to `addrs` (a hash set in a
/// `table inet` output chain), written into `tmp`.
pub(crate) fn nft_ban_file(tmp: &TempDir, addrs: &[Ipv4Addr]) -> std::path::PathBuf {
    tmp.write(
        "ban.nft",
        &format!(
            "table inet bench {{\n set ban {{ type ipv4_addr; elements = {{ {} }} }}\n \
             chain out {{ type filter hook output priority 0; ip daddr @ban reject; }}\n}}\n",
            elements_v4(addrs)
        ),
    )
}

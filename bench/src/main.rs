//! The benchmark suite (`cargo xtask bench`): runs every benchmark in one
//! process run and writes docs/BENCHMARKS.md.
//!
//! Everything runs in cgroups, network namespaces, veths and a private
//! bpffs this program creates and removes (guards from enforcer-tests);
//! every loop is bounded in count and time. Needs root.

mod agents;
mod connect_ab;
mod dns;
mod ports;
mod product;
mod raw;
mod sections;
mod sni;

use std::{
    fmt::Write as _,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

pub struct Report {
    pub md: String,
}

impl Report {
    pub fn line(&mut self, s: impl AsRef<str>) {
        self.md.push_str(s.as_ref());
        self.md.push('\n');
        eprintln!("{}", s.as_ref());
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap_or(0);
    format!("{model}, {cpus} CPUs, {} MiB RAM", mem / 1024)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__connect") {
        return sections::connect_child(&args[2..]);
    }
    enforcer_tests::require_root();
    let (out, only) = parse_args(&args[1..])?;
    let started = Instant::now();
    let mut r = Report { md: String::new() };
    r.line("# Benchmarks");
    r.line("");
    r.line("Written by `cargo xtask bench` (the `enforcer-bench` binary, release build); do not edit by hand.");
    r.line("");
    r.line(format!("- Machine: {}", machine()));
    r.line(format!("- Kernel: {}", sh("uname", &["-srvm"])));
    r.line(format!(
        "- Date: {}",
        sh("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])
    ));
    r.line("- Command: `cargo xtask bench`");
    r.line(format!("- nft: {}", sh("nft", &["--version"])));
    r.line("");

    let stats_before = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .unwrap_or_else(|_| "0".into());
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");

    type Section = fn(&mut Report) -> Result<()>;
    let all: [(&str, Section); 11] = [
        (
            "1. Per-packet cost (BPF_PROG_TEST_RUN)",
            sections::per_packet,
        ),
        ("2. Live drop rate on a veth pair", sections::live_drop),
        ("3. connect() path", sections::connect_path),
        ("4. Policy load", sections::policy_load),
        ("5. Daemon footprint", sections::daemon_footprint),
        ("6. DNS answers in the kernel", dns::dns_answers),
        ("7. Port rules and the address-only path", ports::port_rules),
        (
            "8. Product path at 100k and 1M entries",
            product::product_path,
        ),
        ("9. Shared names: name inspection", sni::name_inspection),
        (
            "10. connect() of traffic never inspected, next to nftables",
            connect_ab::connect_ab,
        ),
        ("11. Agent containment", agents::containment),
    ];
    let mut sections = Vec::new();
    for (i, (title, f)) in all.into_iter().enumerate() {
        if !only.is_empty() && !only.contains(&(i + 1)) {
            continue;
        }
        let from = r.md.len();
        r.line(format!("## {title}"));
        r.line("");
        let t = Instant::now();
        // Guards panic on failure; a failed section is reported, not fatal.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut r)));
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => r.line(format!("\n**Section failed:** {e:#}")),
            Err(_) => r.line("\n**Section failed:** panicked (see stderr)"),
        }
        r.line("");
        r.line(format!(
            "_Section time: {:.1} s_",
            t.elapsed().as_secs_f64()
        ));
        if !only.is_empty() {
            r.line(format!(
                "_Run alone (`cargo xtask bench --section {}`) on {}._",
                i + 1,
                sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
            ));
        }
        r.line("");
        sections.push(r.md[from..].to_owned());
    }
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", stats_before.trim());
    let mut total = String::new();
    let _ = write!(
        total,
        "_Total bench run: {:.1} s._",
        started.elapsed().as_secs_f64()
    );
    r.line(total);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let text = if only.is_empty() {
        r.md
    } else {
        // A partial run replaces its sections in the document of the last
        // full run and keeps the others (with that run's header).
        let old = std::fs::read_to_string(&out).unwrap_or_default();
        merge_sections(&old, &sections)
    };
    std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// `[OUT] [--section N]...`: where to write, and which sections to run
/// (none: all).
fn parse_args(args: &[String]) -> Result<(PathBuf, Vec<usize>)> {
    let mut out = PathBuf::from("docs/BENCHMARKS.md");
    let mut only = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--section" {
            let n = it.next().context("--section needs a number (1-11)")?;
            only.push(
                n.parse()
                    .with_context(|| format!("--section {n}: not a section number"))?,
            );
        } else {
            out = PathBuf::from(a);
        }
    }
    // ENFORCER_BENCH_ONLY=7 (or 3,7) selects sections too.
    if only.is_empty()
        && let Ok(v) = std::env::var("ENFORCER_BENCH_ONLY")
    {
        only = v.split(',').filter_map(|n| n.trim().parse().ok()).collect();
    }
    Ok((out, only))
}

/// `old` with each of `sections` (each starting `## N. title`) in place of
/// the section of the same number, or appended before the closing total.
fn merge_sections(old: &str, sections: &[String]) -> String {
    let number = |s: &str| -> Option<String> {
        let rest = s.strip_prefix("## ")?;
        Some(rest.split_once('.')?.0.to_owned())
    };
    // Split the document into a head, sections and the tail (the total).
    let mut head = String::new();
    let mut parts: Vec<String> = Vec::new();
    let mut tail = String::new();
    for line in old.split_inclusive('\n') {
        if line.starts_with("## ") {
            parts.push(String::new());
        } else if line.starts_with("_Total bench run") {
            tail.push_str(line);
            continue;
        }
        match parts.last_mut() {
            Some(p) => p.push_str(line),
            None => head.push_str(line),
        }
    }
    for s in sections {
        match parts.iter_mut().find(|p| number(p) == number(s)) {
            Some(p) => *p = s.clone(),
            None => parts.push(s.clone()),
        }
    }
    head + &parts.concat() + &tail
}

/// Median of `n` measurements.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

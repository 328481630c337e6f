//! Project tasks: `cargo xtask setup | run | test | bench`.
//!
//! # Layout
//! - `setup`: installs what building and testing need, idempotently;
//!   `tools`: the test tools unpacked from Debian packages (not installed).
//! - `main` (here): the commands, built on `setup` and cargo.

mod setup;
mod tools;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain pieces, bpf-linker and Debian packages the build and tests need.
    Setup,
    /// Set up, build release, and run the daemon in the foreground
    /// (arguments after `--` go to `enforcer daemon`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then fmt check, clippy, unit tests and the privileged integration tests.
    Test,
    /// Set up, build release, run the benchmark suite and write docs/BENCHMARKS.md.
    Bench {
        /// Run only this section (1-8; repeatable) and replace it in
        /// docs/BENCHMARKS.md, keeping the others.
        #[arg(long)]
        section: Vec<usize>,
    },
    /// Generate the man pages and shell completions into docs/.
    Docs,
    /// Set up, then build the Debian package (release) with cargo-deb;
    /// prints its path (target/debian/enforcer_*.deb).
    Deb,
}

fn main() -> ExitCode {
    match Cli::parse().command.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Task {
    fn execute(self) -> Result<()> {
        let root = workspace_root();
        match self {
            Task::Setup => setup::run(),
            Task::Run { args } => {
                setup::run()?;
                cargo(&root, &["build", "--release", "--package", "enforcer"], &[])?;
                let bin = target_dir(&root).join("release/enforcer");
                step(&format!("{} daemon {}", bin.display(), args.join(" ")));
                let status = Command::new(&bin)
                    .arg("daemon")
                    .args(&args)
                    .status()
                    .with_context(|| format!("running {}", bin.display()))?;
                if !status.success() {
                    bail!("the daemon exited with {status}");
                }
                Ok(())
            }
            Task::Test => test(&root),
            Task::Deb => {
                setup::run()?;
                let deb = deb(&root)?;
                println!("{}", deb.display());
                Ok(())
            }
            Task::Bench { section } => bench(&root, &section),
            Task::Docs => {
                cargo(&root, &["build", "--package", "enforcer"], &[])?;
                let bin = target_dir(&root).join("debug/enforcer");
                step("enforcer generate-docs docs/");
                let status = Command::new(&bin)
                    .args(["generate-docs"])
                    .arg(root.join("docs"))
                    .status()
                    .with_context(|| format!("running {}", bin.display()))?;
                if !status.success() {
                    bail!("generating the docs failed ({status})");
                }
                Ok(())
            }
        }
    }
}

/// Builds release (the daemon and the bench binary) and runs every
/// benchmark in one process run; the binary writes docs/BENCHMARKS.md.
fn bench(root: &Path, sections: &[usize]) -> Result<()> {
    setup::run()?;
    cargo(
        root,
        &[
            "build",
            "--release",
            "--package",
            "enforcer",
            "--package",
            "enforcer-bench",
        ],
        &[],
    )?;
    let bin = target_dir(root).join("release/enforcer-bench");
    let out = root.join("docs/BENCHMARKS.md");
    step(&format!("{} {}", bin.display(), out.display()));
    let status = Command::new(&bin)
        .arg(&out)
        .args(
            sections
                .iter()
                .flat_map(|n| ["--section".to_owned(), n.to_string()]),
        )
        .current_dir(root)
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("the benchmark suite failed ({status})");
    }
    Ok(())
}

/// The .deb of the current tree (cargo-deb builds release incrementally).
fn deb(root: &Path) -> Result<PathBuf> {
    let out = target_dir(root).join("debian");
    let out = out.to_str().context("non-UTF-8 target path")?;
    cargo(
        root,
        &["deb", "--package", "enforcer", "--output", out],
        &[],
    )?;
    let version = env!("CARGO_PKG_VERSION");
    let deb = Path::new(out).join(format!("enforcer_{version}-1_amd64.deb"));
    if !deb.exists() {
        bail!("cargo deb finished but {} is missing", deb.display());
    }
    Ok(deb)
}

fn test(root: &Path) -> Result<()> {
    setup::run()?;
    cargo(root, &["fmt", "--all", "--", "--check"], &[])?;
    // As aya-template does: the eBPF crate is linted apart, with the
    // nightly and panic=abort, since feature unification would mix it with
    // the userspace crates otherwise.
    cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--exclude",
            "enforcer-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(
        root,
        &[
            "+nightly",
            "clippy",
            "--package",
            "enforcer-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
            "-C",
            "panic=abort",
            "-Zpanic_abort_tests",
        ],
        &[],
    )?;
    let mut tally = Tally::default();
    // Unit tests: the default members (no root needed).
    cargo_test(root, &["test"], &[], &mut tally)?;
    // The integration tests start the real binary.
    cargo(root, &["build", "--package", "enforcer"], &[])?;
    let bin = target_dir(root).join("debug/enforcer");
    let bin = bin.to_str().context("non-UTF-8 target path")?;
    // tests/tests/package.rs installs and purges the package itself.
    let deb = deb(root)?;
    let deb = deb.to_str().context("non-UTF-8 target path")?;
    // One at a time: the tests move processes between cgroups and attach
    // programs; parallel runs would see each other's state.
    let result = cargo_test(
        root,
        &[
            "test",
            "--package",
            "enforcer-tests",
            "--",
            "--test-threads=1",
        ],
        &[("ENFORCER_BIN", bin), ("ENFORCER_DEB", deb)],
        &mut tally,
    );
    // One closing line for the whole suite, whatever cargo printed last.
    println!(
        "summary: {} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.ignored
    );
    result
}

/// Test counts summed over every `test result:` line cargo prints.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Tally {
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// `cargo test ...`, its output passed through and tallied.
fn cargo_test(root: &Path, args: &[&str], env: &[(&str, &str)], tally: &mut Tally) -> Result<()> {
    use std::io::{BufRead as _, BufReader};
    step(&format!("cargo {}", args.join(" ")));
    let program = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut child = Command::new(program)
        .args(args)
        .current_dir(root)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        tally.add(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Cargo's target directory: CARGO_TARGET_DIR if set, else `target`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

pub fn step(what: &str) {
    eprintln!("==> {what}");
}

fn cargo(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    step(&format!("cargo {}", args.join(" ")));
    // A toolchain override (`+nightly`) only works through rustup's proxy.
    let program = if args.first().is_some_and(|a| a.starts_with('+')) {
        "cargo".to_owned()
    } else {
        std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
    };
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

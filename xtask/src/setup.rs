//! Everything the build and the tests need that cargo does not fetch.
//! Idempotent: each step checks first and says what it did or found.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::step;

/// The eBPF toolchain aya-build uses (`Toolchain::default()`).
const NIGHTLY: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages the tests use: (command or file that proves it, package).
const DEBIAN: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("lintian", "lintian"),
    ("systemd-analyze", "systemd"),
    ("setpriv", "util-linux"),
    // The TLS server and client of the name inspection tests (tests/tests/sni.rs).
    ("openssl", "openssl"),
    ("/usr/lib/python3.11/ensurepip/__init__.py", "python3-venv"),
    (
        "/usr/lib/python3/dist-packages/apt/__init__.py",
        "python3-apt",
    ),
];
/// The venv the Ansible role's test uses (tests/tests/package.rs).
const ANSIBLE_VENV: &str = "/opt/enforcer-ci/venv";
/// From PyPI: ansible-core 2.17 runs on Debian 12's Python 3.11.
const ANSIBLE: &[&str] = &["ansible-core==2.17.*", "ansible-lint==24.*"];
/// `cargo xtask deb`; 3.8.0 builds with Rust 1.85 and later.
const CARGO_DEB_VERSION: &str = "3.8.0";

pub fn run() -> Result<()> {
    step("setup");
    rust_components()?;
    bpf_linker()?;
    cargo_deb()?;
    debian_packages()?;
    ansible()?;
    crate::tools::promtool()?;
    crate::tools::rsyslog()?;
    bpffs()?;
    group()?;
    eprintln!("    setup complete");
    Ok(())
}

pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    eprintln!("    running {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn rust_components() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to build the eBPF programs")?;
    if !toolchains.lines().any(|l| l.starts_with(NIGHTLY)) {
        bail!(
            "no `{NIGHTLY}` toolchain: the eBPF crate needs it (-Z build-std). \
             Install it with `rustup toolchain install {NIGHTLY} --component rust-src`"
        );
    }
    for (toolchain, component) in [
        (NIGHTLY, "rust-src"),
        (NIGHTLY, "clippy"),
        ("stable", "clippy"),
        ("stable", "rustfmt"),
    ] {
        let installed = output(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            toolchain,
        ]))?;
        if installed.lines().any(|l| l.starts_with(component)) {
            eprintln!("    {component} ({toolchain}): present");
        } else {
            run_cmd(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                toolchain,
            ]))?;
        }
    }
    Ok(())
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out = output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "--print", "sysroot"]))?;
    Ok(PathBuf::from(out.trim()))
}

/// The libLLVM shared object of the nightly toolchain.
fn nightly_libllvm(sysroot: &Path) -> Result<PathBuf> {
    let lib = sysroot.join("lib");
    let mut found = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        })
        .collect::<Vec<_>>();
    found.sort();
    found.pop().with_context(|| {
        format!(
            "no libLLVM.so.*-rust-* in {}: the nightly toolchain is incomplete",
            lib.display()
        )
    })
}

fn cargo_bin(name: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin").join(name)
}

/// bpf-linker must exist, be the pinned version, and load the nightly's own
/// libLLVM (no system LLVM of that version exists here). Otherwise it is
/// rebuilt against that libLLVM.
fn bpf_linker() -> Result<()> {
    let sysroot = nightly_sysroot()?;
    let libllvm = nightly_libllvm(&sysroot)?;
    let bin = cargo_bin("bpf-linker");
    match linker_state(&bin, &libllvm) {
        Ok(()) => {
            eprintln!(
                "    bpf-linker {BPF_LINKER_VERSION}: present, linked to {}",
                libllvm.display()
            );
            return Ok(());
        }
        Err(why) => eprintln!("    bpf-linker needs (re)building: {why}"),
    }
    let llvm_major = libllvm
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libLLVM.so."))
        .and_then(|n| n.split('.').next())
        .context("cannot read the LLVM major version from the libLLVM name")?
        .to_owned();
    let link_dir = std::env::temp_dir().join(format!("enforcer-bpf-linker-llvm{llvm_major}"));
    std::fs::create_dir_all(&link_dir)?;
    let link = link_dir.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("linking {}", link.display()))?;
    run_cmd(
        Command::new("cargo")
            .args([
                &format!("+{NIGHTLY}"),
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--force",
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm_major}"),
            ])
            .env("LLVM_PREFIX", &sysroot)
            .env("RUSTFLAGS", format!("-L native={}", link_dir.display())),
    )?;
    linker_state(&bin, &libllvm).map_err(|why| anyhow::anyhow!("bpf-linker still unusable: {why}"))
}

fn linker_state(bin: &Path, libllvm: &Path) -> std::result::Result<(), String> {
    if !bin.exists() {
        return Err(format!("{} does not exist", bin.display()));
    }
    let version = output(Command::new(bin).arg("--version")).map_err(|e| e.to_string())?;
    if !version.contains(BPF_LINKER_VERSION) {
        return Err(format!(
            "it is {}, not {BPF_LINKER_VERSION}",
            version.trim()
        ));
    }
    let ldd = output(Command::new("ldd").arg(bin)).map_err(|e| e.to_string())?;
    let llvm_line = ldd
        .lines()
        .find(|l| l.contains("libLLVM"))
        .ok_or("it does not link a shared libLLVM")?;
    if !llvm_line.contains(&libllvm.display().to_string()) {
        return Err(format!(
            "it links {}, not {}",
            llvm_line.trim(),
            libllvm.display()
        ));
    }
    Ok(())
}

fn cargo_deb() -> Result<()> {
    let bin = cargo_bin("cargo-deb");
    let version = output(Command::new(&bin).arg("--version")).unwrap_or_default();
    if version.contains(CARGO_DEB_VERSION) {
        eprintln!("    cargo-deb {CARGO_DEB_VERSION}: present");
        return Ok(());
    }
    run_cmd(Command::new("cargo").args([
        "install",
        &format!("cargo-deb@{CARGO_DEB_VERSION}"),
        "--locked",
        "--force",
    ]))
}

/// ansible-playbook and ansible-lint in a venv of the system Python (which
/// has python3-apt for the role's apt tasks); fast when present.
fn ansible() -> Result<()> {
    let venv = Path::new(ANSIBLE_VENV);
    let present = ["ansible-playbook", "ansible-lint"]
        .iter()
        .all(|t| venv.join("bin").join(t).exists());
    if present {
        eprintln!("    ansible, ansible-lint: present in {ANSIBLE_VENV}");
        return Ok(());
    }
    run_cmd(Command::new("/usr/bin/python3").args(["-m", "venv", ANSIBLE_VENV]))?;
    run_cmd(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet"])
            .args(ANSIBLE),
    )
}

pub fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|u| u.trim() == "0")
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN
        .iter()
        .filter(|(cmd, _)| {
            // A path proves a package that brings no command (a module).
            if cmd.starts_with('/') {
                return !Path::new(cmd).exists();
            }
            !Command::new("sh")
                .args(["-c", &format!("command -v {cmd} >/dev/null")])
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        eprintln!("    Debian packages: present");
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {missing:?}; install them as root (apt-get install {})",
            missing.join(" ")
        );
    }
    run_cmd(Command::new("apt-get").arg("update").arg("-q"))?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The daemon mounts bpffs itself when it must; the tests expect it there.
fn bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts.lines().any(|l| {
        l.split_whitespace().nth(1) == Some("/sys/fs/bpf")
            && l.split_whitespace().nth(2) == Some("bpf")
    }) {
        eprintln!("    bpffs: mounted at /sys/fs/bpf");
        return Ok(());
    }
    if !is_root() {
        eprintln!(
            "    bpffs: not mounted at /sys/fs/bpf (needs root; the daemon mounts it when it starts)"
        );
        return Ok(());
    }
    run_cmd(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
}

/// The `enforcer` group may read the control socket (status, flows,
/// check); the tests check that a member can read and cannot change.
fn group() -> Result<()> {
    let known = Command::new("getent")
        .args(["group", "enforcer"])
        .output()
        .is_ok_and(|o| o.status.success());
    if known {
        eprintln!("    group enforcer: present");
        return Ok(());
    }
    if !is_root() {
        eprintln!("    group enforcer: missing (needs root: groupadd --system enforcer)");
        return Ok(());
    }
    run_cmd(Command::new("groupadd").args(["--system", "enforcer"]))
}

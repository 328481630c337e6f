//! Tools the tests run that come in Debian packages which would, installed,
//! also enable and start a service on a developer's machine (a Prometheus
//! server, a second syslog daemon). Only their programs are needed, so the
//! packages are downloaded with apt and unpacked under /opt/enforcer-ci,
//! never installed. Fast when present.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::setup::{is_root, output, run_cmd};

/// From `prometheus`: `promtool check metrics` and `check rules`.
pub const PROMTOOL: &str = "/opt/enforcer-ci/bin/promtool";
/// `rsyslog` and the libraries it needs beyond a base Debian system;
/// `rsyslogd -N1` validates deploy/rsyslog (tests/tests/fleet.rs).
pub const RSYSLOG_ROOT: &str = "/opt/enforcer-ci/rsyslog";
const RSYSLOG_PACKAGES: &[&str] = &["rsyslog", "libestr0", "libfastjson4", "liblognorm5"];

pub fn promtool() -> Result<()> {
    let bin = Path::new(PROMTOOL);
    if let Ok(version) = output(Command::new(bin).arg("--version")) {
        eprintln!(
            "    promtool: present ({})",
            version.lines().next().unwrap_or("?").trim()
        );
        return Ok(());
    }
    let tree = unpack("promtool", &["prometheus"])?;
    let result = (|| {
        std::fs::create_dir_all(bin.parent().expect("an absolute path"))?;
        std::fs::copy(tree.join("usr/bin/promtool"), bin)
            .with_context(|| format!("installing {PROMTOOL}"))?;
        output(Command::new(bin).arg("--version")).map(|_| ())
    })();
    let _ = std::fs::remove_dir_all(tree.parent().expect("inside the work dir"));
    result
}

pub fn rsyslog() -> Result<()> {
    let root = Path::new(RSYSLOG_ROOT);
    let version = || {
        output(
            Command::new(root.join("usr/sbin/rsyslogd"))
                .arg("-v")
                .env("LD_LIBRARY_PATH", root.join("usr/lib/x86_64-linux-gnu")),
        )
    };
    if let Ok(v) = version() {
        eprintln!(
            "    rsyslogd: present in {RSYSLOG_ROOT} ({})",
            v.lines().next().unwrap_or("?").trim()
        );
        return Ok(());
    }
    let tree = unpack("rsyslog", RSYSLOG_PACKAGES)?;
    let result = (|| {
        let _ = std::fs::remove_dir_all(root);
        std::fs::create_dir_all(root.parent().expect("an absolute path"))?;
        // Same file system (/opt vs /tmp may differ): copy, not rename.
        run_cmd(Command::new("cp").arg("-a").arg(&tree).arg(root))?;
        version().map(|_| ())
    })();
    let _ = std::fs::remove_dir_all(tree.parent().expect("inside the work dir"));
    result
}

/// Downloads `packages` (apt-get download: no dependencies, no scripts)
/// and unpacks them into one tree; returns the tree (inside a work
/// directory the caller removes).
fn unpack(what: &str, packages: &[&str]) -> Result<PathBuf> {
    if !is_root() {
        bail!("{what} is missing: run `cargo xtask setup` as root to unpack it");
    }
    let work = std::env::temp_dir().join(format!("enforcer-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = (|| {
        let download = || {
            run_cmd(
                Command::new("apt-get")
                    .args(["download", "-q"])
                    .args(packages)
                    .current_dir(&work),
            )
        };
        // A fresh machine may not have the package lists yet.
        if download().is_err() {
            run_cmd(Command::new("apt-get").arg("update").arg("-q"))?;
            download()?;
        }
        let tree = work.join("tree");
        let mut debs = 0;
        for deb in std::fs::read_dir(&work)?.flatten().map(|e| e.path()) {
            if deb.extension().is_some_and(|e| e == "deb") {
                run_cmd(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
                debs += 1;
            }
        }
        if debs != packages.len() {
            bail!("apt-get download left {debs} packages of {packages:?}");
        }
        Ok(tree)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

//! Other users: the tests' processes run with the credentials a test
//! gives them (any uid, primary group and supplementary groups; the uid
//! need not exist), set in the child before exec.

use std::{
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Command, Output},
};

/// The gid of `group`, which `cargo xtask setup` creates.
pub fn gid_of(group: &str) -> u32 {
    enforcer::control::auth::group_gid(group)
        .unwrap_or_else(|| panic!("group {group} missing: cargo xtask setup creates it"))
}

pub const NOBODY: u32 = 65534;

/// Makes `cmd` run as `uid` with primary group `gid` and exactly the
/// supplementary `groups`.
pub fn as_user<'a>(cmd: &'a mut Command, uid: u32, gid: u32, groups: &[u32]) -> &'a mut Command {
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: setgroups, setgid and setuid are async-signal-safe; `groups`
    // was allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Runs `program args` as that user to completion: (exit code, stdout, stderr).
pub fn run_as(
    program: &str,
    args: &[&str],
    uid: u32,
    gid: u32,
    groups: &[u32],
) -> (i32, String, String) {
    let mut cmd = Command::new(program);
    cmd.args(args).env("NO_COLOR", "1");
    let out: Output = as_user(&mut cmd, uid, gid, groups)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `peer` binary (src/bin/peer.rs), beside the test executables.
pub fn peer_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target dir")
        .join("peer");
    assert!(
        bin.exists(),
        "{} missing: run the tests through cargo",
        bin.display()
    );
    bin
}

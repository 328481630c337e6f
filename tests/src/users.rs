//! Other users: the tests' processes run with the credentials a test
//! gives them (any uid, primary group and supplementary groups; the uid
//! need not exist), set in the child before exec.

use std::{
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::TempDir;

/// A program another user can run: a hard link (else a copy) of it in a
/// fresh 0755 directory under the temporary directory. The checkout may
/// sit in a private home (0700 or 0750, as on current Ubuntu and Fedora)
/// that other users cannot traverse, so its `target/` cannot be run from
/// there. Keep this until the child has been spawned (exec holds the file).
pub struct Traversable {
    _dir: TempDir,
    path: PathBuf,
}

impl Traversable {
    pub fn new(program: &Path) -> Traversable {
        let dir = TempDir::new("bin");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod 0755 the program's directory");
        let path = dir
            .path()
            .join(program.file_name().expect("a program file name"));
        if std::fs::hard_link(program, &path).is_err() {
            std::fs::copy(program, &path)
                .unwrap_or_else(|e| panic!("copy {}: {e}", program.display()));
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod 0755 the program");
        Traversable { _dir: dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

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

/// Runs `program args` as that user to completion: (exit code, stdout,
/// stderr). A program given by path runs from a [`Traversable`] copy.
pub fn run_as(
    program: &str,
    args: &[&str],
    uid: u32,
    gid: u32,
    groups: &[u32],
) -> (i32, String, String) {
    let copy = program
        .contains('/')
        .then(|| Traversable::new(Path::new(program)));
    let mut cmd = Command::new(copy.as_ref().map_or(Path::new(program), Traversable::path));
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

//! The command line as people and scripts use it: a closed pipe ends a
//! command quietly, and refusals for lack of rights exit with the
//! documented 4.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::ExitStatusExt as _,
    process::{Command, Stdio},
};

use enforcer_tests::{
    TempDir,
    daemon::enforcer_bin,
    users::{NOBODY, gid_of, run_as},
};

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly_not_with_a_panic() {
    let tmp = TempDir::new("pipe");
    // Far more output than a pipe buffers (64 KiB), so the writer meets
    // the closed pipe.
    let cidrs: Vec<String> = (0..20_000u32)
        .map(|i| format!("\"10.{}.{}.0/24\"", i / 256 % 256, i % 256))
        .collect();
    let policy = tmp.write(
        "policy.json",
        &format!(
            r#"{{"version":1,"deny":{{"cidrs":[{}]}}}}"#,
            cidrs.join(",")
        ),
    );
    let mut child = Command::new(enforcer_bin())
        .args(["policy", "show", "--json", "--policy"])
        .arg(&policy)
        .arg("--state-dir")
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -1`: one line, then the reader is gone.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(!line.is_empty());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "ended with {:?}: {stderr}",
        out.status
    );
}

#[test]
fn daemon_and_detach_as_another_user_exit_with_the_documented_4() {
    let tmp = TempDir::new("nonroot");
    let bin = enforcer_bin();
    let bpffs = tmp.path().join("pins");
    let nogroup = gid_of("nogroup");
    for args in [
        vec!["daemon", "--cgroup", "/nonexistent"],
        vec!["detach", "--bpffs", bpffs.to_str().unwrap()],
    ] {
        let (code, out, err) = run_as(bin.to_str().unwrap(), &args, NOBODY, nogroup, &[]);
        assert_eq!(code, 4, "{args:?}: {out}{err}");
        assert!(err.contains("needs root"), "{args:?}: {err}");
    }
}

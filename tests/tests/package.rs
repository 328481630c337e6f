//! Shipping: the systemd unit's capability set, and the Debian package
//! built by `cargo xtask deb` (lintian, install without systemd, every
//! file and permission, purge leaves nothing and ends the enforcement).
//!
//! The machine is shared: the package test refuses to run when an
//! `enforcer` package, /usr/bin/enforcer, /etc/enforcer or the default pin
//! directory already exist, and purges what it installed on every way out.

use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use enforcer_tests::{
    World,
    daemon::{Daemon, enforcer, exit_within},
    require_root,
};

const BAN_2: &str = r#"{"version":1,"deny":{"cidrs":["10.77.0.2"]}}"#;
const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/systemd/enforcer.service"
);
/// The capabilities without which the daemon cannot enforce at all.
const ESSENTIAL: &[&str] = &["bpf", "net_admin", "perfmon", "chown"];

fn sh(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `CapabilityBoundingSet=` of the shipped unit, as setpriv names them.
fn unit_caps() -> Vec<String> {
    let unit = std::fs::read_to_string(UNIT).expect("read the unit");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet=");
    line.split_whitespace()
        .map(|c| {
            c.strip_prefix("CAP_")
                .expect("CAP_ names")
                .to_ascii_lowercase()
        })
        .collect()
}

/// setpriv with only `caps` in the bounding set: what systemd's
/// CapabilityBoundingSet= does to a root service.
fn bounded(caps: &[String]) -> Vec<String> {
    let mut set = String::from("-all");
    for c in caps {
        set.push_str(",+");
        set.push_str(c);
    }
    vec![
        "setpriv".into(),
        format!("--bounding-set={set}"),
        "--inh-caps=-all".into(),
    ]
}

#[test]
fn the_units_capability_set_enforces_and_each_essential_capability_is_needed() {
    require_root();
    let caps = unit_caps();
    for c in ESSENTIAL {
        assert!(caps.iter().any(|x| x == c), "the unit lacks CAP_{c}");
    }
    assert!(
        !caps.iter().any(|c| c == "sys_admin"),
        "measured as not needed: keep CAP_SYS_ADMIN out of the unit"
    );
    let w = World::new("capu", &["10.77.0.1/32", "10.77.0.2/32"]);
    let policy = w.tmp.write("policy.json", BAN_2);
    let wrapper = bounded(&caps);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let daemon = Daemon::start_under(&wrapper, &w.args(&policy));
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM", "{}", daemon.log_text());
    assert_eq!(w.probe("10.77.0.1:0"), "ok");
    let socket = w.socket();
    let socket = socket.to_str().unwrap();
    let (code, _, err) = enforcer(&["status", "--socket", socket]);
    assert_eq!(code, 0, "status under the unit's capabilities: {err}");
    let (code, _, err) = enforcer(&["reload", "--socket", socket]);
    assert_eq!(code, 0, "reload under the unit's capabilities: {err}");
    daemon.stop();

    // Without any one of the essential capabilities the daemon refuses to
    // start (and says why) rather than run without enforcing.
    for missing in ESSENTIAL {
        let fewer: Vec<String> = caps.iter().filter(|c| c != missing).cloned().collect();
        let wrapper = bounded(&fewer);
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        let mut child = w
            .args(&policy)
            .command(&wrapper)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the daemon");
        let Some(status) = exit_within(&mut child, 20) else {
            panic!("the daemon ran without CAP_{missing}: the capability is not needed");
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(
            !status.success(),
            "without CAP_{missing} the daemon exited 0"
        );
        // The message depends on the first call refused (without CAP_BPF
        // aya's feature probes fail first); it names the daemon's error.
        assert!(err.contains("enforcer: "), "without CAP_{missing}: {err}");
    }
}

/// What must be absent before the test installs, and absent after purge.
const OURS: &[&str] = &[
    "/usr/bin/enforcer",
    "/etc/enforcer",
    "/etc/default/enforcer",
    "/var/lib/enforcer",
    "/run/enforcer",
    "/usr/lib/systemd/system/enforcer.service",
    "/etc/systemd/system/multi-user.target.wants/enforcer.service",
    "/var/lib/systemd/deb-systemd-helper-enabled/enforcer.service.dsh-also",
    "/usr/share/doc/enforcer",
    "/usr/share/man/man1/enforcer.1.gz",
    "/usr/share/bash-completion/completions/enforcer",
    "/usr/share/zsh/vendor-completions/_enforcer",
    "/usr/share/fish/vendor_completions.d/enforcer.fish",
    "/usr/share/lintian/overrides/enforcer",
    "/sys/fs/bpf/enforcer",
];

fn installed() -> bool {
    let (_, out, _) = sh(Command::new("dpkg-query").args(["-W", "-f=${Status}", "enforcer"]));
    out.contains("installed") || out.contains("config-files")
}

/// Owns the installed package while it lives; purges it on every way out.
struct Installed;

impl Installed {
    fn install(deb: &Path) -> Installed {
        let (code, out, err) = sh(Command::new("dpkg")
            .arg("-i")
            .arg(deb)
            .env("DEBIAN_FRONTEND", "noninteractive"));
        let guard = Installed;
        assert_eq!(code, 0, "dpkg -i: {out}{err}");
        guard
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if installed() {
            let _ = Command::new("dpkg")
                .args(["-P", "enforcer"])
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// A private bpffs mounted at the default pin directory, so that the
/// package's purge meets real pins without touching the host's bpffs.
struct DefaultPins;

impl DefaultPins {
    const DIR: &str = "/sys/fs/bpf/enforcer";

    fn mount() -> DefaultPins {
        std::fs::create_dir(Self::DIR).expect("create the default pin directory");
        let guard = DefaultPins;
        let (code, _, err) = sh(Command::new("mount").args(["-t", "bpf", "bpf", Self::DIR]));
        assert_eq!(code, 0, "mount bpffs at {}: {err}", Self::DIR);
        guard
    }
}

impl Drop for DefaultPins {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(Self::DIR).status();
        let _ = std::fs::remove_dir(Self::DIR);
    }
}

fn deb_path() -> PathBuf {
    if let Some(deb) = std::env::var_os("ENFORCER_DEB") {
        return PathBuf::from(deb);
    }
    // Outside `cargo xtask test`: build it the same way.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let (code, out, err) = sh(Command::new("cargo")
        .args(["xtask", "deb"])
        .current_dir(root));
    assert_eq!(code, 0, "cargo xtask deb: {err}");
    PathBuf::from(out.lines().last().expect("the .deb path").trim())
}

fn mode_owner(path: &str) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.permissions().mode() & 0o7777, m.uid(), m.gid())
}

fn gid_of(group: &str) -> u32 {
    let (code, out, _) = sh(Command::new("getent").args(["group", group]));
    assert_eq!(code, 0, "group {group} exists");
    out.split(':').nth(2).unwrap().trim().parse().unwrap()
}

/// No process runs /usr/bin/enforcer (installing must start nothing here).
fn packaged_daemons() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe == Path::new("/usr/bin/enforcer"))
        })
        .collect()
}

/// Refuses to go on where another enforcer is installed: the tests install
/// the package over it and purge it.
fn refuse_if_installed() {
    for path in OURS {
        assert!(
            !Path::new(path).exists(),
            "{path} exists: another enforcer is installed here; refusing to touch it"
        );
    }
    assert!(
        !installed(),
        "an enforcer package is installed; refusing to touch it"
    );
}

#[test]
fn the_package_lints_clean_installs_without_systemd_and_purge_leaves_nothing() {
    require_root();
    assert!(
        !Path::new("/run/systemd/system").exists(),
        "this test expects a machine where systemd is not PID 1"
    );
    refuse_if_installed();
    let deb = deb_path();

    let (code, out, err) = sh(Command::new("lintian")
        .args(["--fail-on", "error,warning", "--no-tag-display-limit"])
        .arg(&deb));
    assert_eq!(code, 0, "lintian: {out}{err}");
    let tags: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(tags.is_empty(), "lintian tags: {tags:?}");

    let pkg = Installed::install(&deb);
    assert!(
        packaged_daemons().is_empty(),
        "installing without systemd started the daemon"
    );
    let root_gid = 0;
    let group = gid_of("enforcer");
    for (path, want) in [
        ("/usr/bin/enforcer", (0o755, 0, root_gid)),
        (
            "/usr/lib/systemd/system/enforcer.service",
            (0o644, 0, root_gid),
        ),
        ("/etc/default/enforcer", (0o644, 0, root_gid)),
        ("/etc/enforcer/README", (0o644, 0, root_gid)),
        ("/etc/enforcer/policy.json.example", (0o644, 0, root_gid)),
        ("/etc/enforcer/policy.d", (0o755, 0, root_gid)),
        ("/var/lib/enforcer", (0o750, 0, group)),
        ("/usr/share/man/man1/enforcer.1.gz", (0o644, 0, root_gid)),
        (
            "/usr/share/man/man1/enforcer-daemon.1.gz",
            (0o644, 0, root_gid),
        ),
        (
            "/usr/share/bash-completion/completions/enforcer",
            (0o644, 0, root_gid),
        ),
        (
            "/usr/share/zsh/vendor-completions/_enforcer",
            (0o644, 0, root_gid),
        ),
        (
            "/usr/share/fish/vendor_completions.d/enforcer.fish",
            (0o644, 0, root_gid),
        ),
        ("/usr/share/doc/enforcer/copyright", (0o644, 0, root_gid)),
        (
            "/usr/share/doc/enforcer/policy.schema.json",
            (0o644, 0, root_gid),
        ),
    ] {
        assert_eq!(mode_owner(path), want, "{path}: (mode, uid, gid)");
    }
    assert!(
        !Path::new("/etc/enforcer/policy.json").exists(),
        "policy.json is not shipped: the embedded default applies until an administrator writes one"
    );
    assert!(
        std::fs::read_dir("/etc/enforcer/policy.d")
            .unwrap()
            .next()
            .is_none(),
        "policy.d starts empty"
    );
    // Enabled for the next boot by deb-systemd-helper, without systemd running.
    let wants = "/etc/systemd/system/multi-user.target.wants/enforcer.service";
    let target = std::fs::read_link(wants).expect("the unit is enabled");
    assert!(
        target.ends_with("systemd/system/enforcer.service"),
        "{wants} -> {}",
        target.display()
    );
    let (_, conffiles, _) =
        sh(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "enforcer"]));
    for c in [
        "/etc/default/enforcer",
        "/etc/enforcer/README",
        "/etc/enforcer/policy.json.example",
    ] {
        assert!(conffiles.contains(c), "{c} is a conffile: {conffiles}");
    }

    let (code, out, err) = sh(Command::new("/usr/bin/enforcer").arg("--version"));
    assert_eq!(
        (code, out.trim()),
        (0, concat!("enforcer ", env!("CARGO_PKG_VERSION"))),
        "{err}"
    );
    let (code, out, err) = sh(Command::new("/usr/bin/enforcer").args([
        "policy",
        "validate",
        "/etc/enforcer/policy.json.example",
    ]));
    assert_eq!(code, 0, "the shipped example is valid: {out}{err}");
    // The installed unit, with its binary and man pages in place.
    let (code, out, err) = sh(Command::new("systemd-analyze")
        .args(["verify", "/usr/lib/systemd/system/enforcer.service"]));
    assert_eq!(code, 0, "systemd-analyze verify: {out}{err}");
    assert!(
        out.trim().is_empty() && err.trim().is_empty(),
        "systemd-analyze verify has remarks: {out}{err}"
    );

    // An administrator's edit survives an upgrade (a reinstall takes the
    // same path: postinst configure with the old version).
    let edited = "# site\nENFORCER_ARGS=\"--xdp-iface lo\"\n";
    std::fs::write("/etc/default/enforcer", edited).unwrap();
    let (code, out, err) = sh(Command::new("dpkg")
        .arg("-i")
        .arg(&deb)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert_eq!(code, 0, "dpkg -i again: {out}{err}");
    assert_eq!(
        std::fs::read_to_string("/etc/default/enforcer").unwrap(),
        edited,
        "the upgrade kept the administrator's conffile"
    );
    assert!(
        packaged_daemons().is_empty(),
        "the upgrade started the daemon"
    );

    // Purge ends the enforcement of the default instance: run the installed
    // binary scoped to a test cgroup, pinning at the default directory (a
    // private bpffs mounted there), stop it (the pins keep enforcing), purge.
    let w = World::new("pkg", &["10.77.0.1/32", "10.77.0.2/32"]);
    let pins = DefaultPins::mount();
    let policy = w.tmp.write("policy.json", BAN_2);
    let mut args = w.args(&policy);
    args.bpffs = PathBuf::from(DefaultPins::DIR);
    let daemon = Daemon::start(&args);
    daemon.stop();
    assert_eq!(
        w.probe("10.77.0.2:0"),
        "EPERM",
        "stopping keeps the enforcement"
    );

    for (op, after, what) in [
        ("-r", "EPERM", "remove keeps the enforcement"),
        ("-P", "ok", "purge removed the enforcement"),
    ] {
        let (code, out, err) = sh(Command::new("dpkg").args([op, "enforcer"]));
        assert_eq!(code, 0, "dpkg {op}: {out}{err}");
        assert_eq!(w.probe("10.77.0.2:0"), after, "{what}");
    }
    // (A fresh bpffs also holds the kernel's maps.debug/progs.debug.)
    for dir in ["maps", "links"] {
        assert!(
            !Path::new(DefaultPins::DIR).join(dir).exists(),
            "purge removed the pinned {dir}"
        );
    }
    drop(pins);
    drop(pkg);
    assert!(!installed(), "dpkg still knows the package after purge");
    for path in OURS {
        assert!(!Path::new(path).exists(), "{path} left behind by purge");
    }
    // Kept on purge (docs/PACKAGING.md): files may still carry its gid.
    gid_of("enforcer");
}

/// The venv `cargo xtask setup` fills with ansible-core and ansible-lint.
const ANSIBLE_VENV: &str = "/opt/enforcer-ci/venv/bin";

fn ansible(tool: &str, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let path = format!(
        "{ANSIBLE_VENV}:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    sh(Command::new(Path::new(ANSIBLE_VENV).join(tool))
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .env("ANSIBLE_NOCOLOR", "1")
        .env(
            "ANSIBLE_ROLES_PATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/ansible/roles"),
        ))
}

/// `changed=N` of the localhost line of the play recap.
fn changed(out: &str) -> u32 {
    let recap = out
        .lines()
        .rev()
        .find(|l| l.starts_with("localhost") && l.contains("changed="))
        .unwrap_or_else(|| panic!("no play recap: {out}"));
    recap
        .split_whitespace()
        .find_map(|w| w.strip_prefix("changed="))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_ansible_role_is_lint_clean_idempotent_and_reloads_a_change_once() {
    require_root();
    refuse_if_installed();
    let ansible_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/ansible"));
    let (code, out, err) = ansible("ansible-lint", ansible_dir, &["site.yml", "roles/enforcer"]);
    assert_eq!(code, 0, "ansible-lint: {out}{err}");

    let deb = deb_path();
    let w = World::new("ans", &["10.77.0.1/32", "10.77.0.2/32", "10.77.0.3/32"]);
    // The daemon under test starts on a policy the role will replace.
    let policy = w.tmp.write(
        "policy.json",
        r#"{"version":1,"deny":{"cidrs":["10.77.0.1"]}}"#,
    );
    std::fs::create_dir(w.tmp.path().join("policy.d")).unwrap();
    let daemon = Daemon::start(&w.args(&policy));
    assert_eq!(w.probe("10.77.0.1:0"), "EPERM");
    let _pkg = Installed; // purged on every way out, installed by the role
    let vars = |cidr: &str, mode: &str| {
        serde_json::json!({
            "ansible_python_interpreter": "/usr/bin/python3",
            "enforcer_deb_path": deb,
            "enforcer_policy_path": policy,
            "enforcer_dropin_dir": w.tmp.path().join("policy.d"),
            "enforcer_policy": {"version": 1, "deny": {"cidrs": [cidr]}},
            "enforcer_dropins": {"50-team": {"version": 1, "allow": {"cidrs": ["10.77.0.1"]}}},
            "enforcer_mode": mode,
            "enforcer_manage_service": false,
            "enforcer_reload_command": format!("/usr/bin/enforcer reload --socket {}", w.socket().display()),
        })
        .to_string()
    };
    let playbook = w.tmp.write(
        "play.yml",
        "- name: Test\n  hosts: all\n  gather_facts: false\n  roles:\n    - enforcer\n",
    );
    let play = |vars: &str| {
        let (code, out, err) = ansible(
            "ansible-playbook",
            w.tmp.path(),
            &[
                "-c",
                "local",
                "-i",
                "localhost,",
                "-e",
                vars,
                playbook.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "ansible-playbook: {out}{err}");
        out
    };
    let reloads = |out: &str| {
        out.matches("RUNNING HANDLER [enforcer : Reload enforcer through its socket]")
            .count()
    };

    let first = play(&vars("10.77.0.2", "enforce"));
    assert!(changed(&first) > 0, "{first}");
    assert_eq!(reloads(&first), 1, "{first}");
    assert!(installed(), "the role installed the package");
    assert!(
        packaged_daemons().is_empty(),
        "the role started a daemon unmanaged"
    );
    assert_eq!(w.probe("10.77.0.2:0"), "EPERM", "{}", daemon.log_text());
    assert_eq!(w.probe("10.77.0.1:0"), "ok", "the drop-in's exception");

    let second = play(&vars("10.77.0.2", "enforce"));
    assert_eq!(
        changed(&second),
        0,
        "the second run changes nothing: {second}"
    );
    assert_eq!(reloads(&second), 0, "{second}");

    let before = daemon.log_text().matches("policy reloaded").count();
    let third = play(&vars("10.77.0.3", "enforce"));
    assert_eq!(changed(&third), 2, "the policy and its reload: {third}");
    assert_eq!(reloads(&third), 1, "one change, one reload: {third}");
    assert_eq!(w.probe("10.77.0.3:0"), "EPERM", "{}", daemon.log_text());
    assert_eq!(w.probe("10.77.0.2:0"), "ok");
    // The daemon follows its files too; whichever of the file change and
    // the handler's explicit reload comes second finds the policy already
    // in force: the change is applied exactly once.
    let log = daemon.log_text();
    let applied = log.matches("policy reloaded").count() - before;
    assert_eq!(applied, 1, "{log}");

    let audit = play(&vars("10.77.0.3", "audit"));
    assert_eq!(reloads(&audit), 1, "{audit}");
    assert_eq!(w.probe("10.77.0.3:0"), "ok", "audit mode lets it through");
    let back = play(&vars("10.77.0.3", "enforce"));
    assert_eq!(reloads(&back), 1, "{back}");
    assert_eq!(w.probe("10.77.0.3:0"), "EPERM", "enforce again");
    daemon.stop();
}

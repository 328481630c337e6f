//! Man pages (one per command) and bash/zsh/fish completions, for
//! packaging: `enforcer generate-docs DIR` (`cargo xtask docs`).
//!
//! clap renders NAME, SYNOPSIS, DESCRIPTION and OPTIONS; the sections a
//! man page reader looks for next (EXIT STATUS, FILES, EXAMPLES) are
//! written here, per command, from the README's promises.

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;
use roff::{Roff, bold, roman};

use super::Cli;

/// What a command's page says besides its options: exit codes, files and
/// examples (command line, what it does).
struct Extra {
    exit: &'static [(&'static str, &'static str)],
    files: &'static [(&'static str, &'static str)],
    examples: &'static [(&'static str, &'static str)],
}

const REMOTE_EXIT: &[(&str, &str)] = &[
    ("0", "success"),
    ("1", "failure"),
    (
        "3",
        "the daemon is not running (no control socket), or stopped while followed",
    ),
    (
        "4",
        "permission denied: the control socket is for root and the enforcer group",
    ),
    (
        "--json",
        "a failure also prints {\"error\": {\"code\", \"message\"}} on stdout, same exit code",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "/etc/enforcer/policy.json",
        "the policy (default: the embedded one when absent)",
    ),
    (
        "/etc/enforcer/policy.d/*.json",
        "drop-ins merged into the policy",
    ),
    (
        "/sys/fs/bpf/enforcer",
        "pinned programs, maps and links: the enforcement itself",
    ),
    (
        "/run/enforcer/control.sock",
        "the control socket (root and the enforcer group)",
    ),
    ("/var/lib/enforcer/flows.db", "blocked flows (SQLite)"),
    (
        "/var/lib/enforcer/resolved.json",
        "the last resolved names, seed of the next start",
    ),
];

const DOCTOR_FILES: &[(&str, &str)] = &[
    (
        "/etc/resolv.conf",
        "the nameservers whose DNS must be visible",
    ),
    (
        "/etc/nsswitch.conf",
        "hosts: resolve hides lookups in a Unix socket",
    ),
    (
        "/etc/systemd/resolved.conf",
        "DNSOverTLS= (and its drop-ins)",
    ),
    FILES[2],
    FILES[3],
];

const SHOW_FILES: &[(&str, &str)] = &[FILES[0], FILES[1], FILES[5]];

fn extra(name: &str) -> Extra {
    let none: &[(&str, &str)] = &[];
    match name {
        "enforcer" => Extra {
            exit: &[
                ("0", "success (check: not blocked)"),
                ("1", "failure (check: blocked; doctor: a warning)"),
                (
                    "2",
                    "check could not answer; policy validate --strict found warnings; doctor: a failure",
                ),
                ("3", "the daemon is not running"),
                ("4", "the caller may not do that"),
            ],
            files: FILES,
            examples: &[
                (
                    "enforcer status",
                    "what the running daemon enforces, with counters",
                ),
                (
                    "enforcer check api.openai.com",
                    "would a connection be blocked now?",
                ),
                (
                    "enforcer flows --since 1h",
                    "who tried to reach what, in the last hour",
                ),
            ],
        },
        "enforcer-daemon" => Extra {
            exit: &[
                ("0", "stopped by SIGTERM or SIGINT, or detached"),
                (
                    "1",
                    "could not start (the error says why; the pinned enforcement stays)",
                ),
                ("4", "not run as root"),
            ],
            files: FILES,
            examples: &[
                ("enforcer daemon", "enforce the policy on the whole host"),
                (
                    "enforcer daemon --cgroup /sys/fs/cgroup/agents --bpffs /sys/fs/bpf/agents --socket /run/agents.sock --state-dir /var/lib/agents",
                    "a second instance for one cgroup subtree",
                ),
            ],
        },
        "enforcer-status" => Extra {
            exit: REMOTE_EXIT,
            files: &FILES[3..4],
            examples: &[(
                "enforcer status --json | jq .dns",
                "the DNS program's counters",
            )],
        },
        "enforcer-reload" => Extra {
            exit: REMOTE_EXIT,
            files: &FILES[..4],
            examples: &[(
                "enforcer reload",
                "apply an edited policy now (also SIGHUP)",
            )],
        },
        "enforcer-flows" => Extra {
            exit: REMOTE_EXIT,
            files: &FILES[3..5],
            examples: &[
                (
                    "enforcer flows --since 10m --user alice",
                    "alice's blocked attempts",
                ),
                (
                    "enforcer flows --follow --json",
                    "new flows as they happen, one JSON object a line",
                ),
                (
                    "enforcer flows --follow --exe /usr/bin/curl",
                    "curl's flows as they are written, each row with the flow's count so far",
                ),
            ],
        },
        "enforcer-check" => Extra {
            exit: &[
                ("0", "not blocked"),
                ("1", "blocked: the kernel denies every address"),
                ("2", "could not answer"),
            ],
            files: &FILES[2..4],
            examples: &[
                (
                    "enforcer check api.anthropic.com",
                    "resolve now and judge each address by the pinned maps",
                ),
                ("enforcer check 160.79.104.1 --json", "one address"),
                (
                    "enforcer check 8.8.8.8:853/tcp",
                    "traffic to one port, rules with a port included",
                ),
            ],
        },
        "enforcer-doctor" => Extra {
            exit: &[
                ("0", "every check ok or info"),
                ("1", "a warning"),
                ("2", "a failure"),
            ],
            files: DOCTOR_FILES,
            examples: &[(
                "sudo enforcer doctor",
                "can this host enforce, and does it?",
            )],
        },
        "enforcer-detach" => Extra {
            exit: REMOTE_EXIT,
            files: &FILES[2..4],
            examples: &[
                (
                    "enforcer detach",
                    "through the running daemon: stop it and remove the enforcement",
                ),
                (
                    "enforcer detach --bpffs /sys/fs/bpf/enforcer",
                    "a daemon that is gone",
                ),
            ],
        },
        "enforcer-policy-validate" => Extra {
            exit: &[
                ("0", "every file is valid"),
                ("1", "a file is invalid (file, line and field named)"),
                ("2", "with --strict: a file has warnings"),
            ],
            files: &FILES[..2],
            examples: &[(
                "enforcer policy validate --strict --with-drop-ins /etc/enforcer/policy.json",
                "what the daemon would load",
            )],
        },
        "enforcer-policy-show" => Extra {
            exit: &[("0", "success"), ("1", "the policy is invalid")],
            files: SHOW_FILES,
            examples: &[(
                "enforcer policy show --resolved",
                "every name with its addresses, TTL and state",
            )],
        },
        _ => Extra {
            exit: &[("0", "success"), ("1", "failure")],
            files: none,
            examples: none,
        },
    }
}

fn section(roff: &mut Roff, title: &str, items: &[(&str, &str)]) {
    if items.is_empty() {
        return;
    }
    roff.control("SH", [title]);
    for (term, what) in items {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*what)]);
    }
}

fn page(cmd: clap::Command, out: &Path) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut w = Vec::new();
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut w)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut w)?;
    }
    let name = man.get_filename();
    let name = name.trim_end_matches(".1");
    let e = extra(name);
    let mut roff = Roff::new();
    section(&mut roff, "EXIT STATUS", e.exit);
    section(&mut roff, "FILES", e.files);
    section(&mut roff, "EXAMPLES", e.examples);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "enforcer(1), and the README of the package (/usr/share/doc/enforcer)",
    )]);
    w.extend_from_slice(roff.render().as_bytes());
    if cmd.get_version().is_some() || cmd.get_long_version().is_some() {
        man.render_version_section(&mut w)?;
    }
    let path = out.join(man.get_filename());
    std::fs::write(&path, w).with_context(|| format!("writing {}", path.display()))
}

fn pages(cmd: &clap::Command, out: &Path) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, out)?;
    }
    page(cmd.clone(), out)
}

/// The command without its hidden subcommands (clap_complete would offer
/// them).
fn visible(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new("enforcer")
        .version(env!("CARGO_PKG_VERSION"))
        .about(cmd.get_about().cloned().unwrap_or_default())
        // The built command's own --help and --version are copied below.
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true);
    for a in cmd.get_arguments() {
        out = out.arg(a.clone());
    }
    for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out = out.subcommand(s.clone());
    }
    out
}

/// Man pages (one per command) and bash/zsh/fish completions into `dir`.
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    pages(&cmd, &man).context("writing man pages")?;
    let mut shown = visible(&cmd);
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut shown, "enforcer", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
    }
    Ok(())
}

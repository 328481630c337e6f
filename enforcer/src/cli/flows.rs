//! `enforcer flows`: the blocked flows from the store.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, bail};

use crate::{
    control::{
        auth::{Access, GROUP, Peer, decide, enforcer_gid, name_service_groups},
        protocol::Followed,
    },
    flows::{Query, Store},
    resolve::now_ms,
};

use super::{
    DEFAULT_SOCKET, DEFAULT_STATE_DIR,
    remote::Denied,
    table::{self, Column},
};

/// `10m`, `2h`, `30s`, `7d` → milliseconds.
pub fn parse_duration(s: &str) -> anyhow::Result<u64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?}: expected like 10m, 2h, 7d"))?;
    let ms = match unit {
        "ms" => 1,
        "s" | "" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("invalid duration {s:?}: the unit must be s, m, h or d"),
    };
    Ok(n.saturating_mul(ms))
}

fn ago(ms: u64) -> String {
    format!(
        "{} ago",
        table::duration(now_ms().saturating_sub(ms) / 1000)
    )
}

/// Reads the store directly (the daemon is not running): only for whom
/// the control socket would serve, so that the files' modes are not the
/// only guard.
pub fn run(state_dir: &Path, q: Query, json: bool) -> anyhow::Result<ExitCode> {
    let path = Store::path(state_dir);
    if decide(&Peer::current(), enforcer_gid(), name_service_groups) == Access::None {
        return Err(Denied(format!(
            "permission denied on {}: the flows are for root and the `{GROUP}` group",
            path.display()
        ))
        .into());
    }
    match std::fs::File::open(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Denied(format!(
                "permission denied on {}: {e} (a new member of the `{GROUP}` group must log in \
                 again)",
                path.display()
            ))
            .into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no flow store at {}: is the daemon running with --state-dir {}?",
            path.display(),
            state_dir.display()
        ),
        Err(e) => bail!("{}: {e}", path.display()),
    }
    let store = Store::open_read_only(state_dir)?;
    let flows = store.query(&q)?;
    print(&flows, json, q.since_ms.is_some())
}

/// `flows --follow`: the flows matching `q` (every filter of `flows`; the
/// daemon applies them) as the daemon writes them to the store, about
/// once a second: one row per flow per write in which it had attempts,
/// its COUNT all of its attempts so far, as `flows` would show it then.
/// Ends when the daemon stops ([`ClientError::Stopped`], exit 3).
///
/// [`ClientError::Stopped`]: crate::control::client::ClientError::Stopped
pub fn follow(socket: &Path, q: Query, json: bool) -> anyhow::Result<ExitCode> {
    let mut header = true;
    crate::control::client::follow(socket, q, |item| {
        match item {
            Followed::Flow(f) if json => match serde_json::to_string(&f) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("enforcer: a flow does not serialise: {e}"),
            },
            Followed::Flow(f) => {
                // Rows come one at a time: every column at its cap.
                for line in table::render(&COLUMNS, &[cells(&f)], header, true) {
                    println!("{line}");
                }
                header = false;
            }
            Followed::Lagged { lagged } => {
                eprintln!("enforcer: {lagged} flows not shown (this reader fell behind)");
            }
        }
        true
    })?;
    Ok(ExitCode::SUCCESS)
}

const COLUMNS: [Column; 8] = [
    Column::left("LAST", 14),
    Column::right("COUNT", 8),
    Column::right("PID", 8),
    Column::left("USER", 12),
    Column::path("EXE", 32),
    Column::left("DESTINATION", 47),
    Column::left("DOMAINS", 32),
    Column::left("RULE / HOOKS", usize::MAX),
];

/// One flow as the table's cells.
fn cells(f: &crate::flows::Flow) -> Vec<String> {
    let proto = match f.protocol {
        6 => "tcp",
        17 => "udp",
        _ => "ip",
    };
    // How a banned IPv4 host was reached over IPv6 (NAT64, 6to4, ...).
    let via = if f.via.is_empty() {
        String::new()
    } else {
        format!(" via: {}", f.via)
    };
    // The name an application's DNS answer gave the destination, and the
    // CNAME chain that led there.
    let asked = match (f.name.is_empty(), f.chain.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!(" name: {}", f.name),
        (false, false) => format!(" name: {}", f.chain),
    };
    vec![
        ago(f.last_seen_ms),
        f.count.to_string(),
        f.pid.to_string(),
        f.user.clone().unwrap_or_else(|| f.uid.to_string()),
        f.exe.clone(),
        format!("{}/{proto}", table::endpoint(&f.dst, f.port)),
        if f.domains.is_empty() {
            "-".into()
        } else {
            f.domains.clone()
        },
        format!("#{} {} [{}]{via}{asked}", f.rule_id, f.verdict, f.hooks),
    ]
}

/// Prints flows as a table (columns sized to the answer), or one JSON
/// object per line.
pub fn print(flows: &[crate::flows::Flow], json: bool, windowed: bool) -> anyhow::Result<ExitCode> {
    if json {
        for f in flows {
            println!("{}", serde_json::to_string(f)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = flows.iter().map(cells).collect();
    for line in table::render(&COLUMNS, &rows, !flows.is_empty(), false) {
        println!("{line}");
    }
    if flows.is_empty() {
        println!(
            "(no blocked flows{})",
            if windowed { " in that window" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `enforcer flows`'s arguments.
#[derive(Debug, clap::Args)]
pub struct FlowsArgs {
    /// Only flows seen within this long (10m, 2h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub pid: Option<u32>,
    /// Executable path, exactly.
    #[arg(long)]
    pub exe: Option<String>,
    /// User name or uid.
    #[arg(long)]
    pub user: Option<String>,
    /// A banned name the destination resolved from.
    #[arg(long)]
    pub domain: Option<String>,
    /// The name an application asked for (or one on its CNAME chain)
    /// whose DNS answer gave the destination.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Keep printing the matching flows as the daemon writes them
    /// (about once a second; each row's COUNT is the flow's attempts so
    /// far); exit 3 when the daemon stops.
    #[arg(long)]
    pub follow: bool,
    /// The daemon's control socket (asked first).
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// The daemon's state directory (read when the daemon is not running).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

/// `enforcer flows`: through the daemon when it runs, else from the store.
pub fn command(args: FlowsArgs) -> anyhow::Result<ExitCode> {
    let since_ms = match &args.since {
        Some(s) => Some(crate::resolve::now_ms().saturating_sub(parse_duration(s)?)),
        None => None,
    };
    let (socket, json) = (args.socket, args.json);
    let q = crate::flows::Query {
        since_ms,
        pid: args.pid,
        exe: args.exe,
        user: args.user,
        domain: args.domain,
        name: args.name,
        limit: args.limit,
    };
    if args.follow {
        return follow(&socket, q, json);
    }
    if super::remote::reachable(&socket) {
        let windowed = q.since_ms.is_some();
        let flows: Vec<crate::flows::Flow> =
            super::remote::request(&socket, crate::control::protocol::Command::Flows(q))?;
        return print(&flows, json, windowed);
    }
    run(&args.state_dir, q, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), 600_000);
        assert_eq!(parse_duration("2h").unwrap(), 7_200_000);
        assert_eq!(parse_duration("45").unwrap(), 45_000);
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }
}

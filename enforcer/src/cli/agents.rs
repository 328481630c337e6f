//! `enforcer agents`: the selectors and the processes they contain.

use std::{path::Path, process::ExitCode};

use super::{
    remote::request,
    table::{self, Column},
};
use crate::{agents::report::AgentsReport, control::protocol::Command};

pub fn run(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let r: AgentsReport = request(socket, Command::Agents)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for line in text(&r) {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn text(r: &AgentsReport) -> Vec<String> {
    let mut out = Vec::new();
    if r.selectors.is_empty() {
        out.push("no agent selectors in the policy".to_owned());
        return out;
    }
    for s in &r.selectors {
        out.push(format!(
            "{} — {}, {} contained (defined in {})",
            s.name, s.action, s.contained, s.defined_in
        ));
        for (what, list) in [
            ("exe", &s.exe),
            ("script", &s.script),
            ("cmdline", &s.cmdline),
        ] {
            if !list.is_empty() {
                out.push(format!("  {what:<8} {}", list.join(", ")));
            }
        }
        let allow = if s.action == "deny-all" {
            "nothing (deny-all)".to_owned()
        } else if s.allow.is_empty() {
            "nothing but the host's DNS servers".to_owned()
        } else {
            s.allow.join(", ")
        };
        out.push(format!("  allow    {allow}"));
        if let Some(src) = &s.source {
            out.push(format!("  source   {src}"));
        }
    }
    if !r.unix_judged {
        out.push(
            "warning: Unix-domain sockets of contained processes are NOT judged (no \
             connect_unix/sendmsg_unix links: a kernel before 6.7, or another layout; the \
             daemon's log says which)"
                .to_owned(),
        );
    }
    out.push(String::new());
    if r.contained.is_empty() {
        out.push("no process is contained now".to_owned());
    } else {
        let columns = [
            Column::right("PID", 8),
            Column::left("AGENT", 20),
            Column::right("ROOT", 8),
            Column::path("ROOT EXE", 40),
            Column::left("COMMAND", usize::MAX),
        ];
        let rows: Vec<Vec<String>> = r
            .contained
            .iter()
            .map(|c| {
                vec![
                    c.pid.to_string(),
                    c.agent.clone(),
                    c.root.to_string(),
                    c.root_exe.clone(),
                    c.cmdline.clone(),
                ]
            })
            .collect();
        out.extend(table::render(&columns, &rows, true, false));
    }
    let counters: Vec<String> = r.counters.iter().map(|(k, v)| format!("{v} {k}")).collect();
    out.push(format!("kernel:   {}", counters.join(", ")));
    out
}

//! Answers the control socket's requests (status, flows, check, reload,
//! detach) from the event loop's state.

use super::{Controller, record::Recorder, reload, status, watch::PolicyWatch};
use crate::{
    bpf::dnsnames::{self, LearnedCounts},
    control::{
        Job, Response,
        protocol::{CheckReply, Command, ErrorCode},
        status::Reloads,
    },
};

/// The loop's state a request may read or change.
pub struct Ctx<'a, 'f> {
    pub controller: &'a mut Controller,
    pub recorder: &'a mut Recorder,
    pub watch: &'a mut PolicyWatch,
    pub reloads: &'a mut Reloads,
    pub learned: &'a mut LearnedCounts,
    pub facts: &'a status::Facts<'f>,
}

/// What the loop does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Stop, and remove the enforcement.
    Detach,
}

/// Answers `job` (a slow one, `check`, from a task of its own).
pub fn answer(job: Job, ctx: Ctx<'_, '_>) -> Next {
    let mut next = Next::Continue;
    let response = match job.command {
        Command::Status => {
            // Fresh counts (and the expired ones gone) for what status shows.
            if let Ok(c) = dnsnames::purge_expired(ctx.facts.pins) {
                *ctx.learned = c;
            }
            Response::ok(status::build(
                ctx.controller,
                ctx.facts,
                ctx.learned,
                ctx.recorder,
                ctx.reloads,
            ))
        }
        Command::Agents => Response::ok(ctx.controller.agents.report()),
        Command::Flows(q) => match ctx.recorder.query(&q) {
            Ok(flows) => Response::ok(flows),
            Err(e) => Response::error(ErrorCode::Failed, e.to_string()),
        },
        Command::Check { target } => {
            // Resolving may take seconds: off the loop.
            let policy = ctx.controller.policy.clone();
            let rules = ctx.controller.rules.borrow().clone();
            let pins = ctx.facts.pins.clone();
            let resolv_conf = ctx.facts.config.resolv_conf.clone();
            tokio::spawn(async move {
                let response =
                    match crate::check::live(&policy, &rules, &pins, &resolv_conf, &target).await {
                        Ok(v) => Response::ok(CheckReply {
                            blocked: v.blocked,
                            text: v.text,
                            detail: v.json,
                        }),
                        Err(e) => Response::error(ErrorCode::BadRequest, format!("{e:#}")),
                    };
                let _ = job.reply.send(response);
            });
            return next;
        }
        Command::Reload => match reload::reload(
            ctx.controller,
            ctx.facts.config,
            ctx.watch,
            ctx.reloads,
            true,
        ) {
            Ok(r) => Response::ok(r.message()),
            Err(e) => Response::error(ErrorCode::Failed, e.to_string()),
        },
        Command::Follow(_) => {
            Response::error(ErrorCode::BadRequest, "follow is served by the connection")
        }
        Command::Detach => {
            next = Next::Detach;
            Response::ok("detaching: the daemon stops and removes the enforcement")
        }
    };
    let _ = job.reply.send(response);
    next
}

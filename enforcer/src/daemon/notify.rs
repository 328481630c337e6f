//! Telling systemd (READY=1, STATUS=) and the log how start-up went.

use tracing::{info, warn};

use super::Controller;
use crate::resolve;

/// Says how the first round of resolutions went, loudly when DNS failed.
pub fn report_first_round(controller: &Controller) {
    let a = &controller.answers;
    let failing = a.count(resolve::NameStatus::Stale) + a.count(resolve::NameStatus::Partial);
    if failing == 0 {
        info!("first resolution of every name is in the maps");
        return;
    }
    warn!(
        names = a.names.len(),
        failing,
        never_answered = a.never_answered(),
        "first resolution round: some names did not answer; their last known addresses stay enforced and they are retried (`enforcer reload` retries now)"
    );
}

pub fn ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

pub fn status(status: &str) {
    notify(&[sd_notify::NotifyState::Status(status)]);
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(error = %e, "sd_notify failed");
    }
}

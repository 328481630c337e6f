//! Reloading the policy: read the files again, apply the result whole or
//! keep the policy in force; and remember how the last reload went, for
//! `status`.

use tracing::{debug, error};

use super::{Config, Controller, controller, watch::PolicyWatch};
use crate::{
    control::status::{LastReload, ReloadOutcome, Reloads},
    policy::{Policy, PolicyError},
    resolve,
};

/// Why a reload was rejected; the policy in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files do not parse or validate.
    #[error("reload rejected, the policy in force stays: {0}")]
    Invalid(#[from] PolicyError),
    /// The maps could not be written (the controller has rolled back).
    #[error("{0}")]
    Apply(String),
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The new policy (or, asked for, the same one again) is in force;
    /// what changed.
    Applied(String),
    /// The files were touched but the merged policy is the same.
    Unchanged,
}

impl Reloaded {
    pub fn message(&self) -> &str {
        match self {
            Reloaded::Applied(msg) => msg,
            Reloaded::Unchanged => "policy unchanged",
        }
    }
}

/// Re-reads the policy. A bad policy is rejected whole and the one in
/// force stays. `explicit`: asked for (SIGHUP, `enforcer reload`), as
/// opposed to a file change. Afterwards the watch follows the files of the
/// policy in force (a drop-in directory may have appeared), and `reloads`
/// remembers the outcome.
pub fn reload(
    controller: &mut Controller,
    config: &Config,
    watch: &mut PolicyWatch,
    reloads: &mut Reloads,
    explicit: bool,
) -> Result<Reloaded, ReloadError> {
    let result = read_and_apply(controller, config, explicit);
    watch.follow(&controller.policy);
    remember(reloads, &result, resolve::now_ms());
    result
}

fn read_and_apply(
    controller: &mut Controller,
    config: &Config,
    explicit: bool,
) -> Result<Reloaded, ReloadError> {
    let mut policy = Policy::resolve(config.policy.as_deref()).inspect_err(|e| {
        error!(
            error = %e,
            kept = %controller.policy.source(),
            "reload rejected; the policy in force stays"
        );
    })?;
    check_upstreams(&mut policy, config);
    match controller
        .reload(policy, explicit)
        .map_err(ReloadError::Apply)?
    {
        controller::ReloadOutcome::Applied(msg) => Ok(Reloaded::Applied(msg)),
        controller::ReloadOutcome::Unchanged => {
            debug!("policy files touched; the merged policy is unchanged");
            Ok(Reloaded::Unchanged)
        }
    }
}

/// Records the outcome of a reload at `now_ms`.
pub fn remember(reloads: &mut Reloads, result: &Result<Reloaded, ReloadError>, now_ms: u64) {
    let (outcome, message) = match result {
        Ok(r @ Reloaded::Applied(_)) => (ReloadOutcome::Applied, r.message().to_owned()),
        Ok(r @ Reloaded::Unchanged) => (ReloadOutcome::Unchanged, r.message().to_owned()),
        Err(e) => {
            reloads.rejected += 1;
            (ReloadOutcome::Rejected, e.to_string())
        }
    };
    reloads.last = Some(LastReload {
        at_ms: now_ms,
        outcome,
        message,
    });
}

/// Warns (in `policy.warnings`: logged, and listed by `status`) when a ban
/// covers a server the resolver asks, the configured upstreams or else
/// those of resolv.conf, read now.
pub fn check_upstreams(policy: &mut Policy, config: &Config) {
    let upstreams =
        resolve::dns::upstreams(policy.resolver.upstreams.as_deref(), &config.resolv_conf);
    policy.check_upstreams(&upstreams.unwrap_or_default(), &config.resolv_conf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_is_counted_and_remembered_until_a_good_reload() {
        let mut r = Reloads::default();
        let bad =
            Policy::parse("{", crate::policy::Source::File("policy.json".into())).unwrap_err();
        remember(&mut r, &Err(bad.into()), 10);
        remember(&mut r, &Err(ReloadError::Apply("map full".into())), 20);
        let last = r.last.clone().unwrap();
        assert_eq!(
            (last.at_ms, last.outcome, r.rejected),
            (20, ReloadOutcome::Rejected, 2)
        );
        assert_eq!(last.message, "map full");
        remember(&mut r, &Ok(Reloaded::Unchanged), 30);
        let last = r.last.unwrap();
        assert_eq!(
            (last.outcome, last.message.as_str()),
            (ReloadOutcome::Unchanged, "policy unchanged")
        );
        assert_eq!(r.rejected, 2, "the count stays");
    }
}

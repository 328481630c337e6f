//! enforcer: keeps cloud AI model APIs and coding agents out of reach of a
//! workstation, in the kernel.
//!
//! # Layout
//! - [`policy`]: the JSON policy, parsed and validated (pure).
//! - [`rules`]: the rule table, derived from the policy; rule ids follow
//!   a rule's content across reloads (pure).
//! - [`agents`]: agent containment, the pure part: selectors compiled into
//!   the automaton the exec hook runs, allow lists by slot, slots kept by
//!   name, the contained processes of a /proc snapshot.
//! - [`desired`]: policy → the contents of every verdict map (pure).
//! - [`portmaps`]: the rules with a port as map contents (pure).
//! - [`mapdiff`]: current → desired map contents as a diff (pure).
//! - [`bpf`]: the privileged layer: load, attach, pin, write maps, read
//!   counters and events, detach.
//! - [`resolve`]: names → addresses: what is known of each name (pure)
//!   and the task that asks DNS.
//! - [`check`]: what the kernel does with a name or address (`check`).
//! - [`collateral`]: banned addresses that also serve other names or
//!   shared front ends (`policy show --resolved`; pure).
//! - [`attrib`]: who is behind a verdict: the pid → exec record cache.
//! - [`answer_names`]: the asked name and CNAME chain behind an address
//!   the kernel learned from an application's DNS answer (flows' `name`).
//! - [`flows`]: verdicts aggregated into flows in SQLite.
//! - [`snapshot`]: the controller's view on disk, for offline `check`.
//! - [`metrics`]: the Prometheus exposition.
//! - [`control`]: the control socket: its typed protocol (requests,
//!   replies, error codes; `control::status`, the status), server and
//!   client.
//! - [`sys`]: the host: cgroup2 mount, bpffs, state directory, the
//!   kernel clock (`sys::clock`: event times as wall-clock time), the host
//!   name.
//! - [`daemon`]: the long-running controller, `run(config, shutdown)`;
//!   one file per concern (control dispatch, status, reload, socket,
//!   sd_notify, loop errors, shutdown; its `# Layout` lists them).
//! - [`cli`]: the command line of the `enforcer` binary (`cli::status`
//!   renders `status`; `cli::remote` asks the daemon and turns failures
//!   into exit codes and `--json` errors).

pub mod agents;
pub mod answer_names;
pub mod attrib;
pub mod bpf;
pub mod check;
pub mod cli;
pub mod collateral;
pub mod control;
pub mod daemon;
pub mod desired;
pub mod flows;
pub mod mapdiff;
pub mod metrics;
pub mod policy;
pub mod portmaps;
pub mod resolve;
pub mod rules;
pub mod snapshot;
pub mod sys;

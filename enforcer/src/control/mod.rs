//! The control socket: newline-delimited JSON requests and responses over a
//! Unix socket, with SO_PEERCRED authorisation.
//!
//! # Layout
//! - `protocol`: the messages, the error codes and the framing (the one
//!   place that turns messages into lines and back).
//! - `status`: the typed answer to `status`.
//! - `auth`: who may read and who may change.
//! - `server`: `run(listener, jobs, shutdown)`: accepts connections, one
//!   task each, and hands authorised requests to the daemon as jobs.
//! - `slots`: how many connections each uid may hold; root's reserve.
//! - `client`: what the CLI uses.

pub mod auth;
pub mod client;
pub mod protocol;
pub mod server;
pub mod slots;
pub mod status;

pub use protocol::{PROTOCOL_VERSION, Request, Response};
pub use server::{Job, run};

//! The control socket: newline-delimited JSON requests and responses over a
//! Unix socket, with SO_PEERCRED authorisation.
//!
//! # Layout
//! - `protocol`: the messages and their framing (the one place that reads
//!   and writes lines).
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

pub use protocol::{PROTOCOL_VERSION, Request, Response};
pub use server::{Job, run};

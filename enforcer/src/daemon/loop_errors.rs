//! Errors the event loop survives.

use std::time::{Duration, Instant};

use tracing::error;

/// Each error is logged (at most once a second) and counted, and a
/// failing source is paused briefly so that a persistent error cannot spin
/// the loop.
#[derive(Default)]
pub struct LoopErrors {
    total: u64,
    last_logged: Option<Instant>,
}

impl LoopErrors {
    pub async fn record(&mut self, what: &str, error: &dyn std::fmt::Display) {
        self.total += 1;
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_logged = Some(now);
            error!(error = %error, total = self.total, "{what} failed; the daemon goes on (enforcement is in the kernel)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

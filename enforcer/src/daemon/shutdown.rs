//! The way out of the loop: what the kernel reported is read into the
//! store, the tasks stop, and the enforcement stays (or, on `detach`, is
//! removed).

use tokio::{sync::oneshot, task::JoinHandle};
use tracing::info;

use super::{Controller, DaemonError, record::Recorder};
use crate::bpf::{
    Pins,
    events::{EventReader, RingReader},
};

/// The kernel's ring buffers the loop reads.
pub struct Readers {
    pub events: EventReader,
    pub execs: RingReader,
    pub dns_reports: RingReader,
}

impl Readers {
    /// Hands everything waiting to the recorder: exec records and DNS
    /// answers first, as the loop does, so that events find them.
    pub fn drain(&mut self, recorder: &mut Recorder, controller: &Controller) {
        self.execs.drain(|b| recorder.on_exec(b));
        self.dns_reports.drain(|b| recorder.on_dns_report(b));
        recorder.sync_clock();
        let rules = controller.rules.borrow();
        self.events.drain(|ev| {
            recorder.on_block(ev, &rules, &controller.answers, &controller.agents);
        });
    }
}

/// The tasks the daemon started besides the loop.
pub struct Tasks {
    pub resolver: JoinHandle<()>,
    pub server_stop: oneshot::Sender<()>,
    pub server: JoinHandle<()>,
    pub metrics: Option<JoinHandle<()>>,
}

/// Stops everything; the flows read so far are written. With `detach`,
/// the programs and maps are removed too.
pub async fn finish(
    mut readers: Readers,
    mut recorder: Recorder,
    controller: &Controller,
    tasks: Tasks,
    pins: &Pins,
    detach: bool,
) -> Result<(), DaemonError> {
    tasks.resolver.abort();
    readers.drain(&mut recorder, controller);
    recorder.flush();
    let _ = tasks.server_stop.send(());
    let _ = tasks.server.await;
    if let Some(m) = tasks.metrics {
        m.abort();
    }
    // Followers see their stream end when the recorder goes.
    drop(recorder);
    if detach {
        let report = crate::bpf::detach(pins)?;
        info!(
            links = report.links,
            maps = report.maps,
            "detached on request; the enforcement is removed"
        );
        return Ok(());
    }
    info!(
        pins = %pins.root().display(),
        "stopping; the enforcement stays in the kernel (`enforcer detach` removes it)"
    );
    Ok(())
}

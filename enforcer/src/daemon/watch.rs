//! Reload on a change to the policy file or its drop-in directory
//! (inotify through the `notify` crate).
//!
//! Only content changes count: a write that was closed, a file created,
//! deleted or renamed into place (config management writes a temporary
//! file and renames it). Reads, opens and attribute changes do not: the
//! daemon's own read of the policy must not start the next reload. The
//! directories are watched (a rename replaces the file's inode), and when
//! the drop-in directory does not exist yet its parent is watched, so a
//! directory created after start is followed from then on.

use std::path::{Path, PathBuf};

use notify::{
    EventKind, RecommendedWatcher, RecursiveMode, Watcher as _,
    event::{AccessKind, AccessMode, ModifyKind},
};
use tokio::sync::mpsc;
use tracing::warn;

use crate::policy::Policy;

/// Keeps the watch alive; dropping it stops watching.
pub struct PolicyWatch {
    main: Option<PathBuf>,
    tx: mpsc::Sender<()>,
    /// The directories watched and the watcher, as last set up.
    current: Option<(Vec<PathBuf>, RecommendedWatcher)>,
}

/// Whether an event of this kind can change what a file holds.
pub fn changes_content(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

impl PolicyWatch {
    /// Nothing is watched until [`PolicyWatch::follow`].
    pub fn new(main: Option<PathBuf>, tx: mpsc::Sender<()>) -> PolicyWatch {
        PolicyWatch {
            main,
            tx,
            current: None,
        }
    }

    /// Watches what `policy` is made of: the main file's directory, the
    /// drop-in directory (or, while it is missing, its parent). Cheap when
    /// nothing changed; call it after every reload.
    pub fn follow(&mut self, policy: &Policy) {
        let drop_in_dir = policy.drop_in_dir.clone();
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(parent) = self.main.as_deref().and_then(Path::parent) {
            dirs.push(parent.to_owned());
        }
        if drop_in_dir.is_dir() {
            dirs.push(drop_in_dir.clone());
        } else if let Some(parent) = drop_in_dir.parent() {
            dirs.push(parent.to_owned());
        }
        dirs.retain(|d| d.is_dir());
        dirs.sort();
        dirs.dedup();
        if self.current.as_ref().is_some_and(|(d, _)| *d == dirs) {
            return;
        }
        let main = self.main.clone();
        let tx = self.tx.clone();
        let relevant = move |p: &Path| {
            main.as_deref() == Some(p)
                || p == drop_in_dir
                || (p.parent() == Some(drop_in_dir.as_path())
                    && p.extension().is_some_and(|e| e == "json"))
        };
        let handler = move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && changes_content(&event.kind)
                && event.paths.iter().any(|p| relevant(p))
            {
                // Full channel: a reload is already pending, which covers this.
                let _ = tx.try_send(());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cannot watch the policy files; reload with SIGHUP");
                self.current = None;
                return;
            }
        };
        for dir in &dirs {
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                warn!(dir = %dir.display(), error = %e, "cannot watch; reload with SIGHUP");
            }
        }
        self.current = Some((dirs, watcher));
    }
}

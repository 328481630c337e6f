//! Reload on a change to the policy file or its drop-in directory
//! (inotify through the `notify` crate). Config management replaces files
//! by rename, so directories are watched, and events are filtered to the
//! files that make up the policy.

use std::path::{Path, PathBuf};

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::warn;

/// Keeps the watch alive; dropping it stops watching.
pub struct PolicyWatch {
    _watcher: RecommendedWatcher,
}

/// Watches `main` (if any) and `drop_in_dir`; sends `()` on every relevant
/// change (the receiver debounces).
pub fn watch(main: Option<&Path>, drop_in_dir: &Path, tx: mpsc::Sender<()>) -> Option<PolicyWatch> {
    let main_owned: Option<PathBuf> = main.map(Path::to_owned);
    let dir_owned = drop_in_dir.to_owned();
    let relevant = move |p: &Path| {
        main_owned.as_deref() == Some(p)
            || (p.parent() == Some(dir_owned.as_path())
                && p.extension().is_some_and(|e| e == "json"))
    };
    let mut watcher =
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && event.paths.iter().any(|p| relevant(p))
            {
                // Full channel: a reload is already pending, which covers this.
                let _ = tx.try_send(());
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cannot watch the policy files; reload with SIGHUP");
                return None;
            }
        };
    let mut dirs: Vec<&Path> = Vec::new();
    if let Some(parent) = main.and_then(Path::parent) {
        dirs.push(parent);
    }
    dirs.push(drop_in_dir);
    for dir in dirs {
        if !dir.is_dir() {
            continue;
        }
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            warn!(dir = %dir.display(), error = %e, "cannot watch; reload with SIGHUP");
        }
    }
    Some(PolicyWatch { _watcher: watcher })
}

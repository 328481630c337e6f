//! The controller's view, written to the state directory after every
//! change so that `policy show --resolved` and `check` can answer offline.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::resolve::Answers;

pub const FILE_NAME: &str = "resolved.json";
pub const TMP_FILE_NAME: &str = ".resolved.json.tmp";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub updated_ms: u64,
    pub sources: Vec<String>,
    pub mode: String,
    /// (The rules are not kept: `show` and `check` compile the policy.
    /// Snapshots of earlier versions listed them; the field is ignored.)
    pub answers: Answers,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a snapshot of this enforcer version: {source}")]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Snapshot {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Written to a temporary file and renamed, so readers never see half.
    pub fn write(&self, state_dir: &Path) -> Result<(), SnapshotError> {
        let path = Snapshot::path(state_dir);
        let tmp = state_dir.join(TMP_FILE_NAME);
        let text = serde_json::to_string_pretty(self).expect("a snapshot serialises");
        crate::sys::statedir::write_file(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| SnapshotError::Io { path, source })
    }

    pub fn read(state_dir: &Path) -> Result<Snapshot, SnapshotError> {
        let path = Snapshot::path(state_dir);
        let text = std::fs::read_to_string(&path).map_err(|source| SnapshotError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| SnapshotError::Format { path, source })
    }
}

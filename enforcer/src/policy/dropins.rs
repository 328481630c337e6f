//! The drop-in directory. A `*.json` entry that is not a regular file (a
//! directory, FIFO, device, socket, dangling or looping symlink) is an
//! error naming it, never skipped: a skipped drop-in is a policy the admin
//! believes in force and is not. Entries are judged by their metadata
//! before anything opens them (opening a FIFO blocks; opening a device may
//! act on it).

use std::{
    io,
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Component, Path, PathBuf},
};

use super::{PolicyError, Source};

/// Directories that hold the system, not a policy: every `*.json` in them
/// would become a drop-in (and /tmp is writable by every user).
const SYSTEM_DIRS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root",
    "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/tmp",
];

fn drop_in(path: &Path, message: impl Into<String>) -> PolicyError {
    PolicyError::DropIn {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// `path` with `.` and `..` taken out lexically (`/etc/enforcer/../..` is `/`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The drop-in files of `dir` in lexical order (`*.json` only); a missing
/// directory has none. `main` is the file that named `dir`, for errors.
pub(super) fn list(dir: &Path, main: &Source) -> Result<Vec<PathBuf>, PolicyError> {
    let system = |shown: &Path| PolicyError::Merged {
        origin: main.clone(),
        field: "drop_in_dir".into(),
        message: format!(
            "the drop-in directory {} is the system directory {}: every *.json in it would \
             be read as policy; give drop-ins a directory of their own (the default is \
             policy.d beside the main file)",
            dir.display(),
            shown.display()
        ),
    };
    let lexical = normalize(dir);
    if SYSTEM_DIRS.iter().any(|s| lexical == Path::new(s)) {
        return Err(system(&lexical));
    }
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PolicyError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    // Through symlinks too: /etc/enforcer/policy.d -> / is the root.
    if let Ok(real) = std::fs::canonicalize(dir)
        && SYSTEM_DIRS.iter().any(|s| real == Path::new(s))
    {
        return Err(system(&real));
    }
    if !meta.is_dir() {
        return Err(wrong_kind(
            dir,
            &meta,
            "the drop-in directory is",
            ", not a directory",
        ));
    }
    if meta.permissions().mode() & 0o002 != 0 {
        return Err(drop_in(
            dir,
            "the drop-in directory is writable by every user, so anyone could add a drop-in \
             that lifts the bans; make it writable by root only (chmod o-w)",
        ));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| PolicyError::Read {
                path: dir.to_owned(),
                source,
            })?
            .path();
        if path.extension().is_some_and(|e| e == "json") {
            check_regular(&path)?;
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `path` is not the kind of file it must be: "`before` <its kind>`after`".
fn wrong_kind(path: &Path, meta: &std::fs::Metadata, before: &str, after: &str) -> PolicyError {
    drop_in(path, format!("{before} {}{after}", kind(&meta.file_type())))
}

/// What a file type is, in words.
fn kind(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// A drop-in must be a regular file, or a symlink to one. Looks only at
/// metadata (following symlinks), so nothing is opened.
fn check_regular(path: &Path) -> Result<(), PolicyError> {
    let not_regular = |what: &str| {
        drop_in(
            path,
            format!(
                "the drop-in is {what}, not a regular file; a drop-in must be a regular file \
                 or a symlink to one (remove it, or rename it to end in something other than .json)"
            ),
        )
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => Err(not_regular(kind(&meta.file_type()))),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(not_regular("a symlink loop")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let target = std::fs::read_link(path)
                .map(|t| format!(" to {}", t.display()))
                .unwrap_or_default();
            Err(not_regular(&format!(
                "a dangling symlink{target} (its target does not exist)"
            )))
        }
        Err(source) => Err(PolicyError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads a drop-in that [`list`] returned. Opened non-blocking and checked
/// again on the open file, so one swapped for a FIFO since cannot block.
pub(super) fn read(path: &Path) -> Result<String, PolicyError> {
    use std::io::Read as _;
    let err = |source| PolicyError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(wrong_kind(
            path,
            &meta,
            "the drop-in became",
            " while it was read, not a regular file",
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(err)?;
    Ok(text)
}

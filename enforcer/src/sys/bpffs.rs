//! The bpf file system that holds the pins.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where distributions mount bpffs; mounted here if nothing is.
pub const SYSTEM_BPFFS: &str = "/sys/fs/bpf";

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("{path}: cannot stat: {source}")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not on a bpf file system, so pins there would not survive; \
         mount one first (`mount -t bpf bpf {mount}`) or pick a directory under {SYSTEM_BPFFS}"
    )]
    NotBpffs { path: PathBuf, mount: PathBuf },
    #[error("mounting bpffs at {SYSTEM_BPFFS}: {0}")]
    Mount(#[source] std::io::Error),
    #[error("{path}: cannot create the pin directory: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether `path` (which must exist) is on a bpf file system.
pub fn is_bpffs(path: &Path) -> Result<bool, BpffsError> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| BpffsError::Stat {
        path: path.to_owned(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: statfs writes into the zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(BpffsError::Stat {
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    #[allow(
        clippy::unnecessary_cast,
        reason = "f_type's type differs between libcs"
    )]
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Makes `dir` exist on a bpf file system. Mounts bpffs at /sys/fs/bpf when
/// `dir` is below it and nothing is mounted there; never mounts elsewhere.
/// Returns whether it mounted.
pub fn ensure_pin_dir(dir: &Path) -> Result<bool, BpffsError> {
    let mut mounted = false;
    let existing = nearest_existing(dir);
    if !is_bpffs(&existing)? {
        let system = Path::new(SYSTEM_BPFFS);
        if dir.starts_with(system) && existing.starts_with("/sys") && system.exists() {
            mount_system_bpffs()?;
            mounted = true;
        } else {
            return Err(BpffsError::NotBpffs {
                path: dir.to_owned(),
                mount: existing,
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| BpffsError::Create {
        path: dir.to_owned(),
        source,
    })?;
    Ok(mounted)
}

fn nearest_existing(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_owned()
}

fn mount_system_bpffs() -> Result<(), BpffsError> {
    let src = CString::new("bpf").expect("no NUL");
    let target = CString::new(SYSTEM_BPFFS).expect("no NUL");
    let opts = CString::new("mode=0700").expect("no NUL");
    // SAFETY: all pointers are valid C strings for the call's duration.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(BpffsError::Mount(std::io::Error::last_os_error()));
    }
    Ok(())
}

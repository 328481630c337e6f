//! tracefs, which attaching a tracepoint needs (for the event ids).

use std::path::Path;

pub const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUG_TRACEFS: &str = "/sys/kernel/debug/tracing";

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error("mounting tracefs at {TRACEFS} (needed for exec tracking): {0}")]
    Mount(#[source] std::io::Error),
}

fn mounted(path: &str) -> bool {
    Path::new(path).join("events").is_dir()
}

/// Mounts tracefs at /sys/kernel/tracing unless it (or the debugfs copy)
/// is there. Returns whether it mounted.
pub fn ensure() -> Result<bool, TracefsError> {
    if mounted(TRACEFS) || mounted(DEBUG_TRACEFS) {
        return Ok(false);
    }
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (fs, target) = (c("tracefs"), c(TRACEFS));
    // SAFETY: valid C strings for the call's duration.
    let rc = unsafe {
        libc::mount(
            fs.as_ptr(),
            target.as_ptr(),
            fs.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(TracefsError::Mount(std::io::Error::last_os_error()));
    }
    Ok(true)
}

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

/// The offset of `field` in the records of tracepoint `category/event`,
/// from its `format` file (the layout differs between kernel versions:
/// sched_process_fork's `child_pid` is at 44 before 6.x's data_loc comms,
/// at 20 after). `None` if tracefs or the field is not there.
pub fn field_offset(category: &str, event: &str, field: &str) -> Option<u32> {
    [TRACEFS, DEBUG_TRACEFS].iter().find_map(|root| {
        let path = Path::new(root)
            .join("events")
            .join(category)
            .join(event)
            .join("format");
        let text = std::fs::read_to_string(path).ok()?;
        parse_offset(&text, field)
    })
}

/// `field:pid_t child_pid;\toffset:20;\tsize:4;...` → 20 for `child_pid`.
fn parse_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl
            .rsplit(|c: char| c.is_whitespace() || c == '*')
            .next()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        rest.trim()
            .strip_prefix("offset:")?
            .split(';')
            .next()?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_come_from_the_format_file() {
        let fork = "name: sched_process_fork\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
            \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
            \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        assert_eq!(parse_offset(fork, "child_pid"), Some(20));
        assert_eq!(parse_offset(fork, "parent_comm"), Some(8));
        assert_eq!(parse_offset(fork, "group_dead"), None);
        let old = "\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
        assert_eq!(parse_offset(old, "child_pid"), Some(44));
        assert_eq!(parse_offset(old, "child_comm"), Some(28));
    }
}

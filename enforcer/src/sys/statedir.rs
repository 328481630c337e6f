//! The state directory holds what local users must not read (blocked
//! flows with command lines, which may carry secrets): it is root's,
//! readable by the `enforcer` group (0750, setgid so that every file made
//! in it gets the group), else root's alone (0700); its files are 0640.
//! Files left by older versions with wider modes are narrowed on start.

use std::{
    io,
    os::unix::fs::{
        DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
    },
    path::Path,
};

/// With the `enforcer` group: rwx for root, r-x for the group, setgid.
pub const DIR_MODE_GROUP: u32 = 0o2750;
/// Without it: root's alone.
pub const DIR_MODE_PRIVATE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o640;

/// Creates `dir` if needed and gives it, and those of `files` that are
/// in it, their owner and modes, before anything is written there.
pub fn prepare(dir: &Path, enforcer_gid: Option<u32>, files: &[&str]) -> io::Result<()> {
    if !dir.exists() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Born closed: nobody else can open anything while it is made.
        std::fs::DirBuilder::new()
            .mode(DIR_MODE_PRIVATE)
            .create(dir)?;
    }
    let meta = std::fs::metadata(dir)?;
    check_own(dir, &meta)?;
    let uid = nix::unistd::Uid::effective().as_raw();
    let gid = enforcer_gid.unwrap_or_else(|| nix::unistd::Gid::effective().as_raw());
    let dir_mode = if enforcer_gid.is_some() {
        DIR_MODE_GROUP
    } else {
        DIR_MODE_PRIVATE
    };
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode))?;
    for name in files {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            // Not followed: a link there is not ours to change.
            Ok(m) if m.is_file() => {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(FILE_MODE))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes a file of the state directory: made anew with `FILE_MODE` (a
/// file left with a wider mode is replaced, not reused).
pub fn write_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    create_file(path)?.write_all(contents)
}

/// Makes a new, empty file with `FILE_MODE` (less what the umask takes).
pub fn create_file(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Refuses a directory that is not the daemon's to close: a shared one
/// (sticky, like /tmp), one another user owns, the root of the tree.
fn check_own(dir: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    let refuse = |why: &str| Err(io::Error::other(why.to_owned()));
    if !meta.is_dir() {
        return refuse("not a directory");
    }
    if meta.mode() & 0o1000 != 0 {
        return refuse("a shared directory (sticky bit); give the daemon a directory of its own");
    }
    if meta.uid() != nix::unistd::Uid::effective().as_raw() {
        return refuse(&format!(
            "owned by uid {}, not by the daemon's user; give the daemon a directory of its own",
            meta.uid()
        ));
    }
    if dir.canonicalize()?.parent().is_none() {
        return refuse("the root directory; give the daemon a directory of its own");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("enforcer-statedir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_new_directory_is_private() {
        let d = scratch("new").join("state");
        prepare(&d, None, &[]).unwrap();
        assert_eq!(mode(&d), DIR_MODE_PRIVATE);
        std::fs::remove_dir_all(d.parent().unwrap()).unwrap();
    }

    #[test]
    fn files_of_older_versions_are_narrowed_and_links_left_alone() {
        let d = scratch("old");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["flows.db", "flows.db-wal", "flows.db-shm", "resolved.json"] {
            std::fs::write(d.join(f), "x").unwrap();
            std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::os::unix::fs::symlink("/etc/hostname", d.join("flows.db-journal")).unwrap();
        let files = [
            "flows.db",
            "flows.db-wal",
            "flows.db-shm",
            "flows.db-journal",
            "resolved.json",
        ];
        prepare(&d, None, &files).unwrap();
        assert_eq!(mode(&d), DIR_MODE_PRIVATE);
        for f in ["flows.db", "flows.db-wal", "flows.db-shm", "resolved.json"] {
            assert_eq!(mode(&d.join(f)), FILE_MODE, "{f}");
        }
        assert_eq!(std::fs::read_to_string(d.join("flows.db")).unwrap(), "x");
        assert!(
            mode(Path::new("/etc/hostname")) & 0o004 != 0,
            "link target untouched"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn shared_directories_are_refused() {
        let e = prepare(&std::env::temp_dir(), None, &[]).unwrap_err();
        assert!(e.to_string().contains("sticky"), "{e}");
        let f = scratch("file");
        std::fs::write(&f, "").unwrap();
        assert!(
            prepare(&f, None, &[])
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
        std::fs::remove_file(&f).unwrap();
    }

    #[test]
    fn written_files_are_0640_even_over_a_wider_one() {
        let d = scratch("write");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("resolved.json");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_file(&p, b"new").unwrap();
        assert_eq!(mode(&p) & 0o027, 0, "no group write, nothing for others");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        std::fs::remove_dir_all(&d).unwrap();
    }
}

//! Who may do what: reads (status, flows, check) for root and members of
//! the `enforcer` group; changes (reload, detach) for root only.
//!
//! A peer is judged by the credentials the kernel recorded when it
//! connected (SO_PEERCRED, SO_PEERGROUPS): what it did afterwards (exit,
//! exec, hand the socket on) does not change them. A peer whose
//! credentials do not carry the group may still be a member by the
//! system's name service (`getgrouplist`: files, LDAP, SSSD), e.g. a user
//! added to the group since they logged in. The CLI reading the flow store
//! without the daemon applies the same rule to itself.

use std::os::fd::{AsRawFd as _, BorrowedFd};

use nix::unistd::{Gid, Group, Uid, User};

pub const GROUP: &str = "enforcer";

/// The gid of group `name` from the system's name service. Blocking: the
/// name service may be a network directory.
pub fn group_gid(name: &str) -> Option<u32> {
    Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// The gid of the `enforcer` group, if the system has one.
pub fn enforcer_gid() -> Option<u32> {
    group_gid(GROUP)
}

/// Credentials of a peer (or of this process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Peer {
    /// The peer of a connected Unix socket, as it was at connect time.
    pub fn of_socket(fd: BorrowedFd<'_>) -> std::io::Result<Peer> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` and `len` describe a writable ucred.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Peer {
            uid: cred.uid,
            gid: cred.gid,
            groups: peer_groups(fd)?,
        })
    }

    /// This process, by its effective ids (those file access uses).
    pub fn current() -> Peer {
        Peer {
            uid: Uid::effective().as_raw(),
            gid: Gid::effective().as_raw(),
            groups: nix::unistd::getgroups()
                .map(|g| g.into_iter().map(Gid::as_raw).collect())
                .unwrap_or_default(),
        }
    }
}

/// SO_PEERGROUPS: the supplementary groups of the peer at connect time.
fn peer_groups(fd: BorrowedFd<'_>) -> std::io::Result<Vec<u32>> {
    // NGROUPS_MAX is 65536; start small and grow when the kernel says so.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` has `len` writable bytes.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || n <= groups.len() {
            return Err(e);
        }
        groups.resize(n, 0);
    }
}

/// The groups the name service lists for `uid` (with `gid`), empty if the
/// uid has no name. Blocking: may ask a network directory.
pub fn name_service_groups(uid: u32, gid: u32) -> Vec<u32> {
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return Vec::new();
    };
    nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
        .map(|g| g.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Change,
}

/// The access the credentials alone give, given the gid of the
/// `enforcer` group if it exists.
pub fn access(peer: &Peer, enforcer_gid: Option<u32>) -> Access {
    if peer.uid == 0 {
        return Access::Change;
    }
    match enforcer_gid {
        Some(g) if peer.gid == g || peer.groups.contains(&g) => Access::Read,
        _ => Access::None,
    }
}

/// The access of `peer`: its credentials, and failing those the name
/// service's groups of its uid (`lookup`, asked only when it can matter).
pub fn decide(
    peer: &Peer,
    enforcer_gid: Option<u32>,
    lookup: impl FnOnce(u32, u32) -> Vec<u32>,
) -> Access {
    match (access(peer, enforcer_gid), enforcer_gid) {
        (Access::None, Some(g)) if lookup(peer.uid, peer.gid).contains(&g) => Access::Read,
        (a, _) => a,
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd as _;

    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn root_changes_group_members_read_others_nothing() {
        let g = Some(998);
        assert_eq!(access(&peer(0, 0, &[]), g), Access::Change);
        assert_eq!(access(&peer(0, 0, &[]), None), Access::Change);
        assert_eq!(access(&peer(1000, 1000, &[27, 998]), g), Access::Read);
        assert_eq!(access(&peer(65534, 998, &[]), g), Access::Read);
        assert_eq!(access(&peer(65534, 65534, &[65534]), g), Access::None);
        assert_eq!(access(&peer(1000, 1000, &[998]), None), Access::None);
    }

    #[test]
    fn the_name_service_grants_reads_and_is_asked_only_when_needed() {
        let g = Some(998);
        let never = |_: u32, _: u32| -> Vec<u32> { panic!("not needed") };
        assert_eq!(decide(&peer(0, 0, &[]), g, never), Access::Change);
        assert_eq!(decide(&peer(7, 998, &[]), g, never), Access::Read);
        assert_eq!(decide(&peer(7, 7, &[]), None, never), Access::None);
        let ldap = |uid: u32, _: u32| if uid == 7 { vec![7, 998] } else { vec![8] };
        assert_eq!(decide(&peer(7, 7, &[]), g, ldap), Access::Read);
        assert_eq!(decide(&peer(8, 8, &[]), g, ldap), Access::None);
        // Changes stay root's whatever the directory says.
        assert_eq!(decide(&peer(7, 998, &[998]), g, ldap), Access::Read);
    }

    #[test]
    fn a_socket_peer_is_this_process_at_connect_time() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let seen = Peer::of_socket(a.as_fd()).unwrap();
        let me = Peer::current();
        assert_eq!((seen.uid, seen.gid), (me.uid, me.gid));
        let mut want = me.groups.clone();
        let mut got = seen.groups.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
    }
}

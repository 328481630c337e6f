//! Who may do what: reads (status, flows, check) for root and members of
//! the `enforcer` group; changes (reload, detach) for root only. The peer
//! is known from SO_PEERCRED; supplementary groups from /proc/PID/status.

pub const GROUP: &str = "enforcer";

/// The gid of `name` in an /etc/group text.
pub fn group_id(etc_group: &str, name: &str) -> Option<u32> {
    etc_group.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Supplementary groups from a /proc/PID/status text.
pub fn groups_of(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Change,
}

/// The access of a peer with `uid`, primary `gid` and `groups`, given the
/// gid of the `enforcer` group if it exists.
pub fn access(uid: u32, gid: u32, groups: &[u32], enforcer_gid: Option<u32>) -> Access {
    if uid == 0 {
        return Access::Change;
    }
    match enforcer_gid {
        Some(g) if gid == g || groups.contains(&g) => Access::Read,
        _ => Access::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_changes_group_members_read_others_nothing() {
        let etc = "root:x:0:\nenforcer:x:998:alice\n";
        let g = group_id(etc, GROUP);
        assert_eq!(g, Some(998));
        assert_eq!(access(0, 0, &[], g), Access::Change);
        assert_eq!(access(1000, 1000, &[27, 998], g), Access::Read);
        assert_eq!(access(65534, 998, &[], g), Access::Read);
        assert_eq!(access(65534, 65534, &[65534], g), Access::None);
        assert_eq!(access(1000, 1000, &[], None), Access::None);
        assert_eq!(groups_of("Name:\tx\nGroups:\t27 998 \n"), vec![27, 998]);
    }
}

//! DNS visibility: which DNS traffic crosses sockets where it can be seen
//! and attributed (names seen on the wire, flows named by what they
//! resolved). resolv.conf, nsswitch's `resolve` (applications then ask
//! systemd-resolved over a Unix socket) and resolved's DNS-over-TLS.

use std::path::{Path, PathBuf};

use super::{Check, Status, forwarder};
use crate::resolve::dns::resolv_conf_upstreams;

const NSSWITCH: &str = "/etc/nsswitch.conf";
const RESOLVED_CONF: &str = "/etc/systemd/resolved.conf";
const RESOLVED_DROP_INS: [&str; 3] = [
    "/usr/lib/systemd/resolved.conf.d",
    "/run/systemd/resolved.conf.d",
    "/etc/systemd/resolved.conf.d",
];
const STUB: &str = "127.0.0.53";
/// systemd-resolved's stub listeners (127.0.0.54: the proxy stub).
const RESOLVED_STUBS: [&str; 2] = [STUB, "127.0.0.54"];

pub fn all(resolv_conf_path: &Path) -> Vec<Check> {
    let text = std::fs::read_to_string(resolv_conf_path).ok();
    let mut checks = vec![
        resolv_conf(resolv_conf_path, text.as_deref()),
        nsswitch(std::fs::read_to_string(NSSWITCH).ok().as_deref()),
    ];
    checks.extend(dns_over_tls(&resolved_files()));
    // A loopback nameserver other than resolved's stubs is a local
    // forwarder, which may send the host's DNS upstream encrypted.
    for ns in text
        .as_deref()
        .map(resolv_conf_upstreams)
        .unwrap_or_default()
    {
        let ip = ns.ip();
        if ip.is_loopback() && !RESOLVED_STUBS.contains(&ip.to_string().as_str()) {
            checks.push(forwarder::judge(ip, forwarder::server_of(ip).as_ref()));
        }
    }
    checks
}

pub fn resolv_conf(path: &Path, text: Option<&str>) -> Check {
    let name = "dns-resolv-conf";
    let Some(text) = text else {
        return Check::new(
            name,
            Status::Warn,
            format!("cannot read {}", path.display()),
        )
        .fix("set resolver.upstreams in the policy");
    };
    let servers = resolv_conf_upstreams(text);
    if servers.is_empty() {
        return Check::new(
            name,
            Status::Warn,
            format!(
                "{} names no nameserver: the daemon cannot resolve banned names",
                path.display()
            ),
        )
        .fix("set resolver.upstreams in the policy, or fix the host's DNS configuration");
    }
    let list = servers
        .iter()
        .map(|s| s.ip().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if servers.iter().any(|s| s.ip().to_string() == STUB) {
        Check::ok(
            name,
            format!(
                "nameserver {list}: systemd-resolved's stub; the daemon asks it as applications \
                 do, and their queries to it cross loopback where they are visible"
            ),
        )
    } else {
        Check::ok(name, format!("nameservers {list}"))
    }
}

/// The sources of the `hosts:` line, without action items like
/// `[!UNAVAIL=return]`; `None` if there is no such line.
pub fn hosts_sources(nsswitch: &str) -> Option<Vec<String>> {
    nsswitch.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let rest = line.trim_start().strip_prefix("hosts:")?;
        Some(
            rest.split_whitespace()
                .filter(|w| !w.starts_with('['))
                .map(str::to_owned)
                .collect(),
        )
    })
}

pub fn nsswitch(text: Option<&str>) -> Check {
    let name = "dns-nsswitch";
    let Some(sources) = text.and_then(hosts_sources) else {
        return Check::new(
            name,
            Status::Info,
            format!("{NSSWITCH} has no hosts: line (glibc then uses dns and files)"),
        );
    };
    let line = sources.join(" ");
    if sources.iter().any(|s| s == "resolve") {
        Check::new(
            name,
            Status::Warn,
            format!(
                "{NSSWITCH} `hosts: {line}` uses resolve: applications ask systemd-resolved over \
                 a Unix socket, so their lookups send no DNS from their own sockets; only \
                 resolved's upstream leg is visible, and it is resolved's, not the application's; \
                 names are still enforced when systemd-resolved runs in the enforced cgroup \
                 (whole-host enforcement includes it)"
            ),
        )
        .fix(
            "include systemd-resolved in the enforced cgroup (whole-host enforcement does), or \
             drop `resolve` from the hosts: line so lookups go to 127.0.0.53 over UDP",
        )
    } else {
        Check::ok(name, format!("`hosts: {line}`: lookups are plain DNS"))
    }
}

/// resolved.conf and its drop-ins, in the order systemd reads them
/// (drop-ins sorted by file name, a later one wins).
fn resolved_files() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    if let Ok(text) = std::fs::read_to_string(RESOLVED_CONF) {
        files.push((PathBuf::from(RESOLVED_CONF), text));
    }
    let mut drop_ins: Vec<PathBuf> = RESOLVED_DROP_INS
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    drop_ins.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    for p in drop_ins {
        if let Ok(text) = std::fs::read_to_string(&p) {
            files.push((p, text));
        }
    }
    files
}

/// The effective `DNSOverTLS=` of the `[Resolve]` section and the file
/// that set it.
pub fn dns_over_tls_setting(files: &[(PathBuf, String)]) -> Option<(String, PathBuf)> {
    let mut found = None;
    for (path, text) in files {
        let mut in_resolve = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_resolve = line == "[Resolve]";
            } else if in_resolve
                && !line.starts_with('#')
                && !line.starts_with(';')
                && let Some((key, value)) = line.split_once('=')
                && key.trim() == "DNSOverTLS"
            {
                found = Some((value.trim().to_owned(), path.clone()));
            }
        }
    }
    found
}

/// Nothing when systemd-resolved has no configuration here.
pub fn dns_over_tls(files: &[(PathBuf, String)]) -> Option<Check> {
    if files.is_empty() {
        return None;
    }
    let name = "dns-over-tls";
    Some(match dns_over_tls_setting(files) {
        Some((value, path)) if matches!(value.as_str(), "yes" | "true" | "1" | "on") => Check::new(
            name,
            Status::Warn,
            format!(
                "systemd-resolved sends DNS over TLS (DNSOverTLS={value} in {}): its upstream \
                 queries are encrypted, so no DNS of this host is visible on the wire",
                path.display()
            ),
        )
        .fix("set DNSOverTLS=no, or keep applications on the 127.0.0.53 stub (drop `resolve` from nsswitch) where their queries stay visible"),
        Some((value, path)) if value == "opportunistic" => Check::new(
            name,
            Status::Warn,
            format!(
                "systemd-resolved tries DNS over TLS (DNSOverTLS=opportunistic in {}): its \
                 upstream queries are encrypted whenever the server supports it",
                path.display()
            ),
        )
        .fix("set DNSOverTLS=no, or keep applications on the 127.0.0.53 stub where their queries stay visible"),
        Some((value, path)) => Check::ok(
            name,
            format!("DNSOverTLS={value} ({}): DNS is sent in clear", path.display()),
        ),
        None => Check::ok(
            name,
            format!("systemd-resolved: DNSOverTLS is not set ({} default: no)", Path::new(RESOLVED_CONF).display()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_names_its_servers_and_the_stub() {
        let c = resolv_conf(
            Path::new("/etc/resolv.conf"),
            Some("# generated\nnameserver 127.0.0.53\noptions edns0\n"),
        );
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("systemd-resolved's stub"));
        let c = resolv_conf(
            Path::new("/etc/resolv.conf"),
            Some("nameserver 10.0.0.2\nnameserver 2001:db8::53\n"),
        );
        assert_eq!(c.detail, "nameservers 10.0.0.2, 2001:db8::53");
        assert_eq!(
            resolv_conf(Path::new("/etc/resolv.conf"), Some("search corp\n")).status,
            Status::Warn
        );
        assert_eq!(
            resolv_conf(Path::new("/etc/resolv.conf"), None).status,
            Status::Warn
        );
    }

    #[test]
    fn nsswitch_resolve_is_found_among_actions_and_comments() {
        let fedora = "# comment with hosts: resolve\npasswd: files\nhosts:      mymachines resolve [!UNAVAIL=return] files myhostname dns\n";
        assert_eq!(
            hosts_sources(fedora).unwrap(),
            ["mymachines", "resolve", "files", "myhostname", "dns"]
        );
        let c = nsswitch(Some(fedora));
        assert_eq!(c.status, Status::Warn);
        assert!(c.fix.unwrap().contains("drop `resolve`"));
        let debian = "hosts:          files dns # resolve would go here\n";
        assert_eq!(hosts_sources(debian).unwrap(), ["files", "dns"]);
        assert_eq!(nsswitch(Some(debian)).status, Status::Ok);
        assert_eq!(nsswitch(Some("passwd: files\n")).status, Status::Info);
        assert_eq!(nsswitch(None).status, Status::Info);
    }

    #[test]
    fn dns_over_tls_takes_the_last_setting_of_the_resolve_section() {
        let f = |p: &str, t: &str| (PathBuf::from(p), t.to_owned());
        let main = f(
            "/etc/systemd/resolved.conf",
            "[Resolve]\n#DNSOverTLS=yes\nDNSOverTLS=no\n",
        );
        assert_eq!(
            dns_over_tls(std::slice::from_ref(&main)).unwrap().status,
            Status::Ok
        );
        let drop_in = f(
            "/etc/systemd/resolved.conf.d/dot.conf",
            "[Other]\nDNSOverTLS=no\n[Resolve]\nDNSOverTLS = yes\n",
        );
        let c = dns_over_tls(&[main.clone(), drop_in]).unwrap();
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("dot.conf"), "{}", c.detail);
        let opportunistic = f("/run/x.conf", "[Resolve]\nDNSOverTLS=opportunistic\n");
        assert_eq!(
            dns_over_tls(&[main, opportunistic]).unwrap().status,
            Status::Warn
        );
        assert_eq!(
            dns_over_tls(&[f("/etc/systemd/resolved.conf", "[Resolve]\n")])
                .unwrap()
                .status,
            Status::Ok
        );
        assert!(dns_over_tls(&[]).is_none());
    }
}

//! `agents`: selectors of AI agent processes, each with what it may reach.
//!
//! A selector names a program by its executable path (`exe`), by the
//! script an interpreter runs (`script`: the first argument after argv[0]
//! that is not an option, so `node …/cli.js` and `python -m aider`), or
//! by its whole command line (`cmdline`). Patterns are globs:
//! - `*` any run of characters but `/` (in `cmdline`: any run at all),
//!   `?` one such character, `**` any run including `/`, `**/` any
//!   directories (none included), `[abc]`, `[!abc]`, `{a,b}`;
//! - a leading `~/` is any user's home directory (`/home/<user>/` or `/root/`).
//!
//! The path is the one execve was given: a symlink is matched by its own
//! name (`~/.local/bin/claude`), not by its target.
//!
//! Selectors merge across the main file and drop-ins by `name`: a drop-in
//! that names an existing selector adds to its lists (a company opens its
//! gateway to a default selector this way) and may change its action.

use std::{fmt, str::FromStr};

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    DomainPattern, PolicyError, Source,
    ports::{CidrRule, PortSpec, PortTarget},
    raw::string_value,
};

/// What happens to a contained process's traffic outside its allow list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AgentAction {
    /// EPERM for everything outside the allow list.
    #[default]
    Deny,
    /// Report what would be denied; deny nothing.
    Audit,
    /// No network at all (the allow list is ignored; no DNS either).
    DenyAll,
}

impl AgentAction {
    pub const fn as_kernel(self) -> u32 {
        match self {
            AgentAction::Deny => enforcer_common::agents::ACTION_DENY,
            AgentAction::Audit => enforcer_common::agents::ACTION_AUDIT,
            AgentAction::DenyAll => enforcer_common::agents::ACTION_DENY_ALL,
        }
    }
}

impl fmt::Display for AgentAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AgentAction::Deny => "deny",
            AgentAction::Audit => "audit",
            AgentAction::DenyAll => "deny-all",
        })
    }
}

impl<'de> Deserialize<'de> for AgentAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const ACTIONS: &[&str] = &["deny", "audit", "deny-all"];
        let s = String::deserialize(d)?;
        match s.as_str() {
            "deny" => Ok(AgentAction::Deny),
            "audit" => Ok(AgentAction::Audit),
            "deny-all" => Ok(AgentAction::DenyAll),
            other => Err(serde::de::Error::unknown_variant(other, ACTIONS)),
        }
    }
}

/// Which string a pattern is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PatternKind {
    Exe,
    Script,
    Cmdline,
}

impl PatternKind {
    pub const fn field(self) -> &'static str {
        match self {
            PatternKind::Exe => "exe",
            PatternKind::Script => "script",
            PatternKind::Cmdline => "cmdline",
        }
    }
}

/// A glob as written, checked when parsed; `regex` translates it for one
/// kind of pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Glob(pub String);

impl FromStr for Glob {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("an empty pattern matches nothing".into());
        }
        if s.len() > 512 {
            return Err(format!("pattern {s:?} is longer than 512 bytes"));
        }
        if s.bytes().any(|b| b == 0 || b == b'\n') {
            return Err(format!("pattern {s:?} holds a NUL or newline"));
        }
        // Both translations must succeed (brackets and braces closed) and
        // be expressions the automaton builder takes: errors here carry
        // the field, later ones would not.
        for kind in [PatternKind::Exe, PatternKind::Cmdline] {
            let regex = to_regex(s, kind)?;
            regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(false)
                .build()
                .parse(&regex)
                .map_err(|e| format!("pattern {s:?}: not a glob this matcher takes: {e}"))?;
        }
        if !s.is_ascii() {
            return Err(format!(
                "pattern {s:?}: only ASCII is supported (a non-ASCII byte cannot be one class member)"
            ));
        }
        Ok(Glob(s.to_owned()))
    }
}

string_value!(
    Glob,
    "description": "A glob: * (not across / except in cmdline), ?, ** (across /), **/ (any directories), [abc], [!abc], {a,b}; a leading ~/ is any home directory."
);

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Glob {
    /// The regular expression (regex-syntax, bytes, anchored by the
    /// caller) this glob stands for in a pattern of `kind`.
    pub fn regex(&self, kind: PatternKind) -> String {
        to_regex(&self.0, kind).expect("checked when parsed")
    }
}

/// Any user's home directory, for a leading `~/`: `/home/<user>`,
/// `/home/<domain>/<user>` (sssd), `/var/home/<user>` (Fedora Atomic),
/// `/root`.
const HOME: &str = "(?:/home/[^/]+|/home/[^/]+/[^/]+|/var/home/[^/]+|/root)/";

fn to_regex(glob: &str, kind: PatternKind) -> Result<String, String> {
    let (star, one) = match kind {
        PatternKind::Cmdline => (".*", "."),
        _ => ("[^/]*", "[^/]"),
    };
    let mut out = String::new();
    let mut rest = glob;
    if let Some(r) = rest.strip_prefix("~/") {
        out.push_str(HOME);
        rest = r;
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    let mut in_brace = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                if chars.get(i + 2) == Some(&'/') {
                    out.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    out.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => out.push_str(star),
            '?' => out.push_str(one),
            '[' => {
                let close = chars[i + 1..]
                    .iter()
                    .skip(1)
                    .position(|&c| c == ']')
                    .map(|p| i + 2 + p)
                    .ok_or_else(|| format!("pattern {glob:?}: '[' without a closing ']'"))?;
                let mut body: String = chars[i + 1..close].iter().collect();
                let negate = body.starts_with('!');
                if negate {
                    body.remove(0);
                }
                out.push('[');
                if negate {
                    out.push('^');
                }
                for b in body.chars() {
                    if matches!(b, '\\' | '[' | ']' | '^' | '&' | '~') {
                        out.push('\\');
                    }
                    out.push(b);
                }
                out.push(']');
                i = close + 1;
                continue;
            }
            '{' if !in_brace => {
                in_brace = true;
                out.push_str("(?:");
            }
            '{' => return Err(format!("pattern {glob:?}: nested '{{' is not supported")),
            ',' if in_brace => out.push('|'),
            '}' if in_brace => {
                in_brace = false;
                out.push(')');
            }
            other => out.push_str(&regex_syntax::escape(other.encode_utf8(&mut [0; 4]))),
        }
        i += 1;
    }
    if in_brace {
        return Err(format!("pattern {glob:?}: '{{' without a closing '}}'"));
    }
    Ok(out)
}

/// One `allow` entry of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllowEntry {
    /// A network, optionally only on a port (and protocol).
    Net { net: IpNet, port: Option<PortSpec> },
    /// An exact name or a `*.suffix` wildcard, every port: the addresses
    /// the host's DNS servers return for it.
    Name(DomainPattern),
    /// A Unix-domain socket, `unix:/absolute/path` or `unix:@abstract`:
    /// the name's bytes as `connect`/`sendto` give them (an abstract name
    /// with its leading NUL).
    Unix(Vec<u8>),
}

/// Parses the part after `unix:`.
fn unix_name(s: &str, rest: &str) -> Result<Vec<u8>, String> {
    use enforcer_common::agents::UNIX_PATH_MAX;
    let name: Vec<u8> = if let Some(abs) = rest.strip_prefix('@') {
        if abs.is_empty() {
            return Err(format!(
                "{s:?}: an abstract socket name after '@' is missing"
            ));
        }
        std::iter::once(0).chain(abs.bytes()).collect()
    } else if let Some(after_root) = rest.strip_prefix('/') {
        if after_root
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(format!(
                "{s:?}: write the path in its plain form (no '.', '..', '//' or final '/'): the kernel \
                 compares the bytes a program gives"
            ));
        }
        rest.as_bytes().to_vec()
    } else {
        return Err(format!(
            "{s:?}: a Unix-domain socket is an absolute path (\"unix:/run/gw.sock\") or an \
             abstract name (\"unix:@name\")"
        ));
    };
    if name.contains(&0) && name[0] != 0 {
        return Err(format!("{s:?}: a path cannot contain NUL"));
    }
    if name.len() > UNIX_PATH_MAX {
        return Err(format!(
            "{s:?}: longer than a Unix-domain socket name can be ({UNIX_PATH_MAX} bytes)"
        ));
    }
    Ok(name)
}

impl FromStr for AllowEntry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("unix:") {
            return unix_name(s, rest).map(AllowEntry::Unix);
        }
        let bare = s
            .strip_suffix("/tcp")
            .or_else(|| s.strip_suffix("/udp"))
            .unwrap_or(s);
        let looks_like_address = s.starts_with('[')
            || s.starts_with("*:")
            || s.matches(':').count() > 1
            || bare
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | '/' | ':'));
        if looks_like_address {
            return match s.parse::<CidrRule>()? {
                CidrRule::Plain(c) => Ok(AllowEntry::Net {
                    net: c.0,
                    port: None,
                }),
                CidrRule::Port(p) => match p.target {
                    PortTarget::Net(net) => Ok(AllowEntry::Net {
                        net,
                        port: Some(p.spec),
                    }),
                    PortTarget::Any => Err(format!(
                        "{s:?}: every destination on a port would let the agent reach any host there; \
                         name the networks (\"10.0.0.0/8:443\")"
                    )),
                    PortTarget::Domain(_) => unreachable!("CIDR rules carry no names"),
                },
            };
        }
        if s.contains(':') {
            return Err(format!(
                "{s:?}: a name with a port is not supported in an agent's allow list; \
                 write the name alone (every port) or its network with a port (\"10.0.0.5:443\")"
            ));
        }
        match s.parse::<DomainPattern>()? {
            DomainPattern::LabelTail(_) => Err(format!(
                "{s:?}: *-tail wildcards are not supported in an agent's allow list; \
                 use an exact name or *.suffix"
            )),
            d => Ok(AllowEntry::Name(d)),
        }
    }
}

string_value!(
    AllowEntry,
    "description": "What a contained agent may reach: an exact name or *.suffix wildcard (the addresses the host's DNS servers return for it, every port), a network (10.0.0.0/8, 2001:db8::/32), or an address or network with a port (10.0.0.5:443, [2001:db8::1]:443/tcp), or a Unix-domain socket (unix:/run/gateway.sock, unix:@abstract-name; none is allowed otherwise)."
);

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowEntry::Name(d) => d.fmt(f),
            AllowEntry::Unix(name) => match name.split_first() {
                Some((0, abs)) => write!(f, "unix:@{}", String::from_utf8_lossy(abs)),
                _ => write!(f, "unix:{}", String::from_utf8_lossy(name)),
            },
            AllowEntry::Net { net, port: None } => net.fmt(f),
            AllowEntry::Net {
                net,
                port: Some(spec),
            } => match net {
                IpNet::V4(_) => write!(f, "{net}:{spec}"),
                IpNet::V6(_) => write!(f, "[{net}]:{spec}"),
            },
        }
    }
}

/// A selector's name: what flows, logs and `enforcer agents` call it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentName(pub String);

impl FromStr for AgentName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(AgentName(s.to_owned()))
        } else {
            Err(format!(
                "agent name {s:?}: 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
            ))
        }
    }
}

string_value!(
    AgentName,
    "description": "The selector's name (1-64 letters, digits, -, _ or .): a drop-in naming an existing selector adds to it."
);

/// One `agents` entry as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub name: AgentName,
    /// Executable paths as execve was given them.
    #[serde(default)]
    pub exe: Vec<Glob>,
    /// The script an interpreter runs: the first argument after argv[0]
    /// that does not start with `-` (`-m module` gives the module).
    #[serde(default)]
    pub script: Vec<Glob>,
    /// The whole command line, arguments joined by single spaces.
    #[serde(default)]
    pub cmdline: Vec<Glob>,
    /// What the agent, and everything it starts, may reach. Loopback and
    /// local proxies are not implied. The host's DNS servers on port 53
    /// are (names are resolved by them), except for `deny-all`.
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
    /// `deny` (default), `audit` or `deny-all`.
    #[serde(default)]
    pub action: Option<AgentAction>,
    /// Where the selector comes from (documentation, an issue, a release
    /// note): shown by `enforcer agents`.
    #[serde(default)]
    pub source: Option<String>,
}

/// A merged selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub name: String,
    pub exe: Vec<Glob>,
    pub script: Vec<Glob>,
    pub cmdline: Vec<Glob>,
    pub allow: Vec<AllowEntry>,
    pub action: AgentAction,
    pub source: Option<String>,
    /// The file that defined it first.
    pub defined_in: Source,
}

impl Agent {
    /// Its patterns, each with its kind.
    pub fn patterns(&self) -> impl Iterator<Item = (PatternKind, &Glob)> {
        fn of(kind: PatternKind, list: &[Glob]) -> impl Iterator<Item = (PatternKind, &Glob)> {
            list.iter().map(move |g| (kind, g))
        }
        of(PatternKind::Exe, &self.exe)
            .chain(of(PatternKind::Script, &self.script))
            .chain(of(PatternKind::Cmdline, &self.cmdline))
    }

    pub fn names(&self) -> impl Iterator<Item = &DomainPattern> {
        self.allow.iter().filter_map(|a| match a {
            AllowEntry::Name(d) => Some(d),
            AllowEntry::Net { .. } | AllowEntry::Unix(_) => None,
        })
    }
}

fn union<T: PartialEq>(into: &mut Vec<T>, more: Vec<T>) {
    for x in more {
        if !into.contains(&x) {
            into.push(x);
        }
    }
}

/// Merges one file's `agents` into the selectors so far.
pub fn merge(
    into: &mut Vec<Agent>,
    source: &Source,
    raw: Vec<RawAgent>,
) -> Result<(), PolicyError> {
    let mut seen = std::collections::HashSet::new();
    for (i, r) in raw.into_iter().enumerate() {
        if !seen.insert(r.name.0.clone()) {
            return Err(PolicyError::Merged {
                origin: source.clone(),
                field: format!("agents[{i}].name"),
                message: format!("{:?} is defined twice in this file", r.name.0),
            });
        }
        match into.iter_mut().find(|a| a.name == r.name.0) {
            Some(a) => {
                union(&mut a.exe, r.exe);
                union(&mut a.script, r.script);
                union(&mut a.cmdline, r.cmdline);
                union(&mut a.allow, r.allow);
                if let Some(action) = r.action {
                    a.action = action;
                }
                if r.source.is_some() {
                    a.source = r.source;
                }
            }
            None => into.push(Agent {
                name: r.name.0,
                exe: r.exe,
                script: r.script,
                cmdline: r.cmdline,
                allow: r.allow,
                action: r.action.unwrap_or_default(),
                source: r.source,
                defined_in: source.clone(),
            }),
        }
    }
    Ok(())
}

/// Checks the merged selectors: each matches something, and the limits
/// the kernel maps hold.
pub fn check(agents: &[Agent]) -> Result<(), PolicyError> {
    use enforcer_common::agents::{MAX_NAME_SELECTORS, MAX_SELECTORS};
    if agents.len() > MAX_SELECTORS as usize {
        let last = &agents[MAX_SELECTORS as usize];
        return Err(PolicyError::Merged {
            origin: last.defined_in.clone(),
            field: "agents".into(),
            message: format!(
                "{} selectors; at most {MAX_SELECTORS} fit the kernel maps",
                agents.len()
            ),
        });
    }
    // What the kernel maps hold, checked here so that a policy that does
    // not fit is refused whole rather than half-written.
    use enforcer_common::agents::{MAX_ALLOW, MAX_NAMES, MAX_UNIX};
    let count = |f: &dyn Fn(&AllowEntry) -> bool| -> usize {
        agents
            .iter()
            .flat_map(|a| a.allow.iter())
            .filter(|e| f(e))
            .count()
    };
    let v4 = count(&|e| {
        matches!(
            e,
            AllowEntry::Net {
                net: IpNet::V4(_),
                ..
            }
        )
    });
    let v6 = count(&|e| {
        matches!(
            e,
            AllowEntry::Net {
                net: IpNet::V6(_),
                ..
            }
        )
    });
    let names = count(&|e| matches!(e, AllowEntry::Name(_)));
    let unix = count(&|e| matches!(e, AllowEntry::Unix(_)));
    for (what, n, max) in [
        ("IPv4 networks", v4, MAX_ALLOW),
        ("IPv6 networks", v6, MAX_ALLOW),
        ("names", names, MAX_NAMES),
        ("Unix-domain sockets", unix, MAX_UNIX),
    ] {
        if n > max as usize {
            return Err(PolicyError::Merged {
                origin: agents[0].defined_in.clone(),
                field: "agents[].allow".into(),
                message: format!("{n} {what} in allow lists; the kernel maps hold {max}"),
            });
        }
    }
    for a in agents {
        if a.patterns().next().is_none() {
            return Err(PolicyError::Merged {
                origin: a.defined_in.clone(),
                field: format!("agents[{}]", a.name),
                message: "no exe, script or cmdline pattern: it would contain nothing".into(),
            });
        }
    }
    // A name's learned addresses carry a bit per selector.
    if let Some(a) = agents
        .iter()
        .filter(|a| a.names().next().is_some())
        .nth(MAX_NAME_SELECTORS as usize)
    {
        return Err(PolicyError::Merged {
            origin: a.defined_in.clone(),
            field: format!("agents[{}].allow", a.name),
            message: format!(
                "names in allow lists are supported for {MAX_NAME_SELECTORS} selectors; \
                 allow this one's networks instead"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_translate_per_kind() {
        let g: Glob = "~/.local/share/claude/versions/*".parse().unwrap();
        assert_eq!(
            g.regex(PatternKind::Exe),
            format!("{HOME}\\.local/share/claude/versions/[^/]*")
        );
        let g: Glob = "**/@anthropic-ai/claude-code/cli.js".parse().unwrap();
        assert_eq!(
            g.regex(PatternKind::Script),
            "(?:.*/)?@anthropic\\-ai/claude\\-code/cli\\.js"
        );
        let g: Glob = "node *claude*".parse().unwrap();
        assert_eq!(g.regex(PatternKind::Cmdline), "node .*claude.*");
        let g: Glob = "/opt/{a,b}/[!x]?".parse().unwrap();
        assert_eq!(g.regex(PatternKind::Exe), "/opt/(?:a|b)/[^x][^/]");
        assert!("/opt/[ab".parse::<Glob>().is_err());
        assert!("/opt/[!]x]".parse::<Glob>().is_err());
        assert!("/opt/ä".parse::<Glob>().is_err());
        assert!("/opt/{a,b".parse::<Glob>().is_err());
        assert!("".parse::<Glob>().is_err());
    }

    #[test]
    fn unix_domain_sockets_are_absolute_paths_or_abstract_names() {
        let e = |s: &str| s.parse::<AllowEntry>();
        assert_eq!(
            e("unix:/run/gw.sock"),
            Ok(AllowEntry::Unix(b"/run/gw.sock".to_vec()))
        );
        assert_eq!(e("unix:@gw"), Ok(AllowEntry::Unix(b"\0gw".to_vec())));
        for (bad, says) in [
            ("unix:gw.sock", "absolute path"),
            ("unix:", "absolute path"),
            ("unix:@", "missing"),
            ("unix:/run/../tmp/x", "plain form"),
            ("unix:/run//x", "plain form"),
            ("unix:/run/./x", "plain form"),
        ] {
            let err = e(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let long = format!("unix:/{}", "a".repeat(108));
        assert!(e(&long).unwrap_err().contains("108 bytes"));
        assert!(e(&format!("unix:/{}", "a".repeat(107))).is_ok());
        // Shown as written.
        for s in ["unix:/run/gw.sock", "unix:@gw"] {
            assert_eq!(e(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn allow_entries_parse_names_networks_and_ports() {
        let e = |s: &str| s.parse::<AllowEntry>();
        assert!(matches!(e("gateway.corp.example"), Ok(AllowEntry::Name(_))));
        assert!(matches!(e("*.corp.example"), Ok(AllowEntry::Name(_))));
        assert!(matches!(
            e("10.0.0.0/8"),
            Ok(AllowEntry::Net { port: None, .. })
        ));
        assert!(matches!(
            e("10.0.0.5:443"),
            Ok(AllowEntry::Net { port: Some(_), .. })
        ));
        assert!(matches!(
            e("2001:db8::/32"),
            Ok(AllowEntry::Net { port: None, .. })
        ));
        assert!(matches!(
            e("[2001:db8::1]:443/tcp"),
            Ok(AllowEntry::Net { port: Some(_), .. })
        ));
        assert!(e("*:443").unwrap_err().contains("any host"));
        assert!(
            e("gateway.corp.example:443")
                .unwrap_err()
                .contains("with a port")
        );
        assert!(e("*-api.corp.example").unwrap_err().contains("*-tail"));
        assert!(e("10.0.0.300").is_err());
        assert_eq!(
            e("[2001:db8::1]:443/tcp").unwrap().to_string(),
            "[2001:db8::1/128]:443/tcp"
        );
    }
}

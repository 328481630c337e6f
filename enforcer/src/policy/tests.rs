use super::*;

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(text, Source::File("p.json".into()))
}

/// (line, column, field, message) of a rejected policy.
fn rejection(text: &str) -> (usize, usize, String, String) {
    match parse(text) {
        Err(PolicyError::Invalid {
            line,
            column,
            field,
            message,
            ..
        }) => (line, column, field, message),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn embedded_default_has_anthropic_ranges() {
    let p = Policy::embedded();
    assert_eq!(p.mode, Mode::Enforce);
    for net in ["160.79.104.0/23", "2607:6bc0::/48"] {
        let net: IpNet = net.parse().unwrap();
        assert!(p.deny.cidr_values().any(|c| *c == net), "{net} missing");
    }
    let name = DomainPattern::Exact("api.anthropic.com".into());
    assert!(p.deny.domain_values().any(|d| *d == name));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn issue_example_parses() {
    let p = parse(
        r#"{"version": 1, "mode": "enforce",
   "deny":  {"domains": ["api.anthropic.com", "*.openai.com"], "cidrs": ["160.79.104.0/23", "2607:6bc0::/48"]},
   "allow": {"domains": [], "cidrs": ["10.20.0.0/16"]}}"#,
    )
    .unwrap();
    assert_eq!(p.deny.cidrs.len(), 2);
    assert_eq!(
        p.allow.cidr_values().copied().collect::<Vec<_>>(),
        vec!["10.20.0.0/16".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        p.deny.domains[1].value,
        DomainPattern::Wildcard("openai.com".into())
    );
    assert_eq!(p.deny.domains[1].origin, "p.json: deny.domains[1]");
    // The exception overlaps no ban in this example.
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("allow 10.20.0.0/16 overlaps no banned network"));
}

#[test]
fn bare_addresses_are_host_routes_and_mode_defaults_to_enforce() {
    let p = parse(r#"{"version":1,"deny":{"cidrs":["1.2.3.4","::1"]}}"#).unwrap();
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(
        p.deny.cidrs[0].value,
        "1.2.3.4/32".parse::<IpNet>().unwrap()
    );
    assert_eq!(p.deny.cidrs[1].value, "::1/128".parse::<IpNet>().unwrap());
}

#[test]
fn unknown_field_names_line_and_path() {
    let (line, _, field, message) =
        rejection("{\"version\": 1,\n \"deny\": {\n  \"cidr\": [\"1.2.3.0/24\"]}}");
    assert_eq!(line, 3);
    assert_eq!(field, "deny.cidr");
    assert!(message.contains("unknown field `cidr`"), "{message}");
}

#[test]
fn bad_cidr_names_its_index() {
    let (line, _, field, message) = rejection(
        "{\"version\": 1,\n \"deny\": {\"cidrs\": [\"1.2.3.0/24\",\n   \"300.1.1.0/24\"]}}",
    );
    assert_eq!(line, 3);
    assert_eq!(field, "deny.cidrs[1]");
    assert!(
        message.contains("invalid CIDR \"300.1.1.0/24\""),
        "{message}"
    );
}

#[test]
fn host_bits_are_rejected_with_a_suggestion() {
    let (_, _, field, message) = rejection(r#"{"version":1,"allow":{"cidrs":["10.20.1.1/16"]}}"#);
    assert_eq!(field, "allow.cidrs[0]");
    assert!(message.contains("did you mean 10.20.0.0/16"), "{message}");
}

#[test]
fn bad_mode_lists_the_valid_ones() {
    let (line, column, field, message) = rejection("{\"version\":1,\n\"mode\":\"block\"}");
    assert_eq!((line, field.as_str()), (2, "mode"));
    assert!(column > 0);
    assert!(message.contains("unknown variant `block`"), "{message}");
    assert!(
        message.contains("enforce") && message.contains("audit"),
        "{message}"
    );
}

#[test]
fn bad_domain_and_version_and_syntax() {
    let (_, _, field, message) =
        rejection(r#"{"version":1,"deny":{"domains":["ok.com","api.*.com"]}}"#);
    assert_eq!(field, "deny.domains[1]");
    assert!(message.contains("wildcard"), "{message}");

    let (_, _, field, message) = rejection(r#"{"version":2}"#);
    assert_eq!(field, "version");
    assert!(
        message.contains("unsupported policy version 2"),
        "{message}"
    );

    let (_, _, _, message) = rejection(r#"{"deny":{}}"#);
    assert!(message.contains("missing field `version`"), "{message}");

    let (line, _, _, _) = rejection("{\"version\":1,\n\n\"deny\": {\"cidrs\": [}");
    assert_eq!(line, 3);

    let (_, _, field, message) = rejection(r#"{"version":1} {"#);
    assert_eq!(field, "(after the policy)");
    assert!(message.contains("trailing characters"), "{message}");
}

#[test]
fn error_display_is_file_line_column_field() {
    let err = parse("{\"version\":1,\n\"mode\":\"x\"}").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("p.json:2:"), "{text}");
    assert!(text.contains(": mode: unknown variant"), "{text}");
}

#[test]
fn resolver_defaults_and_settings() {
    let p = parse(r#"{"version":1}"#).unwrap();
    assert_eq!(p.resolver, ResolverSettings::default());
    let p = parse(
        r#"{"version":1,"resolver":{"upstreams":["127.0.0.1:5353","::1"],"min_ttl_s":1,"max_ttl_s":60,"grace_s":0,"concurrency":4}}"#,
    )
    .unwrap();
    assert_eq!(
        p.resolver.upstreams,
        Some(vec![
            "127.0.0.1:5353".parse().unwrap(),
            "[::1]:53".parse().unwrap()
        ])
    );
    assert_eq!((p.resolver.min_ttl_s, p.resolver.max_ttl_s), (1, 60));
    assert_eq!((p.resolver.grace_s, p.resolver.concurrency), (0, 4));
}

#[test]
fn resolver_errors_name_the_section() {
    let (line, _, field, message) =
        rejection("{\"version\":1,\n\"resolver\":{\"min_ttl_s\":90,\n \"max_ttl_s\":60}}");
    assert_eq!((line, field.as_str()), (3, "resolver"));
    assert!(
        message.contains("min_ttl_s (90) is greater than max_ttl_s (60)"),
        "{message}"
    );
    let (_, _, field, message) =
        rejection(r#"{"version":1,"resolver":{"upstreams":["dns.example:53"]}}"#);
    assert_eq!(field, "resolver.upstreams[0]");
    assert!(message.contains("invalid upstream"), "{message}");
    let (_, _, _, message) = rejection(r#"{"version":1,"resolver":{"concurrency":0}}"#);
    assert!(message.contains("concurrency is 0"), "{message}");
    let (_, _, field, _) = rejection(r#"{"version":1,"resolver":{"ttl":5}}"#);
    assert_eq!(field, "resolver.ttl");
}

#[test]
fn allow_domains_shadowing_nothing_warn() {
    let p = parse(r#"{"version":1,"deny":{"domains":["*.corp.example"]},"allow":{"domains":["llm.corp.example","other.example"]}}"#).unwrap();
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("other.example"));
}

/// A directory with a main policy and drop-ins, removed on drop.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("enforcer-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("policy.d")).unwrap();
        Dir(d)
    }
    fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// A policy file that bans `cidr` and nothing else.
fn banning(cidr: &str) -> String {
    format!(r#"{{"version":1,"deny":{{"cidrs":["{cidr}"]}}}}"#)
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn drop_ins_merge_in_lexical_order() {
    let d = Dir::new("merge");
    let main = d.write(
        "policy.json",
        r#"{"version":1,"mode":"enforce","deny":{"cidrs":["1.1.1.0/24"],"domains":["a.example"]},"resolver":{"grace_s":10}}"#,
    );
    d.write("policy.d/20-late.json", r#"{"version":1,"mode":"enforce","resolver":{"grace_s":30},"deny":{"domains":["c.example","a.example"]}}"#);
    d.write("policy.d/10-early.json", r#"{"version":1,"mode":"audit","resolver":{"grace_s":20},"deny":{"domains":["b.example"]}}"#);
    d.write("policy.d/README", "not json, not read");
    let p = Policy::resolve(Some(&main)).unwrap();
    let names: Vec<String> = p.deny.domain_values().map(ToString::to_string).collect();
    assert_eq!(
        names,
        ["a.example", "b.example", "c.example"],
        "union, first kept"
    );
    assert_eq!(p.mode, Mode::Enforce, "the later file wins");
    assert_eq!(p.resolver.grace_s, 30);
    assert_eq!(p.sources.len(), 3);
    assert!(
        p.deny.domains[1]
            .origin
            .to_string()
            .contains("10-early.json: deny.domains[0]")
    );
}

#[test]
fn a_bad_drop_in_rejects_the_whole_policy_and_names_itself() {
    let d = Dir::new("bad");
    let main = d.write("policy.json", r#"{"version":1}"#);
    d.write("policy.d/10-ok.json", &banning("1.1.1.0/24"));
    d.write(
        "policy.d/20-bad.json",
        "{\"version\":1,\n\"deny\":{\"cidrs\":[\"1.1.1.1/24\"]}}",
    );
    let err = Policy::resolve(Some(&main)).unwrap_err().to_string();
    assert!(err.contains("20-bad.json:2:"), "{err}");
    assert!(
        err.contains("deny.cidrs[0]: CIDR \"1.1.1.1/24\" has host bits set"),
        "{err}"
    );

    d.write("policy.d/20-bad.json", r#"{"version":1,"drop_in_dir":"x"}"#);
    let err = Policy::resolve(Some(&main)).unwrap_err().to_string();
    assert!(
        err.contains("only the main policy file may set drop_in_dir"),
        "{err}"
    );

    d.write(
        "policy.d/20-bad.json",
        r#"{"version":1,"resolver":{"min_ttl_s":7200}}"#,
    );
    let err = Policy::resolve(Some(&main)).unwrap_err().to_string();
    assert!(
        err.contains("20-bad.json: resolver: after merging, min_ttl_s (7200)"),
        "{err}"
    );
}

#[test]
fn drop_in_dir_is_relative_to_the_main_file() {
    assert_eq!(
        Policy::drop_in_dir(Some(Path::new("/etc/enforcer/policy.json")), None),
        Path::new("/etc/enforcer/policy.d")
    );
    assert_eq!(
        Policy::drop_in_dir(
            Some(Path::new("/srv/p/main.json")),
            Some(Path::new("extra"))
        ),
        Path::new("/srv/p/extra")
    );
    assert_eq!(
        Policy::drop_in_dir(None, None),
        Path::new("/etc/enforcer/policy.d")
    );
}

#[test]
fn checked_in_schema_matches_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.schema.json");
    let generated = json_schema();
    if std::env::var_os("ENFORCER_WRITE_DOCS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/policy.schema.json is out of date: regenerate it with \
         ENFORCER_WRITE_DOCS=1 cargo test -p enforcer checked_in_schema"
    );
}

#[test]
fn report_settings_and_a_metrics_address_off_the_host_is_refused() {
    let p = parse(r#"{"version":1,"report":{"retention_days":7,"max_flows":500,"metrics_listen":"127.0.0.1:9464"}}"#).unwrap();
    assert_eq!(p.report.retention_days, 7);
    assert_eq!(p.report.max_flows, 500);
    assert_eq!(
        p.report.metrics_listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(
        parse(r#"{"version":1}"#).unwrap().report,
        ReportSettings::default()
    );
    let (_, _, field, message) =
        rejection(r#"{"version":1,"report":{"metrics_listen":"0.0.0.0:9464"}}"#);
    assert_eq!(field, "report.metrics_listen");
    assert!(message.contains("not a loopback address"), "{message}");
}

#[test]
fn an_array_or_null_where_an_object_belongs_is_rejected() {
    // serde's derived structs read `[]` as a struct with every field
    // defaulted: `"deny": []` was an empty ban list.
    for (text, field) in [
        (
            r#"{"version":1,"deny":{"cidrs":["1.2.3.0/24"]},"allow":[]}"#,
            "allow",
        ),
        (r#"{"version":1,"deny":[]}"#, "deny"),
        (
            r#"{"version":1,"deny":[["a.example"],["1.2.3.0/24"]]}"#,
            "deny",
        ),
        (r#"{"version":1,"resolver":[]}"#, "resolver"),
        (r#"{"version":1,"resolver":null}"#, "resolver"),
        (r#"{"version":1,"report":[]}"#, "report"),
        (r#"{"version":1,"deny":"1.2.3.0/24"}"#, "deny"),
    ] {
        let (line, column, got, message) = rejection(text);
        assert_eq!(got, field, "{text}");
        assert!(
            message.contains("expected a JSON object"),
            "{text}: {message}"
        );
        assert_eq!(line, 1);
        assert!(column > 0);
    }
    let (line, _, field, message) = rejection("\n[1]");
    assert_eq!((line, field.as_str()), (2, "(top level)"));
    assert!(
        message.contains("invalid type: sequence, expected a JSON object"),
        "{message}"
    );
    let (_, _, _, message) = rejection("[]");
    assert!(message.contains("expected a JSON object"), "{message}");
    // Inside an object section, paths still reach the field.
    let (line, _, field, message) =
        rejection("{\"version\":1,\n\"resolver\":{\n\"upstreams\":[\"x\"]}}");
    assert_eq!((line, field.as_str()), (3, "resolver.upstreams[0]"));
    assert!(message.contains("invalid upstream"), "{message}");
}

#[test]
fn mode_is_a_string_only() {
    for text in [
        r#"{"version":1,"mode":{"audit":null}}"#,
        r#"{"version":1,"mode":["audit"]}"#,
    ] {
        let (_, _, field, message) = rejection(text);
        assert_eq!(field, "mode", "{text}");
        assert!(message.contains("expected a string"), "{text}: {message}");
    }
    assert_eq!(
        parse(r#"{"version":1,"mode":"audit"}"#).unwrap().mode,
        Mode::Audit
    );
}

#[test]
fn leading_zero_octets_are_ambiguous_everywhere_an_address_is_read() {
    for (text, field, octet) in [
        (
            r#"{"version":1,"deny":{"cidrs":["127.077.0.0/16"]}}"#,
            "deny.cidrs[0]",
            "077",
        ),
        (
            r#"{"version":1,"allow":{"cidrs":["010.0.0.1"]}}"#,
            "allow.cidrs[0]",
            "010",
        ),
        (
            r#"{"version":1,"deny":{"cidrs":["::ffff:10.01.0.0/120"]}}"#,
            "deny.cidrs[0]",
            "01",
        ),
        (
            r#"{"version":1,"resolver":{"upstreams":["10.0.0.02:53"]}}"#,
            "resolver.upstreams[0]",
            "02",
        ),
        (
            r#"{"version":1,"resolver":{"upstreams":["010.0.0.2"]}}"#,
            "resolver.upstreams[0]",
            "010",
        ),
        (
            r#"{"version":1,"report":{"metrics_listen":"127.000.0.1:9464"}}"#,
            "report.metrics_listen",
            "000",
        ),
        (
            r#"{"version":1,"nat64_prefixes":["64:ff9b:1::0.0.00.0/96"]}"#,
            "nat64_prefixes[0]",
            "00",
        ),
    ] {
        let (_, _, got, message) = rejection(text);
        assert_eq!(got, field, "{text}");
        assert!(
            message.contains(&format!("octet \"{octet}\" has a leading zero"))
                && message.contains("octal"),
            "{text}: {message}"
        );
    }
    let (_, _, _, message) = rejection(r#"{"version":1,"deny":{"cidrs":["127.077.0.0/16"]}}"#);
    assert!(
        message.contains("077 reads as 63") && message.contains("(77)"),
        "{message}"
    );
    // Zeros are fine where they are not leading, and in IPv6 groups and ports.
    parse(r#"{"version":1,"deny":{"cidrs":["10.0.0.0/8","100.64.0.0/10","2001:0db8::/32"]},"resolver":{"upstreams":["[2001:0db8::1]:053","10.0.0.10:53"]}}"#).unwrap();
    // An address is not a domain.
    let (_, _, field, message) = rejection(r#"{"version":1,"deny":{"domains":["127.077.0.1"]}}"#);
    assert_eq!(field, "deny.domains[0]");
    assert!(message.contains("put addresses in cidrs"), "{message}");
}

fn warnings_of(text: &str) -> Vec<String> {
    parse(text).expect("valid policy").warnings
}

fn assert_one_warning(text: &str, needles: &[&str]) {
    let warnings = warnings_of(text);
    let hits: Vec<&String> = warnings
        .iter()
        .filter(|w| needles.iter().all(|n| w.contains(n)))
        .collect();
    assert_eq!(hits.len(), 1, "{needles:?} in {warnings:#?}");
}

#[test]
fn an_allow_over_a_whole_family_warns() {
    let ban = r#""deny":{"cidrs":["160.79.104.0/23","2607:6bc0::/48"]}"#;
    for (allow, share) in [
        ("0.0.0.0/0", "all of IPv4"),
        ("128.0.0.0/1", "half of IPv4"),
        ("::/0", "all of IPv6"),
        ("2000::/3", "1/8 of IPv6"),
    ] {
        assert_one_warning(
            &format!(r#"{{"version":1,{ban},"allow":{{"cidrs":["{allow}"]}}}}"#),
            &[
                "p.json: allow.cidrs[0]",
                &format!("allow {allow} covers {share}"),
                "no ban in it is enforced",
            ],
        );
    }
    // /2 and narrower (v4), /4 and narrower (v6) are left alone.
    let quiet = warnings_of(&format!(
        r#"{{"version":1,{ban},"allow":{{"cidrs":["128.0.0.0/2","2000::/4"]}}}}"#
    ));
    assert!(quiet.iter().all(|w| !w.contains(" covers ")), "{quiet:?}");
}

#[test]
fn a_ban_over_loopback_or_a_whole_family_warns() {
    assert_one_warning(
        r#"{"version":1,"deny":{"cidrs":["127.0.0.0/8"]}}"#,
        &[
            "deny.cidrs[0]",
            "deny 127.0.0.0/8 covers loopback (127.0.0.0/8)",
        ],
    );
    assert_one_warning(
        r#"{"version":1,"deny":{"cidrs":["10.0.0.0/8","127.0.0.53"]}}"#,
        &["deny.cidrs[1]", "covers loopback (127.0.0.53/32)"],
    );
    assert_one_warning(
        r#"{"version":1,"deny":{"cidrs":["::/0"]}}"#,
        &["deny ::/0 covers loopback (::1/128)"],
    );
    let w = warnings_of(r#"{"version":1,"deny":{"cidrs":["0.0.0.0/0"]}}"#);
    assert!(
        w.iter()
            .any(|w| w.contains("deny 0.0.0.0/0 bans every IPv4 destination that no allow excepts")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("covers loopback (127.0.0.0/8)")),
        "{w:?}"
    );
    // Excepted loopback is not banned.
    let w = warnings_of(
        r#"{"version":1,"deny":{"cidrs":["0.0.0.0/0"]},"allow":{"cidrs":["127.0.0.0/8"]}}"#,
    );
    assert!(w.iter().all(|w| !w.contains("loopback (")), "{w:?}");
}

#[test]
fn a_ban_over_a_resolver_upstream_warns() {
    let mut p = parse(
        r#"{"version":1,"deny":{"cidrs":["10.0.0.0/8"]},"resolver":{"upstreams":["10.0.0.2:53","192.0.2.53"]}}"#,
    )
    .unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let ups = p.resolver.upstreams.clone().unwrap();
    let resolv_conf = Path::new("/etc/resolv.conf");
    p.check_upstreams(&ups, resolv_conf);
    p.check_upstreams(&ups, resolv_conf);
    assert_eq!(
        p.warnings.len(),
        1,
        "once, however often checked: {:?}",
        p.warnings
    );
    let w = &p.warnings[0];
    assert!(w.contains("p.json: deny.cidrs[0]: deny 10.0.0.0/8 covers the resolver 10.0.0.2 (resolver.upstreams)"), "{w}");
    assert!(w.contains("go stale"), "{w}");

    // Without upstreams in the policy, the caller passes resolv.conf's.
    let mut p = parse(r#"{"version":1,"deny":{"cidrs":["192.0.2.0/24"]}}"#).unwrap();
    p.check_upstreams(&["192.0.2.53:53".parse().unwrap()], resolv_conf);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].contains("covers the resolver 192.0.2.53 (a nameserver of /etc/resolv.conf)")
    );

    // An exception for the resolver keeps it reachable.
    let mut p = parse(
        r#"{"version":1,"deny":{"cidrs":["192.0.2.0/24"]},"allow":{"cidrs":["192.0.2.53"]}}"#,
    )
    .unwrap();
    p.check_upstreams(&["192.0.2.53:53".parse().unwrap()], resolv_conf);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn a_mode_set_by_a_drop_in_warns_and_names_the_drop_in() {
    let d = Dir::new("mode");
    let main = d.write(
        "policy.json",
        r#"{"version":1,"mode":"enforce","deny":{"cidrs":["192.0.2.0/24"]}}"#,
    );
    let drop_in = d.write("policy.d/50-audit.json", r#"{"version":1,"mode":"audit"}"#);
    let p = Policy::resolve(Some(&main)).unwrap();
    assert_eq!(p.mode, Mode::Audit);
    let hits: Vec<&String> = p.warnings.iter().filter(|w| w.contains("mode")).collect();
    assert_eq!(hits.len(), 1, "{:?}", p.warnings);
    assert!(
        hits[0].starts_with(&format!(
            "{}: mode: the drop-in sets mode \"audit\" (it was \"enforce\")",
            drop_in.display()
        )),
        "{}",
        hits[0]
    );
    // The main file alone setting it is the normal case.
    std::fs::remove_file(&drop_in).unwrap();
    let p = Policy::resolve(Some(&main)).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

fn resolve_err(main: &Path) -> String {
    match Policy::resolve(Some(main)) {
        Ok(p) => panic!("accepted: {:?}", p.sources),
        Err(e) => e.to_string(),
    }
}

#[test]
fn drop_ins_that_are_not_regular_files_are_errors_naming_them() {
    use std::os::unix::fs::symlink;
    let d = Dir::new("kinds");
    let main = d.write("policy.json", r#"{"version":1}"#);
    d.write("policy.d/10-ok.json", &banning("192.0.2.0/24"));
    // A symlink to a regular file is a drop-in like any other.
    let target = d.write("elsewhere.json", &banning("198.51.100.0/24"));
    symlink(&target, d.0.join("policy.d/20-link.json")).unwrap();
    assert_eq!(Policy::resolve(Some(&main)).unwrap().deny.cidrs.len(), 2);

    let bad = d.0.join("policy.d/30-bad.json");
    let cases: [(&str, &dyn Fn()); 5] = [
        ("a directory", &|| std::fs::create_dir(&bad).unwrap()),
        ("a dangling symlink", &|| {
            symlink(d.0.join("missing.json"), &bad).unwrap()
        }),
        ("a symlink loop", &|| symlink(&bad, &bad).unwrap()),
        ("a character device", &|| {
            symlink("/dev/null", &bad).unwrap()
        }),
        ("a FIFO", &|| {
            let c = std::ffi::CString::new(bad.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        }),
    ];
    for (what, make) in cases {
        make();
        // Off the test thread: reading a FIFO would block for good.
        let (tx, rx) = std::sync::mpsc::channel();
        let m = main.clone();
        std::thread::spawn(move || tx.send(resolve_err(&m)));
        let err = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("resolving with {what} in policy.d blocked"));
        assert!(
            err.starts_with(&format!("{}: the drop-in is {what}", bad.display()))
                && err.contains("not a regular file"),
            "{what}: {err}"
        );
        if bad.is_dir() && !bad.is_symlink() {
            std::fs::remove_dir(&bad).unwrap();
        } else {
            std::fs::remove_file(&bad).unwrap();
        }
    }
    // Anything not named *.json is not a drop-in and stays ignored.
    symlink(d.0.join("missing"), d.0.join("policy.d/README")).unwrap();
    Policy::resolve(Some(&main)).unwrap();
}

#[test]
fn a_system_directory_or_a_non_directory_is_no_drop_in_dir() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = Dir::new("dir");
    for dir in ["/", "/etc", "../../../../../../../..", "/proc/../etc/"] {
        let main = d.write(
            "policy.json",
            &format!(r#"{{"version":1,"drop_in_dir":"{dir}"}}"#),
        );
        let err = resolve_err(&main);
        assert!(
            err.starts_with(&format!(
                "{}: drop_in_dir: the drop-in directory",
                main.display()
            )) && err.contains("is the system directory /"),
            "{dir}: {err}"
        );
    }
    // Through a symlink too.
    std::os::unix::fs::symlink("/", d.0.join("root")).unwrap();
    let main = d.write("policy.json", r#"{"version":1,"drop_in_dir":"root"}"#);
    assert!(resolve_err(&main).contains("is the system directory /"));

    d.write("plain.json", "{}");
    let main = d.write("policy.json", r#"{"version":1,"drop_in_dir":"plain.json"}"#);
    let err = resolve_err(&main);
    assert!(
        err.starts_with(&format!(
            "{}: the drop-in directory is a regular file, not a directory",
            d.0.join("plain.json").display()
        )),
        "{err}"
    );

    let open = d.0.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let main = d.write("policy.json", r#"{"version":1,"drop_in_dir":"open"}"#);
    assert!(resolve_err(&main).contains("writable by every user"));

    // A missing directory still has no drop-ins.
    let main = d.write("policy.json", r#"{"version":1,"drop_in_dir":"nowhere"}"#);
    Policy::resolve(Some(&main)).unwrap();
}

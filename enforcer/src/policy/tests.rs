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
        assert!(
            p.deny.cidrs.contains(&net.parse().unwrap()),
            "{net} missing"
        );
    }
    assert!(
        p.deny
            .domains
            .contains(&DomainPattern::Exact("api.anthropic.com".into()))
    );
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
        p.allow.cidrs,
        vec!["10.20.0.0/16".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        p.deny.domains[1],
        DomainPattern::Wildcard("openai.com".into())
    );
}

#[test]
fn bare_addresses_are_host_routes_and_mode_defaults_to_enforce() {
    let p = parse(r#"{"version":1,"deny":{"cidrs":["1.2.3.4","::1"]}}"#).unwrap();
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.deny.cidrs[0], "1.2.3.4/32".parse::<IpNet>().unwrap());
    assert_eq!(p.deny.cidrs[1], "::1/128".parse::<IpNet>().unwrap());
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

use std::path::Path;

use super::*;

const GOOD: &str = r#"
[redcap]
url = "https://redcap.example.org/api/"
time_zone = "Europe/Berlin"
"#;

fn problems(text: &str) -> Vec<Problem> {
    parse(text, Path::new("warden.toml"))
        .expect_err("should be refused")
        .problems
}

fn only(text: &str) -> Problem {
    let mut p = problems(text);
    assert_eq!(p.len(), 1, "exactly one problem expected: {p:?}");
    p.remove(0)
}

#[test]
fn a_good_file_parses() {
    let c = parse(GOOD, Path::new("warden.toml")).unwrap();
    assert_eq!(c.redcap.url(), "https://redcap.example.org/api/");
    assert_eq!(c.redcap.time_zone().iana_name(), Some("Europe/Berlin"));
}

#[test]
fn a_typo_in_a_key_names_line_field_and_the_likely_key() {
    let p = only(&GOOD.replace("url =", "ulr ="));
    assert_eq!((p.line, p.column), (3, 1));
    assert_eq!(p.field.as_deref(), Some("redcap.ulr"));
    assert!(p.message.contains("unknown field `ulr`"), "{}", p.message);
    assert!(p.fix.contains("did you mean `url`?"), "{}", p.fix);
}

#[test]
fn an_unknown_section_is_refused_with_the_accepted_ones() {
    let p = only(&format!("{GOOD}\n[gateway_typo]\nx = 1\n"));
    assert_eq!(p.field.as_deref(), Some("gateway_typo"));
    assert_eq!(p.line, 6);
    assert!(p.fix.contains("`redcap`"), "{}", p.fix);
}

#[test]
fn a_missing_field_names_the_table_and_what_to_add() {
    let p = only("[redcap]\nurl = \"https://r.example.org/api/\"\n");
    assert_eq!(p.field.as_deref(), Some("redcap.time_zone"));
    assert_eq!(p.line, 1);
    assert!(
        p.message.contains("missing field `time_zone`"),
        "{}",
        p.message
    );
    assert!(
        p.fix.contains("add `time_zone = …` to the [redcap] table"),
        "{}",
        p.fix
    );
}

#[test]
fn a_missing_section_is_named() {
    let p = only("");
    assert_eq!(p.field.as_deref(), Some("redcap"));
    assert!(p.fix.contains("at the top of the file"), "{}", p.fix);
}

#[test]
fn a_wrong_type_names_the_field_and_the_expected_type() {
    let p = only(&GOOD.replace("\"Europe/Berlin\"", "42"));
    assert_eq!((p.line, p.column), (4, 13));
    assert_eq!(p.field.as_deref(), Some("redcap.time_zone"));
    assert!(
        p.message.contains("invalid type: integer `42`"),
        "{}",
        p.message
    );
    assert_eq!(p.fix, "write a string here");
}

#[test]
fn broken_syntax_points_at_the_position() {
    let p = only("[redcap\nurl = 1\n");
    assert_eq!(p.line, 1);
    assert!(p.fix.contains("syntax"), "{}", p.fix);
}

#[test]
fn the_url_must_be_https_and_end_in_api() {
    for (url, needle) in [
        ("http://redcap.example.org/api/", "plain http"),
        ("https://redcap.example.org/", "does not end in `/api/`"),
        ("https://redcap.example.org/api/?x=1", "query"),
        ("https://user:pw@redcap.example.org/api/", "password"),
        ("ftp://redcap.example.org/api/", "scheme `ftp`"),
        ("not a url", "is not a URL"),
    ] {
        let p = only(&GOOD.replace("https://redcap.example.org/api/", url));
        assert_eq!(p.field.as_deref(), Some("redcap.url"));
        assert_eq!(p.line, 3);
        assert!(p.message.contains(needle), "{url}: {}", p.message);
    }
    for ok in [
        "http://127.0.0.1:8080/api/",
        "http://localhost/redcap/api/",
        "http://[::1]:9/api/",
    ] {
        parse(
            &GOOD.replace("https://redcap.example.org/api/", ok),
            Path::new("w"),
        )
        .unwrap();
    }
}

#[test]
fn semantic_problems_are_all_reported_together() {
    let text = GOOD
        .replace("https://redcap.example.org/api/", "https://x.org/")
        .replace("Europe/Berlin", "Mars/Olympus");
    let p = problems(&text);
    assert_eq!(p.len(), 2);
    assert_eq!(p[1].field.as_deref(), Some("redcap.time_zone"));
    assert!(p[1].message.contains("`Mars/Olympus` is not a time zone"));
}

#[test]
fn display_is_one_line_per_problem_with_file_line_and_fix() {
    let e = parse(
        &GOOD.replace("url =", "ulr ="),
        Path::new("conf/warden.toml"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "conf/warden.toml:3:1: `redcap.ulr`: unknown field `ulr`, expected `url` or `time_zone`; fix: did you mean `url`? rename the key or remove it"
    );
}

#[test]
fn load_reports_a_missing_file_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let e = load(&dir.path().join("warden.toml")).unwrap_err();
    assert!(matches!(e, LoadError::Unreadable { .. }));
    assert!(e.to_string().contains("redcap-warden init"), "{e}");
}

#[test]
fn load_records_the_file_hash_and_resolves_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.toml");
    std::fs::write(&path, GOOD).unwrap();
    let loaded = load(&path).unwrap();
    assert_eq!(loaded.sha256.len(), 64);
    assert_eq!(loaded.resolve(Path::new("data")), dir.path().join("data"));
    assert_eq!(loaded.resolve(Path::new("/abs")), Path::new("/abs"));
}

#[test]
fn invalid_utf8_is_a_problem_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.toml");
    std::fs::write(&path, b"[redcap]\nurl = \"\xff\"\n").unwrap();
    let Err(LoadError::Invalid(e)) = load(&path) else {
        panic!("invalid UTF-8 accepted")
    };
    assert_eq!(e.problems[0].line, 2);
    assert!(e.problems[0].message.contains("UTF-8"));
}

#[test]
fn secrets_default_to_the_embedded_file_store() {
    let c = parse(GOOD, Path::new("warden.toml")).unwrap();
    assert_eq!(c.secrets.backend, SecretsBackend::File);
    assert_eq!(c.secrets.file.path, Path::new("data/secrets.age"));
    assert_eq!(c.secrets.file.keep_versions, 20);
    let c = parse(
        &format!("{GOOD}[secrets.file]\nkeep_versions = 5\n"),
        Path::new("w"),
    )
    .unwrap();
    assert_eq!(c.secrets.file.keep_versions, 5);
    assert_eq!(c.secrets.file.identity, Path::new("data/identity.txt"));
}

#[test]
fn an_unknown_backend_lists_the_known_ones() {
    let p = only(&format!("{GOOD}[secrets]\nbackend = \"fiel\"\n"));
    assert_eq!(p.field.as_deref(), Some("secrets.backend"));
    assert!(
        p.message.contains("unknown variant `fiel`"),
        "{}",
        p.message
    );
    assert_eq!(p.fix, "did you mean `file`?");
}

const GATEWAY: &str = r#"
[redcap]
url = "https://redcap.example.org/api/"
time_zone = "Europe/Berlin"

[gateway]
listen = "127.0.0.1:9000"

[[study]]
name = "heart"
project_id = 14

[[study.site]]
name = "site-a"
dag_id = 3

[[account]]
name = "heart-a-etl"
username = "svc_heart_a_etl"
secret = "redcap/heart/site-a/etl"
study = "heart"
site = "site-a"

[[client]]
name = "etl-a"
account = "heart-a-etl"
allow = ["record:export", "record:import", "version"]
sources = ["10.1.0.0/16", "::1"]
"#;

#[test]
fn a_gateway_configuration_parses() {
    let c = parse(GATEWAY, Path::new("w")).unwrap();
    assert_eq!(c.gateway.listen.port(), 9000);
    assert_eq!(c.gateway.max_input_vars, 1000);
    assert_eq!(c.study[0].site[0].dag_id, 3);
    assert_eq!(c.client[0].write_reason, WriteReason::Required);
    let m = Method::parse(c.client[0].allow[2].get_ref()).unwrap();
    assert_eq!(
        (m.content, m.action),
        (redcap::Content::Version, redcap::Action::Export)
    );
}

#[test]
fn broken_references_name_the_field_and_line() {
    let p = only(&GATEWAY.replace("account = \"heart-a-etl\"", "account = \"heart-b-etl\""));
    assert_eq!(p.field.as_deref(), Some("client.account"));
    assert_eq!(p.line, 26);
    assert!(
        p.message
            .contains("account `heart-b-etl`, which is not defined"),
        "{}",
        p.message
    );

    let p = only(&GATEWAY.replace("site = \"site-a\"", "site = \"site-z\""));
    assert_eq!(p.field.as_deref(), Some("account.site"));
    assert!(p.message.contains("has no site `site-z`"));

    let p = only(&GATEWAY.replace("\"record:import\"", "\"recrod:import\""));
    assert_eq!(p.field.as_deref(), Some("client.allow"));
    assert!(p.message.contains("`recrod` is not a REDCap API content"));

    let p = only(&GATEWAY.replace("\"10.1.0.0/16\"", "\"10.1.0.0/33\""));
    assert_eq!(p.field.as_deref(), Some("client.sources"));

    let p = only(&GATEWAY.replace("redcap/heart/site-a/etl", "Redcap Token"));
    assert_eq!(p.field.as_deref(), Some("account.secret"));

    let twice = format!("{GATEWAY}\n[[study]]\nname = \"heart\"\n");
    let p = only(&twice);
    assert!(
        p.message.contains("study `heart` is defined twice"),
        "{}",
        p.message
    );
}

#[test]
fn source_ranges_match_addresses() {
    let r = SourceRange::parse("10.1.0.0/16").unwrap();
    assert!(r.contains("10.1.200.3".parse().unwrap()));
    assert!(!r.contains("10.2.0.1".parse().unwrap()));
    assert!(
        r.contains("::ffff:10.1.0.9".parse().unwrap()),
        "IPv4-mapped IPv6"
    );
    assert!(
        SourceRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap())
    );
    assert!(
        SourceRange::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap())
    );
    assert!(SourceRange::parse("nonsense").is_err());
}

#[test]
fn tls_needs_both_files_and_a_public_listener_needs_tls() {
    let p = only(&format!("{GOOD}[gateway]\ntls_cert = \"cert.pem\"\n"));
    assert_eq!(p.field.as_deref(), Some("gateway.tls_cert"));
    assert!(p.fix.contains("tls_key"), "{}", p.fix);
    let p = only(&format!("{GOOD}[gateway]\nlisten = \"0.0.0.0:8470\"\n"));
    assert_eq!(p.field.as_deref(), Some("gateway.listen"));
    assert!(p.message.contains("no TLS"), "{}", p.message);
    let ok = format!(
        "{GOOD}[gateway]\nlisten = \"0.0.0.0:8470\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n"
    );
    parse(&ok, Path::new("w")).unwrap();
}

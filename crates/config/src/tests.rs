use std::path::Path;

use super::*;

const GOOD: &str = r#"
[redcap]
url = "https://redcap.example.org/api/"
time_zone = "Europe/Berlin"
"#;

/// The example key of Go's note package documentation.
const VERIFIER_KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

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
profile = "site-data-import"

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
    let m = c.client[0].allow[2];
    assert_eq!(
        (m.content, m.action),
        (redcap::Content::Version, redcap::Action::Export)
    );
}

#[test]
fn broken_references_name_the_field_and_line() {
    let p = only(&GATEWAY.replace("account = \"heart-a-etl\"", "account = \"heart-b-etl\""));
    assert_eq!(p.field.as_deref(), Some("client[0].account"));
    assert_eq!(p.line, 27);
    assert!(
        p.message
            .contains("account `heart-b-etl`, which is not defined"),
        "{}",
        p.message
    );

    let p = only(&GATEWAY.replace("site = \"site-a\"", "site = \"site-z\""));
    assert_eq!(p.field.as_deref(), Some("account[0].site"));
    assert!(p.message.contains("has no site `site-z`"));

    let p = only(&GATEWAY.replace("\"record:import\"", "\"recrod:import\""));
    assert_eq!(p.field.as_deref(), Some("client[0].allow[1]"));
    assert!(p.message.contains("`recrod` is not a REDCap API content"));

    let p = only(&GATEWAY.replace("\"10.1.0.0/16\"", "\"10.1.0.0/33\""));
    assert_eq!(p.field.as_deref(), Some("client[0].sources[0]"));

    let p = only(&GATEWAY.replace("redcap/heart/site-a/etl", "Redcap Token"));
    assert_eq!(p.field.as_deref(), Some("account[0].secret"));

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

/// No problem text may show a Rust type name (or serde's words for them).
fn assert_user_words(p: &Problem) {
    for word in [
        "u8",
        "u16",
        "u32",
        "u64",
        "usize",
        "i64",
        "i32",
        "f64",
        "bool",
        "SocketAddr",
        "PathBuf",
        "String",
        "Vec",
        "Option",
        "sequence",
        "map",
        "struct",
    ] {
        for text in [&p.message, &p.fix] {
            let hit = text
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|w| w == word);
            assert!(!hit, "`{word}` reaches the user: {p:?}");
        }
    }
}

fn places(problems: &[Problem]) -> Vec<(usize, usize, &str)> {
    problems
        .iter()
        .map(|p| (p.line, p.column, p.field.as_deref().unwrap_or("")))
        .collect()
}

/// Issue #19 item 6: one run lists every problem of a file, not the first.
const MANY: &str = r#"[redcap]
url = "https://redcap.example.org/api/"
time_zone = "Europe/Berln"

[gateway]
outbound_per_minute = 0
key_lifetime_day = 30

[[study]]
name = "heart"

[[study.site]]
name = "site-a"
dag_id = 3

[[study.site]]
name = "site-b"
dag_id = 3

[[study]]
name = "lung"

[[study.site]]
name = "site-a"
dag_id = "7"

[[account]]
name = "heart-a"
username = "svc_heart_a"
secret = "redcap/heart/site-a"
study = "heart"
site = "site-a"
profile = "site-data-import"

[[client]]
name = "app"
account = "heart-b"
allow = ["record:export", "metadata", 5]
unchecked_exports = "no"
"#;

#[test]
fn every_problem_of_a_file_is_reported_in_one_run() {
    let p = problems(MANY);
    assert_eq!(
        places(&p),
        [
            (3, 13, "redcap.time_zone"),
            (6, 23, "gateway.outbound_per_minute"),
            (7, 1, "gateway.key_lifetime_day"),
            (18, 10, "study[0].site[1].dag_id"),
            (25, 10, "study[1].site[0].dag_id"),
            (37, 11, "client[0].account"),
            (38, 39, "client[0].allow[2]"),
            (39, 21, "client[0].unchecked_exports"),
        ],
        "{p:#?}"
    );
    assert!(p[0].message.contains("`Europe/Berln` is not a time zone"));
    assert!(
        p[1].message
            .contains("outbound_per_minute = 0 is not allowed")
    );
    assert!(
        p[1].fix.contains(
            "write a whole number from 1 to 4294967295 here, e.g. outbound_per_minute = 300"
        ),
        "{}",
        p[1].fix
    );
    assert!(p[2].message.contains("unknown field `key_lifetime_day`"));
    assert!(
        p[2].fix.contains("did you mean `key_lifetime_days`?"),
        "{}",
        p[2].fix
    );
    assert!(
        p[3].message.contains(
            "`site-a` and `site-b` of study `heart` are both bound to DAG 3 (first at line 14)"
        ),
        "{}",
        p[3].message
    );
    assert_eq!(
        p[4].message,
        "invalid type: string \"7\", expected a whole number"
    );
    assert_eq!(p[4].fix, "write a whole number here, e.g. dag_id = 3");
    assert!(
        p[5].message
            .contains("account `heart-b`, which is not defined")
    );
    assert!(p[6].message.contains("expected a string"));
    assert!(
        p[7].message.contains("expected true or false"),
        "{}",
        p[7].message
    );
    p.iter().for_each(assert_user_words);
    // And the text a user reads: one line each, sorted by line.
    let shown = parse(MANY, Path::new("warden.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(shown.lines().count(), 8, "{shown}");
    assert!(
        shown
            .lines()
            .next()
            .unwrap()
            .starts_with("warden.toml:3:13: `redcap.time_zone`: "),
        "{shown}"
    );
}

#[test]
fn the_reported_file_gives_all_three_problems() {
    let text = r#"[redcap]
url = "https://redcap.example.org/api/"
time_zone = "Europe/Berlim"

[gateway]
outbound_per_minut = 100

[[study]]
name = "heart"

[[account]]
name = "heart-etl"
username = "svc_etl"
secret = "redcap/heart/etl"
study = "heart"

[[client]]
name = "etl"
account = "heart-elt"
allow = ["record:export"]
"#;
    let p = problems(text);
    assert_eq!(
        places(&p),
        [
            (3, 13, "redcap.time_zone"),
            (6, 1, "gateway.outbound_per_minut"),
            (19, 11, "client[0].account"),
        ],
        "{p:#?}"
    );
    assert!(p[1].fix.contains("did you mean `outbound_per_minute`?"));
}

#[test]
fn a_wrong_type_in_a_site_names_the_whole_path_in_user_words() {
    let text = format!(
        "{GATEWAY}\n[[study.site]]\nname = \"site-b\"\ndag_id = 4.5\n\n[[study.site]]\nname = \"site-c\"\ndag_id = true\n"
    );
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(p[0].field.as_deref(), Some("study[0].site[1].dag_id"));
    assert_eq!((p[0].line, p[0].column), (33, 10));
    assert_eq!(
        p[0].message,
        "invalid type: decimal number `4.5`, expected a whole number"
    );
    assert_eq!(p[1].field.as_deref(), Some("study[0].site[2].dag_id"));
    p.iter().for_each(assert_user_words);

    // Other kinds, each in words.
    for (line, field, expected) in [
        (
            "listen = 8470",
            "gateway.listen",
            "expected an address like \"127.0.0.1:8470\"",
        ),
        (
            "max_body_bytes = \"1M\"",
            "gateway.max_body_bytes",
            "expected a whole number",
        ),
        (
            "keys_file = 3",
            "gateway.keys_file",
            "expected a path in quotes",
        ),
    ] {
        let p = only(&format!("{GOOD}[gateway]\n{line}\n"));
        assert_eq!(p.field.as_deref(), Some(field));
        assert!(p.message.contains(expected), "{line}: {}", p.message);
        assert_user_words(&p);
    }
    let p = only(&format!("{GOOD}[gateway]\nlisten = \"localhost:8470\"\n"));
    assert_eq!(
        p.message,
        "`localhost:8470` is not an IP address with a port"
    );
    assert!(p.fix.contains("127.0.0.1:8470"), "{}", p.fix);
    let p = problems(&GATEWAY.replace("allow = [", "allow = \"record:export\"\nx = ["));
    assert_eq!(
        places(&p),
        [(28, 9, "client[0].allow"), (29, 1, "client[0].x")]
    );
    let p = only(&GATEWAY.replace(
        "allow = [\"record:export\", \"record:import\", \"version\"]",
        "allow = \"record:export\"",
    ));
    assert_eq!(p.field.as_deref(), Some("client[0].allow"));
    assert!(
        p.message.contains("expected an array of strings"),
        "{}",
        p.message
    );
}

#[test]
fn unknown_and_missing_keys_in_array_tables_have_full_paths() {
    let p = only(&GATEWAY.replace("dag_id = 3", "dagid = 3"));
    assert_eq!(p.field.as_deref(), Some("study[0].site[0].dagid"));
    assert!(p.fix.contains("did you mean `dag_id`?"), "{}", p.fix);
    let p = only(&GATEWAY.replace("dag_id = 3", ""));
    assert_eq!(p.field.as_deref(), Some("study[0].site[0].dag_id"));
    assert_eq!(p.line, 13, "the [[study.site]] header");
    assert_eq!(
        p.fix,
        "add `dag_id = …` to this [[study.site]] table, e.g. dag_id = 3"
    );
}

#[test]
fn a_public_listener_without_tls_is_reported_at_its_line() {
    let p = only(&format!("{GOOD}[gateway]\nlisten = \"0.0.0.0:8470\"\n"));
    assert_eq!((p.line, p.column), (6, 10));
    assert_eq!(p.field.as_deref(), Some("gateway.listen"));
}

#[test]
fn zero_is_refused_where_it_means_nothing() {
    for key in [
        "outbound_per_minute",
        "max_input_vars",
        "max_input_nesting_level",
        "max_body_bytes",
        "token_cache_seconds",
        "key_lifetime_days",
        "cutover_hold_seconds",
    ] {
        let p = only(&format!("{GOOD}[gateway]\n{key} = 0\n"));
        assert_eq!(p.field.as_deref(), Some(format!("gateway.{key}").as_str()));
        assert_eq!((p.line, p.column), (6, key.len() + 4));
        assert!(
            p.message
                .starts_with(&format!("{key} = 0 is not allowed: ")),
            "{}",
            p.message
        );
        assert_user_words(&p);
        let p = only(&format!("{GOOD}[gateway]\n{key} = -1\n"));
        assert!(p.message.contains("is not allowed"), "{}", p.message);
    }
    let p = only(&format!(
        "{GOOD}[gateway]\nkey_lifetime_days = 4294967296\n"
    ));
    assert!(p.message.contains("too large"), "{}", p.message);
    for (text, field) in [
        (
            "[secrets.file]\nkeep_versions = 0\n",
            "secrets.file.keep_versions",
        ),
        (
            "[secrets.aws]\nrecovery_window_days = 0\n",
            "secrets.aws.recovery_window_days",
        ),
        (
            "[[study]]\nname = \"s\"\nproject_id = 0\n",
            "study[0].project_id",
        ),
        (
            "[[study]]\nname = \"s\"\n[[study.site]]\nname = \"a\"\ndag_id = 0\n",
            "study[0].site[0].dag_id",
        ),
    ] {
        let p = only(&format!("{GOOD}{text}"));
        assert_eq!(p.field.as_deref(), Some(field), "{text}");
    }
    // Where 0 means something, it stays allowed.
    parse(
        &format!(
            "{GOOD}[gateway]\nkey_overlap_days = 0\n[secrets.vault]\naddress = \"https://v:8200\"\ntoken_env = \"T\"\nmax_versions = 0\n"
        ),
        Path::new("w"),
    )
    .unwrap();
}

#[test]
fn duplicates_that_make_no_sense_are_refused() {
    let extra = r#"
[[study]]
name = "heart"
project_id = 14

[[study]]
name = "lung"
project_id = 14

[[study.site]]
name = "site-a"
dag_id = 5

[[study.site]]
name = "site-a"
dag_id = 6

[[account]]
name = "heart-a-etl"
username = "svc_heart_a_etl"
secret = "redcap/heart/site-a/etl"
study = "heart"

[[client]]
name = "etl-a"
account = "heart-a-etl"
allow = ["version"]
"#;
    let p = problems(&format!("{GATEWAY}{extra}"));
    let fields: Vec<_> = p.iter().filter_map(|p| p.field.as_deref()).collect();
    assert_eq!(
        fields,
        [
            "study[1].name",
            "study[1].project_id",
            "study[2].project_id",
            "study[2].site[1].name",
            "account[1].name",
            "account[1].username",
            "account[1].secret",
            "client[1].name",
        ],
        "{p:#?}"
    );
    assert!(
        p[0].message
            .contains("study `heart` is defined twice (first at line 10)")
    );
    assert!(p[3].message.contains("site `site-a` is defined twice"));
    assert!(
        p[6].message
            .contains("both use secret `redcap/heart/site-a/etl`")
    );
    // The same site name in two studies is fine.
    parse(
        &format!(
            "{GATEWAY}\n[[study]]\nname = \"lung\"\n[[study.site]]\nname = \"site-a\"\ndag_id = 3\n"
        ),
        Path::new("w"),
    )
    .unwrap();
}

#[test]
fn a_reference_to_an_unnamed_entry_is_not_a_false_alarm() {
    let p = only(&GATEWAY.replace("name = \"heart\"", "name = 7"));
    assert_eq!(p.field.as_deref(), Some("study[0].name"));
    assert_eq!(p.fix, "write a string here, e.g. name = \"heart2\"");
}

#[test]
fn the_rules_of_self_checking_sections_are_reported_with_the_rest() {
    let text = format!(
        "{GOOD}[secrets.vault]\naddress = \"https://v:8200\"\n\n[ledger.export]\nbucket = \"Bad_Bucket\"\nretention_days = 7\n\n[gateway]\noutbound_per_minute = 0\n"
    );
    let p = problems(&text);
    let fields: Vec<_> = p.iter().filter_map(|p| p.field.as_deref()).collect();
    assert!(fields.contains(&"secrets.vault"), "{p:#?}");
    assert!(fields.contains(&"ledger.verifier_key"), "{p:#?}");
    assert!(fields.contains(&"ledger.export"), "{p:#?}");
    assert!(fields.contains(&"gateway.outbound_per_minute"), "{p:#?}");
    assert!(p.iter().any(|p| p.message.contains("needs token_file")));
    assert!(
        p.iter()
            .any(|p| p.message.contains("bucket \"Bad_Bucket\""))
    );
    let p = only(&format!("{GOOD}[secrets]\nbackend = \"vault\"\n"));
    assert_eq!(p.field.as_deref(), Some("secrets.backend"));
    assert!(
        p.message.contains("needs a [secrets.vault] table"),
        "{}",
        p.message
    );
}

#[test]
fn odd_shapes_are_problems_never_panics() {
    for text in [
        "[[redcap]]\nurl = 1\n",
        "redcap = 5\nstudy = 5\n",
        "redcap = { url = \"https://r.example.org/api/\", time_zone = \"UTC\" }\nstudy = [1, \"x\", {}]\n",
        "[redcap]\nurl = \"https://r.example.org/api/\"\ntime_zone = \"UTC\"\n[gateway]\nlisten = \"\"\nkeys_file = \"\"\nmax_body_bytes = 9223372036854775807\n",
        "[redcap]\nurl = \"https://r.example.org/api/\"\ntime_zone = \"UTC\"\n[[client]]\nallow = []\nsources = [[1], {}]\n[[account]]\n[[study]]\n[[study.site]]\n",
        "[redcap]\nurl = []\ntime_zone = {}\n[ledger]\nbackend = 1\n[secrets.file]\npath = 1979-05-27\n",
        "[redcap.url]\n[secrets.vault.auth]\n[gateway.listen.x]\n",
        "\u{feff}[redcap]\nurl = \"ö\"\ntime_zone = \"日本\"\n",
    ] {
        let p = problems(text);
        assert!(!p.is_empty(), "{text}");
        for p in &p {
            assert!(p.line > 0, "{text}: no position: {p:?}");
            assert!(p.field.is_some(), "{text}: no field: {p:?}");
            assert_user_words(p);
        }
        let mut sorted = p.clone();
        sorted.sort_by_key(|p| (p.line, p.column));
        assert_eq!(p, sorted, "{text}: not sorted by position");
    }
}

#[test]
fn a_value_where_a_table_belongs_says_how_to_write_the_table() {
    let p = problems("[[redcap]]\nurl = 1\n");
    assert_eq!(places(&p), [(1, 1, "redcap")]);
    assert_eq!(
        p[0].message,
        "invalid type: array, expected a table ([redcap])"
    );
    assert_eq!(
        p[0].fix,
        "write it as a [redcap] table with its keys on the lines below"
    );
    let p = only(&format!("study = 5\n{GOOD}"));
    assert_eq!(p.field.as_deref(), Some("study"));
    assert_eq!(p.fix, "write each entry as a [[study]] table");
}

#[test]
fn a_missing_file_names_its_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let e = load(&dir.path().join("warden.toml")).unwrap_err();
    // Printed as a chain (anyhow's `{:#}`), the OS error must not repeat.
    assert!(std::error::Error::source(&e).is_none());
    let os = std::io::Error::from_raw_os_error(2).to_string(); // ENOENT
    let shown = e.to_string();
    assert!(
        shown.contains("cannot read the configuration file"),
        "{shown}"
    );
    assert_eq!(shown.matches(&os).count(), 1, "{os}: {shown}");
}

/// The schema the walk uses and the serde structs that deserialize the
/// file must agree key for key, in order (the order serde lists them in).
#[test]
fn the_schema_matches_the_serde_structs() {
    use crate::schema::{self, Kind};
    fn keys(fields: &[schema::Field]) -> Vec<&'static str> {
        fields.iter().map(|f| f.key).collect()
    }
    let pairs: [(&str, &[schema::Field], &[&str]); 23] = [
        ("top", schema::TOP, serde_fields::<Config>()),
        ("redcap", schema::REDCAP, serde_fields::<RedcapSection>()),
        ("paths", schema::PATHS, serde_fields::<PathsSection>()),
        ("secrets", schema::SECRETS, serde_fields::<SecretsSection>()),
        (
            "secrets.file",
            schema::SECRETS_FILE,
            serde_fields::<FileSecretsSection>(),
        ),
        (
            "secrets.vault",
            schema::SECRETS_VAULT,
            serde_fields::<VaultSecretsSection>(),
        ),
        (
            "secrets.aws",
            schema::SECRETS_AWS,
            serde_fields::<AwsSecretsSection>(),
        ),
        ("ledger", schema::LEDGER, serde_fields::<LedgerSection>()),
        (
            "ledger.postgres",
            schema::LEDGER_POSTGRES,
            serde_fields::<PostgresLedgerSection>(),
        ),
        (
            "ledger.export",
            schema::LEDGER_EXPORT,
            serde_fields::<ExportSection>(),
        ),
        ("gateway", schema::GATEWAY, serde_fields::<GatewaySection>()),
        ("study", schema::STUDY, serde_fields::<StudySection>()),
        ("study.site", schema::SITE, serde_fields::<SiteSection>()),
        ("profile", schema::PROFILE, serde_fields::<ProfileSection>()),
        ("account", schema::ACCOUNT, serde_fields::<AccountSection>()),
        ("client", schema::CLIENT, serde_fields::<ClientSection>()),
        (
            "rotation",
            schema::ROTATION,
            serde_fields::<RotationSection>(),
        ),
        (
            "reconcile",
            schema::RECONCILE,
            serde_fields::<ReconcileSection>(),
        ),
        ("sop", schema::SOP, serde_fields::<SopSection>()),
        ("review", schema::REVIEW, serde_fields::<ReviewSection>()),
        ("alerts", schema::ALERTS, serde_fields::<AlertsSection>()),
        ("sop.role", schema::SOP_ROLE, serde_fields::<Role>()),
        (
            "sop.revision",
            schema::SOP_REVISION,
            serde_fields::<Revision>(),
        ),
    ];
    for (name, schema, serde) in pairs {
        assert_eq!(keys(schema), serde, "[{name}]");
    }
    // Every table the schema nests is one of those above.
    let nested: Vec<usize> = pairs
        .iter()
        .flat_map(|(_, fields, _)| fields.iter())
        .filter_map(|f| match f.kind {
            Kind::Table(t) | Kind::Tables(t) => Some(t.as_ptr() as usize),
            _ => None,
        })
        .collect();
    for ptr in nested {
        assert!(pairs.iter().any(|(_, f, _)| f.as_ptr() as usize == ptr));
    }
}

/// The field names a serde `Deserialize` asks for (of the raw struct, for
/// the sections deserialized through `try_from`).
fn serde_fields<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    #[derive(Debug)]
    struct Fields(&'static [&'static str]);
    impl std::fmt::Display for Fields {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl std::error::Error for Fields {}
    impl serde::de::Error for Fields {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Fields(&[])
        }
    }
    struct Probe;
    impl<'de> serde::Deserializer<'de> for Probe {
        type Error = Fields;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
            Err(Fields(&[]))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Fields> {
            Err(Fields(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Fields(f)) => f,
        Ok(_) => unreachable!("the probe never yields a value"),
    }
}

#[test]
fn a_bad_time_zone_is_a_problem_at_its_line_and_column() {
    let p = only(&GOOD.replace("Europe/Berlin", "Europe/Berln"));
    assert_eq!((p.line, p.column), (4, 13), "{p:?}");
    assert_eq!(p.field.as_deref(), Some("redcap.time_zone"));
    assert_eq!(
        p.message,
        "`Europe/Berln` is not a time zone name known to the IANA database"
    );
    assert!(p.fix.contains("time_zone = \"Europe/Berlin\""), "{}", p.fix);
}

/// What the file says arrives in the types that mean it: nothing a
/// consumer has to parse again.
#[test]
fn values_arrive_parsed() {
    let c = parse(GATEWAY, Path::new("w")).unwrap();
    assert_eq!(c.redcap.time_zone().iana_name(), Some("Europe/Berlin"));
    assert_eq!(c.account[0].secret.as_str(), "redcap/heart/site-a/etl");
    assert_eq!(
        c.client[0].allow[0],
        Method {
            content: redcap::Content::Record,
            action: redcap::Action::Export
        }
    );
    assert!(c.client[0].sources[0].contains("10.1.3.4".parse().unwrap()));
    assert!(c.client[0].sources[1].contains("::1".parse().unwrap()));
    let gw = &c.gateway;
    assert_eq!(gw.token_cache, std::time::Duration::from_secs(300));
    assert_eq!(gw.cutover_hold, std::time::Duration::from_secs(120));
    assert_eq!(gw.key_lifetime, jiff::SignedDuration::from_hours(90 * 24));
    assert_eq!(gw.key_overlap, jiff::SignedDuration::from_hours(7 * 24));

    let c = parse(
        &format!(
            "{GOOD}[gateway]\ntoken_cache_seconds = 5\ncutover_hold_seconds = 9\nkey_lifetime_days = 2\nkey_overlap_days = 0\n[secrets.vault]\naddress = \"https://v:8200\"\ntoken_env = \"T\"\ntimeout_seconds = 4\n"
        ),
        Path::new("w"),
    )
    .unwrap();
    let gw = &c.gateway;
    assert_eq!(gw.token_cache, std::time::Duration::from_secs(5));
    assert_eq!(gw.cutover_hold, std::time::Duration::from_secs(9));
    assert_eq!(gw.key_lifetime, jiff::SignedDuration::from_hours(48));
    assert_eq!(gw.key_overlap, jiff::SignedDuration::ZERO);
    assert_eq!(
        c.secrets.vault.unwrap().timeout,
        std::time::Duration::from_secs(4)
    );
}

#[test]
fn the_verifier_key_arrives_parsed() {
    let c = parse(
        &format!("{GOOD}[ledger]\nverifier_key = \"{VERIFIER_KEY}\"\n"),
        Path::new("w"),
    )
    .unwrap();
    let ledger = c.ledger.unwrap();
    assert_eq!(ledger.verifier_key().to_string(), VERIFIER_KEY);
    assert!(matches!(ledger.store, LedgerStore::File));
    let p = only(&format!("{GOOD}[ledger]\nverifier_key = \"nonsense\"\n"));
    assert_eq!((p.line, p.column), (6, 16), "{p:?}");
    assert_eq!(p.field.as_deref(), Some("ledger.verifier_key"));
}

/// Every file of the tool's own that the configuration leaves out lives in
/// `[paths] data_dir`, which defaults to the `data/` every one of them
/// defaulted to before.
#[test]
fn files_left_out_live_in_the_data_directory() {
    let ledger = format!("[ledger]\nverifier_key = \"{VERIFIER_KEY}\"\n");
    let files = |c: &Config| {
        [
            c.secrets.file.path.clone(),
            c.secrets.file.identity.clone(),
            c.ledger.as_ref().unwrap().dir.clone(),
            c.gateway.keys_file.clone(),
            c.gateway.accounts_file.clone(),
            c.gateway.admin_token_file.clone(),
        ]
    };
    let c = parse(&format!("{GOOD}{ledger}"), Path::new("w")).unwrap();
    assert_eq!(c.paths.data_dir, Path::new("data"));
    assert_eq!(
        files(&c).map(|p| p.display().to_string()),
        [
            "data/secrets.age",
            "data/identity.txt",
            "data/ledger",
            "data/client-keys.json",
            "data/account-status.json",
            "data/gateway-admin-token",
        ]
    );

    let c = parse(
        &format!("{GOOD}[paths]\ndata_dir = \"/var/lib/warden\"\n{ledger}"),
        Path::new("w"),
    )
    .unwrap();
    for file in files(&c) {
        assert!(file.starts_with("/var/lib/warden"), "{}", file.display());
    }

    // A key that is set names its own place.
    let c = parse(
        &format!(
            "{GOOD}[paths]\ndata_dir = \"state\"\n[secrets.file]\nidentity = \"/secure/identity.txt\"\n[gateway]\nkeys_file = \"keys.json\"\n{ledger}dir = \"/ledger\"\n"
        ),
        Path::new("w"),
    )
    .unwrap();
    assert_eq!(
        files(&c).map(|p| p.display().to_string()),
        [
            "state/secrets.age",
            "/secure/identity.txt",
            "/ledger",
            "keys.json",
            "state/account-status.json",
            "state/gateway-admin-token",
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.toml");
    std::fs::write(&path, GOOD).unwrap();
    assert_eq!(load(&path).unwrap().data_dir(), dir.path().join("data"));
    std::fs::write(&path, format!("{GOOD}[paths]\ndata_dir = \"/srv/w\"\n")).unwrap();
    assert_eq!(load(&path).unwrap().data_dir(), Path::new("/srv/w"));
}

#[test]
fn a_bad_data_directory_is_a_problem_at_its_line() {
    let p = only(&format!("{GOOD}[paths]\ndata_dir = \"\"\n"));
    assert_eq!((p.line, p.field.as_deref()), (6, Some("paths.data_dir")));
    assert!(p.message.contains("the path is empty"), "{}", p.message);
    let p = only(&format!("{GOOD}[paths]\ndata_dir = 3\n"));
    assert_eq!((p.line, p.column), (6, 12), "{p:?}");
    assert!(p.fix.contains("a path in quotes"), "{}", p.fix);
    let p = only(&format!("{GOOD}[paths]\ndatadir = \"d\"\n"));
    assert_eq!(p.field.as_deref(), Some("paths.datadir"));
    assert!(p.fix.contains("did you mean `data_dir`?"), "{}", p.fix);
}

#[test]
fn a_witness_inside_the_ledger_directory_is_refused_at_its_line() {
    let p = only(&format!(
        "{GOOD}[ledger]\nverifier_key = \"{VERIFIER_KEY}\"\nwitness_file = \"data/ledger/witness.note\"\n"
    ));
    assert_eq!((p.line, p.column), (7, 16), "{p:?}");
    assert_eq!(p.field.as_deref(), Some("ledger.witness_file"));
    assert!(
        p.message
            .contains("inside the ledger directory data/ledger")
    );
    assert!(p.fix.contains("other storage"), "{}", p.fix);
    // The ledger directory follows the data directory.
    let p = only(&format!(
        "{GOOD}[paths]\ndata_dir = \"/srv/w\"\n[ledger]\nverifier_key = \"{VERIFIER_KEY}\"\nwitness_file = \"/srv/w/ledger/w.note\"\n"
    ));
    assert!(p.message.contains("/srv/w/ledger"), "{}", p.message);
    parse(
        &format!(
            "{GOOD}[ledger]\nverifier_key = \"{VERIFIER_KEY}\"\nwitness_file = \"/mnt/other/w.note\"\n"
        ),
        Path::new("w"),
    )
    .unwrap();
}

const PROFILES: &str = r#"
[[profile]]
name = "site-etl"
extends = "site-data-import"
grant = ["data_quality_execute", "lock_records=1"]
forms = ["*:read_only", "visit:view_edit", "consent:129"]
forms_export = ["*:de_identified", "visit:full_data_set"]
"#;

#[test]
fn profiles_parse_into_rights() {
    let text = format!("{GATEWAY}{PROFILES}")
        .replace("profile = \"site-data-import\"", "profile = \"site-etl\"");
    let c = parse(&text, Path::new("w")).unwrap();
    let p = &c.profile[0];
    assert_eq!(p.extends.as_deref(), Some("site-data-import"));
    assert_eq!(p.grant[1].right, "lock_records");
    assert_eq!(p.grant[1].value, 1);
    assert_eq!(p.forms[2].right, redcap::rights::FormRight::ReadOnly);
    assert_eq!(
        p.forms_export[1].right,
        redcap::rights::ExportRight::FullDataSet
    );
    assert_eq!(c.account[0].profile.as_deref(), Some("site-etl"));
}

#[test]
fn profile_problems_are_each_reported_with_place_and_fix() {
    let text = format!("{GATEWAY}{PROFILES}")
        .replace("\"data_quality_execute\"", "\"design_everything\"")
        .replace("\"lock_records=1\"", "\"lock_records=7\"")
        .replace("\"visit:view_edit\"", "\"visit:edit\"")
        .replace("\"*:de_identified\"", "\"*:5\"")
        .replace("extends = \"site-data-import\"", "extends = \"nope\"")
        .replace("profile = \"site-data-import\"", "profile = \"missing\"");
    let p = problems(&text);
    let fields: Vec<_> = p.iter().filter_map(|p| p.field.as_deref()).collect();
    assert_eq!(
        fields,
        [
            "account[0].profile",
            "profile[0].extends",
            "profile[0].grant[0]",
            "profile[0].grant[1]",
            "profile[0].forms[1]",
            "profile[0].forms_export[0]",
        ],
        "{p:?}"
    );
    assert!(
        p[2].message
            .contains("`design_everything` is not a REDCap user right")
    );
    assert!(p[3].message.contains("lock_records"), "{}", p[3].message);
    assert!(
        p.iter()
            .all(|p| p.line > 0 && p.column > 0 && !p.fix.is_empty())
    );
    let line = text.lines().position(|l| l.starts_with("grant")).unwrap() + 1;
    assert_eq!(p[2].line, line);
}

#[test]
fn a_site_account_needs_a_profile() {
    let p = only(&GATEWAY.replace("profile = \"site-data-import\"\n", ""));
    assert_eq!(p.field.as_deref(), Some("account[0].site"));
    assert!(p.message.contains("has no profile"), "{}", p.message);
    assert!(p.fix.contains("profile = \"site-data-read\""));
}

#[test]
fn profiles_cannot_loop_or_shadow_built_ins() {
    let text = format!(
        "{GATEWAY}\n[[profile]]\nname = \"a\"\nextends = \"b\"\n\n[[profile]]\nname = \"b\"\nextends = \"a\"\n\n[[profile]]\nname = \"log-reader\"\n"
    );
    let p = problems(&text);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p[0].message.contains("loop"));
    assert!(p[2].message.contains("built-in"));
}

#[test]
fn the_rights_manager_is_an_account_of_the_study_without_a_site() {
    let text = GATEWAY.replace(
        "project_id = 14\n",
        "project_id = 14\nrights_manager = \"heart-a-etl\"\n",
    );
    let p = only(&text);
    assert_eq!(p.field.as_deref(), Some("study[0].rights_manager"));
    assert!(p.message.contains("is a site account"));
    let p = only(&text.replace(
        "rights_manager = \"heart-a-etl\"",
        "rights_manager = \"heart-rights\"",
    ));
    assert!(p.message.contains("not an [[account]]"), "{}", p.message);
    let ok = format!(
        "{}\n[[account]]\nname = \"heart-rights\"\nusername = \"svc_rights\"\nsecret = \"redcap/heart/rights\"\nstudy = \"heart\"\nprofile = \"rights-manager\"\n",
        text.replace(
            "rights_manager = \"heart-a-etl\"",
            "rights_manager = \"heart-rights\""
        )
    );
    let c = parse(&ok, Path::new("w")).unwrap();
    assert_eq!(c.study[0].rights_manager.as_deref(), Some("heart-rights"));
}

#[test]
fn a_site_may_label_its_dag_with_the_unique_name() {
    let c = parse(
        &GATEWAY.replace("dag_id = 3", "dag_id = 3\ndag_name = \"site_a\""),
        Path::new("w"),
    )
    .unwrap();
    assert_eq!(c.study[0].site[0].dag_id, 3);
    assert_eq!(c.study[0].site[0].dag_name.as_deref(), Some("site_a"));
    assert_eq!(
        parse(GATEWAY, Path::new("w")).unwrap().study[0].site[0].dag_name,
        None
    );
    let p = only(&GATEWAY.replace("dag_id = 3", "dag_id = 3\ndag_name = 7"));
    assert_eq!(p.field.as_deref(), Some("study[0].site[0].dag_name"));
    assert!(p.fix.contains("dag_name = \"site_a\""), "{}", p.fix);
}

#[test]
fn rotation_defaults_to_the_manual_issuer_and_ninety_days() {
    let text = format!(
        "{GOOD}\n[[study]]\nname = \"s\"\n\n[[account]]\nname = \"a\"\nusername = \"svc\"\nsecret = \"redcap/a\"\nstudy = \"s\"\n"
    );
    let c = parse(&text, Path::new("warden.toml")).unwrap();
    assert_eq!(c.rotation.issuer, IssuerKind::Manual);
    assert_eq!(c.account[0].rotate_every_days, DEFAULT_ROTATE_EVERY_DAYS);
    let c = parse(
        &format!("{text}rotate_every_days = 30\n\n[rotation]\nissuer = \"sandbox\"\nsandbox_url = \"http://127.0.0.1:8480\"\nsandbox_admin_secret_file = \"secret\"\n"),
        Path::new("warden.toml"),
    )
    .unwrap();
    assert_eq!(c.account[0].rotate_every_days, 30);
    assert_eq!(c.rotation.issuer, IssuerKind::Sandbox);
}

#[test]
fn an_issuer_without_its_settings_is_refused_with_what_to_add() {
    let p = problems(&format!("{GOOD}\n[rotation]\nissuer = \"sandbox\"\n"));
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p.iter()
            .all(|p| p.field.as_deref() == Some("rotation.issuer"))
    );
    assert!(
        p[0].message.contains("needs sandbox_url"),
        "{}",
        p[0].message
    );
    assert!(
        p[1].fix.contains("sandbox_admin_secret_file"),
        "{}",
        p[1].fix
    );
    let p = only(&format!("{GOOD}\n[rotation]\nissuer = \"command\"\n"));
    assert!(p.message.contains("needs command"), "{}", p.message);
    let p = only(&format!(
        "{GOOD}\n[rotation]\nsandbox_url = \"127.0.0.1:8480\"\n"
    ));
    assert_eq!(p.field.as_deref(), Some("rotation.sandbox_url"));
    let p = only(&format!(
        "{GOOD}\n[rotation]\nafter_switch_webhook = \"deploy.example.org\"\n"
    ));
    assert_eq!(p.field.as_deref(), Some("rotation.after_switch_webhook"));
    let p = only(&format!("{GOOD}\n[rotation]\nissuer = \"magic\"\n"));
    assert_eq!(p.field.as_deref(), Some("rotation.issuer"));
    let p = only(&format!(
        "{GOOD}\n[[study]]\nname = \"s\"\n\n[[account]]\nname = \"a\"\nusername = \"svc\"\nsecret = \"redcap/a\"\nstudy = \"s\"\nrotate_every_days = 0\n"
    ));
    assert_eq!(p.field.as_deref(), Some("account[0].rotate_every_days"));
}

#[test]
fn the_log_reader_is_an_account_of_the_study_without_a_site() {
    let text = GATEWAY.replace(
        "project_id = 14\n",
        "project_id = 14\nlog_reader = \"heart-a-etl\"\n",
    );
    let p = only(&text);
    assert_eq!(p.field.as_deref(), Some("study[0].log_reader"));
    assert!(p.message.contains("is a site account"), "{}", p.message);
    assert!(p.line > 0 && !p.fix.is_empty());
    let missing = text.replace("log_reader = \"heart-a-etl\"", "log_reader = \"heart-log\"");
    let p = only(&missing);
    assert!(p.message.contains("not an [[account]]"), "{}", p.message);
    assert!(p.fix.contains("log-reader"), "{}", p.fix);
    let reader = "\n[[account]]\nname = \"heart-log\"\nusername = \"svc_log\"\nsecret = \"redcap/heart/log\"\nstudy = \"heart\"\nprofile = \"log-reader\"\n";
    let c = parse(&format!("{missing}{reader}"), Path::new("w")).unwrap();
    assert_eq!(c.study[0].log_reader.as_deref(), Some("heart-log"));
    let other = format!(
        "{missing}\n[[study]]\nname = \"lung\"\n{}",
        reader.replace("study = \"heart\"", "study = \"lung\"")
    );
    let p = only(&other);
    assert!(p.message.contains("another study"), "{}", p.message);
}

#[test]
fn reconcile_tolerance_defaults_and_refuses_zero() {
    let c = parse(GATEWAY, Path::new("w")).unwrap();
    assert_eq!(c.reconcile.tolerance, std::time::Duration::from_secs(120));
    assert_eq!(c.reconcile.api_only_lookback, crate::units::from_days(30));
    assert_eq!(
        c.reconcile.every,
        Some(std::time::Duration::from_secs(3600))
    );
    let c = parse(
        &format!("{GATEWAY}\n[reconcile]\ntolerance_seconds = 30\napi_only_lookback_days = 7\n"),
        Path::new("w"),
    )
    .unwrap();
    assert_eq!(c.reconcile.tolerance, std::time::Duration::from_secs(30));
    assert_eq!(c.reconcile.api_only_lookback, crate::units::from_days(7));
    let off = parse(
        &format!("{GATEWAY}\n[reconcile]\nevery_minutes = 0\n"),
        Path::new("w"),
    )
    .unwrap();
    assert_eq!(off.reconcile.every, None);
    let p = only(&format!("{GATEWAY}\n[reconcile]\ntolerance_seconds = 0\n"));
    assert_eq!(p.field.as_deref(), Some("reconcile.tolerance_seconds"));
    assert!(p.message.contains("never agree"), "{}", p.message);
}

const APPROVER: &str = "ana@example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPL/2wWg/wiUYsiZA+ZAxr2xEVNNLfq+zXqLBJa7egEp ana";

#[test]
fn reauth_fields_parse() {
    let text = GATEWAY.replace(
        "profile = \"site-data-import\"\n",
        &format!(
            "profile = \"site-data-import\"\nreauth_every_days = 90\nlapse_after_inactive_days = 30\napprovers = [\"{APPROVER}\"]\n"
        ),
    );
    let c = parse(&text, Path::new("w")).unwrap();
    let a = &c.account[0];
    assert_eq!(
        (a.reauth_every_days, a.lapse_after_inactive_days),
        (Some(90), Some(30))
    );
    assert_eq!(a.approvers[0].principals, ["ana@example.org"]);
    assert_eq!(a.approvers[0].line, APPROVER);
    let plain = parse(GATEWAY, Path::new("w")).unwrap();
    assert!(plain.account[0].approvers.is_empty());
    assert_eq!(plain.account[0].reauth_every_days, None);
}

#[test]
fn reauth_problems_are_each_reported_with_place_and_fix() {
    let with = |extra: &str| {
        GATEWAY.replace(
            "profile = \"site-data-import\"\n",
            &format!("profile = \"site-data-import\"\n{extra}"),
        )
    };
    let p = only(&with("reauth_every_days = 90\n"));
    assert_eq!(p.field.as_deref(), Some("account[0].reauth_every_days"));
    assert!(p.message.contains("has no approvers"), "{}", p.message);
    assert!(p.fix.contains("approvers = ["), "{}", p.fix);

    let p = only(&with(&format!("approvers = [\"{APPROVER}\"]\n")));
    assert_eq!(p.field.as_deref(), Some("account[0].approvers"));
    assert!(p.fix.contains("reauth_every_days = 90"), "{}", p.fix);

    let p = only(&with(&format!(
        "reauth_every_days = 90\napprovers = [\"{}\"]\n",
        APPROVER.replace("ssh-ed25519", "ssh-rsa")
    )));
    assert_eq!(p.field.as_deref(), Some("account[0].approvers[0]"));
    assert!(
        p.message.contains("key type `ssh-rsa` cannot be verified"),
        "{}",
        p.message
    );
    assert!(p.fix.contains("ssh-keygen -t ed25519"), "{}", p.fix);

    let p = only(
        &with("reauth_every_days = 0\napprovers = [\"x\"]\n").replace(
            "approvers = [\"x\"]",
            &format!("approvers = [\"{APPROVER}\"]"),
        ),
    );
    assert_eq!(p.field.as_deref(), Some("account[0].reauth_every_days"));

    let all = problems(&with("lapse_after_inactive_days = 30\n"));
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        all[0].field.as_deref(),
        Some("account[0].lapse_after_inactive_days")
    );
    assert!(all[0].message.contains("no approval could restore it"));

    let managed = GATEWAY
        .replace(
            "project_id = 14\n",
            "project_id = 14\nrights_manager = \"heart-rights\"\n",
        )
        .replace(
            "[[client]]",
            &format!("[[account]]\nname = \"heart-rights\"\nusername = \"svc_rights\"\nsecret = \"redcap/heart/rights\"\nstudy = \"heart\"\nreauth_every_days = 90\napprovers = [\"{APPROVER}\"]\n\n[[client]]"),
        );
    let p = only(&managed);
    assert_eq!(p.field.as_deref(), Some("account[1].reauth_every_days"));
    assert!(
        p.message.contains("rights manager, which cannot lapse"),
        "{}",
        p.message
    );
}

const SOP: &str = r#"
[sop]
document_id = "SOP-IT-017"
version = "1.1"
approved = "approved-sop.md"
owner = { name = "Research IT", deputy = "A. Smith" }
approver = { name = "Head of Data Management", deputy = "B. Jones" }
operator = { name = "J. Doe", deputy = "C. Brown", contact = "redcap-ops@example.org" }
redcap_admin = { name = "REDCap team", deputy = "D. Green", contact = "redcap-admin@example.org" }
[[sop.revision]]
version = "1.0"
date = "2026-11-01"
author = "J. Doe"
change = "first issue"
[[sop.revision]]
version = "1.1"
date = "2026-12-01"
author = "J. Doe"
change = "rotation every 60 days"
"#;

#[test]
fn an_sop_section_parses() {
    let text = format!("{GOOD}{SOP}");
    let c = parse(&text, Path::new("warden.toml")).expect("parses");
    let sop = c.sop.expect("[sop]");
    assert_eq!(sop.document_id, "SOP-IT-017");
    assert_eq!(
        sop.redcap_admin.contact.as_deref(),
        Some("redcap-admin@example.org")
    );
    assert_eq!(sop.revision.len(), 2);
    assert_eq!(sop.approved.as_deref(), Some(Path::new("approved-sop.md")));
}

#[test]
fn sop_problems_name_the_field_and_the_fix() {
    let text = format!("{GOOD}{SOP}")
        .replace("deputy = \"B. Jones\"", "deputy = \"Head of Data Management\"")
        .replace("date = \"2026-11-01\"", "date = \"1 Nov 2026\"")
        .replace("version = \"1.1\"\napproved", "version = \"1.2\"\napproved")
        .replace("redcap_admin = { name = \"REDCap team\", deputy = \"D. Green\", contact = \"redcap-admin@example.org\" }\n", "");
    let e = parse(&text, Path::new("warden.toml")).expect_err("problems");
    let fields: Vec<_> = e
        .problems
        .iter()
        .filter_map(|p| p.field.as_deref())
        .collect();
    for f in [
        "sop.approver.deputy",
        "sop.revision[0].date",
        "sop.version",
        "sop.redcap_admin",
    ] {
        assert!(fields.contains(&f), "{f} missing in {fields:?}");
    }
    let version = e
        .problems
        .iter()
        .find(|p| p.field.as_deref() == Some("sop.version"))
        .unwrap();
    assert!(version.message.contains("`1.1`"), "{}", version.message);
    assert!(version.fix.contains("[[sop.revision]]"), "{}", version.fix);
}

/// `GATEWAY` with `heart-a-etl` made the first member of a dual pair whose
/// second member is `heart-a-etl-2`.
fn dual_gateway() -> String {
    GATEWAY.replace(
        "profile = \"site-data-import\"\n",
        "profile = \"site-data-import\"\nmode = \"dual\"\npartner = \"heart-a-etl-2\"\n\n[[account]]\nname = \"heart-a-etl-2\"\nusername = \"svc_heart_a_etl_2\"\nsecret = \"redcap/heart/site-a/etl-2\"\nstudy = \"heart\"\nsite = \"site-a\"\nprofile = \"site-data-import\"\nmode = \"dual\"\npartner = \"heart-a-etl\"\n",
    )
}

#[test]
fn a_dual_pair_names_each_other_in_the_same_study_site_and_profile() {
    let text = dual_gateway();
    let c = parse(&text, Path::new("w")).unwrap();
    assert_eq!(c.account[0].mode, AccountMode::Dual);
    assert_eq!(c.account[1].partner.as_deref(), Some("heart-a-etl"));
    assert_eq!(c.account[0].pair_key().as_deref(), Some("heart-a-etl"));
    assert_eq!(c.account[1].pair_key().as_deref(), Some("heart-a-etl"));
    let single = parse(GATEWAY, Path::new("w")).unwrap();
    assert_eq!(single.account[0].mode, AccountMode::Single);
    assert_eq!(single.account[0].pair_key(), None);

    // The second member in another site: one problem, naming both.
    let p = only(&text.replacen(
        "site = \"site-a\"\nprofile = \"site-data-import\"\nmode = \"dual\"\npartner = \"heart-a-etl\"",
        "profile = \"site-data-import\"\nmode = \"dual\"\npartner = \"heart-a-etl\"",
        1,
    ));
    assert_eq!(p.field.as_deref(), Some("account[0].site"));
    assert!(
        p.message
            .contains("`heart-a-etl` and `heart-a-etl-2` differ in site (`site-a` and none)"),
        "{}",
        p.message
    );
    assert!(p.fix.contains("same site"), "{}", p.fix);
    let p = only(&text.replace(
        "profile = \"site-data-import\"\nmode = \"dual\"\npartner = \"heart-a-etl\"",
        "profile = \"site-data-read\"\nmode = \"dual\"\npartner = \"heart-a-etl\"",
    ));
    assert!(p.message.contains("differ in profile"), "{}", p.message);

    // A partner that does not name this one back, or is not dual.
    let p = only(&text.replace(
        "mode = \"dual\"\npartner = \"heart-a-etl\"\n",
        "mode = \"single\"\n",
    ));
    assert_eq!(p.field.as_deref(), Some("account[0].partner"));
    assert!(
        p.message.contains("is not mode = \"dual\""),
        "{}",
        p.message
    );
    assert!(p.fix.contains("partner = \"heart-a-etl\""), "{}", p.fix);
    // Dual without a partner, a partner without dual, an unknown partner,
    // oneself.
    let p = problems(&text.replace("partner = \"heart-a-etl-2\"\n", ""));
    assert!(
        p.iter()
            .any(|p| p.field.as_deref() == Some("account[0].mode")
                && p.message.contains("without a partner")),
        "{p:?}"
    );
    let p = only(&GATEWAY.replace(
        "profile = \"site-data-import\"\n",
        "profile = \"site-data-import\"\npartner = \"x\"\n",
    ));
    assert!(
        p.message.contains("is not mode = \"dual\""),
        "{}",
        p.message
    );
    let p = problems(&text.replace("partner = \"heart-a-etl-2\"", "partner = \"nobody\""));
    assert!(
        p.iter()
            .any(|p| p.message.contains("partner `nobody`, which is not defined")),
        "{p:?}"
    );
    let p = problems(&text.replace("partner = \"heart-a-etl-2\"", "partner = \"heart-a-etl\""));
    assert!(
        p.iter().any(|p| p.message.contains("names itself")),
        "{p:?}"
    );
    let p = problems(&text.replace(
        "mode = \"dual\"\npartner = \"heart-a-etl-2\"",
        "mode = \"twin\"\npartner = \"heart-a-etl-2\"",
    ));
    assert!(
        p.iter()
            .any(|p| p.field.as_deref() == Some("account[0].mode")
                && p.message.contains("expected `single` or `dual`")),
        "{p:?}"
    );
}

#[test]
fn alerts_default_to_the_ledger_only_and_read_their_targets() {
    let c = parse(GATEWAY, Path::new("w")).unwrap();
    assert_eq!(c.alerts.webhook, None);
    assert_eq!(c.alerts.syslog, None);
    assert_eq!(c.alerts.min_severity, Severity::Warning);
    assert_eq!(c.alerts.webhook_header, DEFAULT_WEBHOOK_HEADER);
    let c = parse(
        &format!(
            "{GATEWAY}\n[alerts]\nwebhook = \"https://alerts.example.org/h\"\nwebhook_secret = \"alerts/webhook\"\nwebhook_timeout_seconds = 3\nwebhook_retries = 0\nsyslog = \"udp://127.0.0.1:5514\"\nmin_severity = \"critical\"\n"
        ),
        Path::new("w"),
    )
    .unwrap();
    assert_eq!(
        c.alerts.webhook.as_deref(),
        Some("https://alerts.example.org/h")
    );
    assert_eq!(
        c.alerts.webhook_secret.as_ref().map(|s| s.to_string()),
        Some("alerts/webhook".to_string())
    );
    assert_eq!(c.alerts.webhook_timeout, std::time::Duration::from_secs(3));
    assert_eq!(c.alerts.webhook_retries, 0);
    assert_eq!(
        c.alerts.syslog,
        Some(SyslogTarget::Udp("127.0.0.1:5514".into()))
    );
    assert_eq!(c.alerts.min_severity, Severity::Critical);
    let local = parse(
        &format!("{GATEWAY}\n[alerts]\nsyslog = \"local\"\n"),
        Path::new("w"),
    )
    .unwrap();
    assert_eq!(
        local.alerts.syslog,
        Some(SyslogTarget::Local("/dev/log".into()))
    );
}

#[test]
fn alerts_with_a_bad_target_say_what_to_write() {
    for (line, field, words) in [
        ("webhook = \"ftp://x\"", "alerts.webhook", "http://"),
        ("syslog = \"10.0.0.1\"", "alerts.syslog", "udp://host:port"),
        (
            "syslog = \"udp://host\"",
            "alerts.syslog",
            "udp://host:port",
        ),
        (
            "webhook_header = \"X Bad\"",
            "alerts.webhook_header",
            "header name",
        ),
        ("min_severity = \"loud\"", "alerts.min_severity", "loud"),
    ] {
        let p = only(&format!("{GATEWAY}\n[alerts]\n{line}\n"));
        assert_eq!(p.field.as_deref(), Some(field), "{line}: {p:?}");
        assert!(p.message.contains(words), "{line}: {}", p.message);
        assert!(!p.fix.is_empty());
    }
    let p = only(&format!(
        "{GATEWAY}\n[alerts]\nwebhook_secret = \"alerts/webhook\"\n"
    ));
    assert_eq!(p.field.as_deref(), Some("alerts.webhook_secret"));
    assert!(p.message.contains("no webhook"), "{}", p.message);
}

//! `redcap-warden config check` and the global conventions (exit codes,
//! --json, --version, completions), run as a user would run them.

use assert_cmd::Command;

const GOOD: &str =
    "[redcap]\nurl = \"https://redcap.example.org/api/\"\ntime_zone = \"America/Chicago\"\n";

fn warden(dir: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("redcap-warden").unwrap();
    cmd.current_dir(dir);
    cmd
}

fn check(text: &str, json: bool) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warden.toml"), text).unwrap();
    let mut cmd = warden(dir.path());
    cmd.args(["config", "check"]);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_sound_file_exits_zero() {
    let (code, out, err) = check(GOOD, false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("warden.toml: ok (sha256 "), "{out}");
}

#[test]
fn a_typo_gives_one_precise_message_and_exit_one() {
    let (code, out, _) = check(&GOOD.replace("time_zone", "timezone"), false);
    assert_eq!(code, 1);
    assert_eq!(
        out.trim_end(),
        "warden.toml:3:1: `redcap.timezone`: unknown field `timezone`, expected `url` or `time_zone`; fix: did you mean `time_zone`? rename the key or remove it"
    );
}

#[test]
fn a_missing_field_gives_one_precise_message() {
    let (code, out, _) = check("[redcap]\ntime_zone = \"UTC\"\n", false);
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("warden.toml:1:1: `redcap.url`: missing field `url`; fix: add `url = …` to the [redcap] table"), "{out}");
}

#[test]
fn a_wrong_type_gives_one_precise_message() {
    let (code, out, _) = check(&GOOD.replace("\"America/Chicago\"", "true"), false);
    assert_eq!(code, 1);
    assert_eq!(
        out.trim_end(),
        "warden.toml:3:13: `redcap.time_zone`: invalid type: boolean `true`, expected a string; fix: write a string here"
    );
}

#[test]
fn a_bad_time_zone_gives_one_precise_message() {
    let (code, out, _) = check(&GOOD.replace("America/Chicago", "America/Chicgo"), false);
    assert_eq!(code, 1);
    assert_eq!(
        out.trim_end(),
        "warden.toml:3:13: `redcap.time_zone`: `America/Chicgo` is not a time zone name known to the IANA database; fix: write the IANA name of the REDCap server's time zone, e.g. time_zone = \"Europe/Berlin\""
    );
}

#[test]
fn the_data_directory_is_checked_like_every_key() {
    let (code, out, _) = check(
        &format!("{GOOD}[paths]\ndata_dir = \"\"\ndata = 1\n"),
        false,
    );
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("warden.toml:5:12: `paths.data_dir`: the path is empty; fix: "),
        "{out}"
    );
    assert!(
        lines[1].starts_with(
            "warden.toml:6:1: `paths.data`: unknown field `data`, expected `data_dir`"
        ),
        "{out}"
    );
    let (code, out, err) = check(
        &format!("{GOOD}[paths]\ndata_dir = \"/var/lib/warden\"\n"),
        false,
    );
    assert_eq!(code, 0, "{out}{err}");
}
#[test]
fn json_output_is_data() {
    let (code, out, _) = check(&GOOD.replace("url", "ur1"), true);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["field"], "redcap.ur1");
    assert_eq!(v["problems"][0]["line"], 2);
    let (code, out, _) = check(GOOD, true);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
}

#[test]
fn a_missing_file_is_an_error_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = warden(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("warden.toml: cannot read the configuration file"),
        "{err}"
    );
    assert!(err.contains("redcap-warden init"), "{err}");
}

#[test]
fn a_missing_file_names_its_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = warden(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    // ENOENT: "No such file or directory (os error 2)", printed once.
    let os = std::io::Error::from_raw_os_error(2).to_string();
    assert_eq!(err.matches(&os).count(), 1, "{os}: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Issue #19 item 6: every problem in one run, each with its place, the
/// full path of the field and a fix in words, sorted by line.
#[test]
fn every_problem_is_listed_in_one_run() {
    let text = r#"[redcap]
url = "https://redcap.example.org/api/"
time_zone = "Europe/Berlim"

[gateway]
listen = "0.0.0.0:8470"
outbound_per_minut = 100
max_input_vars = 0

[[study]]
name = "heart"

[[study.site]]
name = "site-a"
dag_id = 3

[[study.site]]
name = "site-b"
dag_id = "4"

[[study.site]]
name = "site-c"
dag_id = 3

[[account]]
name = "heart-etl"
username = "svc_etl"
secret = "redcap/heart/etl"
study = "heart"

[[client]]
name = "etl"
account = "heart-elt"
allow = ["record:export", "recrod:import"]
"#;
    let (code, out, err) = check(text, false);
    assert_eq!(code, 1, "{out}{err}");
    let places: Vec<&str> = out
        .lines()
        .map(|l| {
            let end = l.find("`: ").expect(l);
            &l[..end + 1]
        })
        .collect();
    assert_eq!(
        places,
        [
            "warden.toml:3:13: `redcap.time_zone`",
            "warden.toml:6:10: `gateway.listen`",
            "warden.toml:7:1: `gateway.outbound_per_minut`",
            "warden.toml:8:18: `gateway.max_input_vars`",
            "warden.toml:19:10: `study[0].site[1].dag_id`",
            "warden.toml:23:10: `study[0].site[2].dag_id`",
            "warden.toml:33:11: `client[0].account`",
            "warden.toml:34:27: `client[0].allow[1]`",
        ],
        "{out}"
    );
    assert!(out.contains("did you mean `outbound_per_minute`?"), "{out}");
    assert!(
        out.contains("invalid type: string \"4\", expected a whole number; fix: write a whole number here, e.g. dag_id = 3"),
        "{out}"
    );
    for rust in ["u64", "usize", "u32", "SocketAddr", "bool"] {
        assert!(
            !out.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w == rust),
            "{rust} reaches the user: {out}"
        );
    }

    let (code, out, _) = check(text, true);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 8, "{out}");
    assert_eq!(problems[4]["field"], "study[0].site[1].dag_id");
    assert_eq!(problems[4]["line"], 19);
    assert_eq!(problems[4]["column"], 10);
}

#[test]
fn the_config_flag_chooses_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("other.toml"), GOOD).unwrap();
    let out = warden(dir.path())
        .args(["--config", "other.toml", "config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn version_help_and_completions_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = warden(dir.path()).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("redcap-warden {}", env!("CARGO_PKG_VERSION"))
    );
    let out = warden(dir.path()).arg("--help").output().unwrap();
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("Exit codes: 0 all well, 1 findings, 2 error")
    );
    let out = warden(dir.path())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("redcap-warden")
    );
}

#[test]
fn usage_errors_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let out = warden(dir.path()).arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

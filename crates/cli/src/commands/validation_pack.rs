//! `validation-pack --out DIR`: the traceability matrix and operational
//! qualification (OQ) evidence a QA unit files — each requirement of
//! compliance.md, the tests that cover it, this run's result of each, and
//! the version and SHA-256 of the binary that wrote the pack.
//!
//! The mapping is `docs/validation/requirements.toml`, built into the
//! binary (a test keeps it honest: every requirement names a test, every
//! test named exists). The results are nextest's JUnit report
//! (`.config/nextest.toml` writes `target/nextest/default/junit.xml` on
//! every run, so `scripts/test` leaves one); `--run` runs the mapped tests
//! first. A mapped test that failed, was skipped or is missing from the
//! report makes the pack say so and the command exit 1: evidence with a
//! hole in it is not passed off as whole.
//!
//! DIR receives `matrix.md`, `matrix.html` (self-contained),
//! `results.json`, `results.xml` (the JUnit report as read),
//! `requirements.toml` (the mapping used) and `binary.sha256`
//! (`sha256sum -c` checks it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Outcome;
use crate::args::Args;

/// The mapping built into the binary.
pub const REQUIREMENTS: &str = include_str!("../../../../docs/validation/requirements.toml");

/// Where nextest writes its JUnit report (`.config/nextest.toml`),
/// relative to the workspace.
pub const DEFAULT_JUNIT: &str = "target/nextest/default/junit.xml";

/// `requirements.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mapping {
    requirement: Vec<Requirement>,
}

/// One requirement and its tests.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Requirement {
    id: String,
    text: String,
    sources: Vec<String>,
    consequence: String,
    tests: Vec<String>,
}

/// A test as nextest names it: its binary id and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TestRef {
    binary: String,
    name: String,
}

impl TestRef {
    fn parse(raw: &str) -> anyhow::Result<TestRef> {
        match raw.trim().split_once(' ') {
            Some((binary, name)) if !binary.is_empty() && !name.trim().is_empty() => Ok(TestRef {
                binary: binary.to_string(),
                name: name.trim().to_string(),
            }),
            _ => bail!(
                "`{raw}` is not a test as nextest names it; write \"<binary id> <test name>\", e.g. \"gateway::e2e a_failing_ledger_refuses_requests_and_forwards_nothing\""
            ),
        }
    }
}

/// What became of a test in the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Status {
    Passed,
    Failed,
    Skipped,
    NotRun,
}

impl Status {
    fn word(&self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "FAILED",
            Status::Skipped => "SKIPPED",
            Status::NotRun => "NOT RUN",
        }
    }
}

/// One test case of the JUnit report.
#[derive(Debug, Clone)]
struct Case {
    status: Status,
    seconds: Option<f64>,
}

/// The JUnit report.
#[derive(Debug, Default)]
struct Report {
    cases: HashMap<TestRef, Case>,
    timestamp: Option<String>,
}

/// Reads nextest's JUnit XML: each `testcase` (its `classname` is the
/// binary id), failed when it holds `failure` or `error`, skipped when it
/// holds `skipped`.
fn parse_junit(xml: &str) -> anyhow::Result<Report> {
    let mut reader = Reader::from_str(xml);
    let mut report = Report::default();
    let mut open: Option<(TestRef, Case)> = None;
    loop {
        let event = reader
            .read_event()
            .with_context(|| format!("at byte {}", reader.buffer_position()))?;
        match event {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == "testsuites" => {
                report.timestamp = attr(&e, "timestamp")?;
            }
            Event::Start(e) if e.name().as_ref() == "testcase" => {
                open = Some(case_of(&e)?);
            }
            Event::Empty(e) if e.name().as_ref() == "testcase" => {
                let (t, c) = case_of(&e)?;
                report.cases.insert(t, c);
            }
            Event::Start(e) | Event::Empty(e) => {
                if let Some((_, case)) = open.as_mut() {
                    match e.name().as_ref() {
                        "failure" | "error" => case.status = Status::Failed,
                        "skipped" if case.status != Status::Failed => case.status = Status::Skipped,
                        _ => {}
                    }
                }
            }
            Event::End(e) if e.name().as_ref() == "testcase" => {
                if let Some((t, c)) = open.take() {
                    report.cases.insert(t, c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if report.cases.is_empty() {
        bail!("it holds no test case");
    }
    Ok(report)
}

fn attr(e: &BytesStart<'_>, name: &str) -> anyhow::Result<Option<String>> {
    Ok(match e.try_get_attribute(name)? {
        Some(a) => Some(
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)?
                .into_owned(),
        ),
        None => None,
    })
}

fn case_of(e: &BytesStart<'_>) -> anyhow::Result<(TestRef, Case)> {
    let name = attr(e, "name")?.context("a testcase without a name")?;
    let binary = attr(e, "classname")?.context("a testcase without a classname")?;
    let seconds = attr(e, "time")?.and_then(|t| t.parse().ok());
    Ok((
        TestRef { binary, name },
        Case {
            status: Status::Passed,
            seconds,
        },
    ))
}

/// The binary that writes the pack: its path, version and SHA-256.
struct Binary {
    path: PathBuf,
    version: &'static str,
    sha256: String,
}

fn this_binary() -> anyhow::Result<Binary> {
    let path = std::env::current_exe().context("finding this program's file")?;
    let bytes =
        std::fs::read(&path).with_context(|| format!("reading {} to hash it", path.display()))?;
    Ok(Binary {
        sha256: hex::encode(Sha256::digest(&bytes)),
        path,
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// One row of the matrix.
#[derive(Serialize)]
struct Row {
    requirement: Requirement,
    results: Vec<TestResult>,
}

#[derive(Serialize)]
struct TestResult {
    binary: String,
    name: String,
    status: Status,
    seconds: Option<f64>,
}

impl Row {
    fn complete(&self) -> bool {
        self.results.iter().all(|r| r.status == Status::Passed)
    }
}

/// Loads and checks a mapping: ids unique, each requirement with a test,
/// each test well formed.
fn load_mapping(text: &str, from: &str) -> anyhow::Result<Vec<Requirement>> {
    let m: Mapping = toml::from_str(text).with_context(|| format!("reading {from}"))?;
    let mut seen = std::collections::HashSet::new();
    for r in &m.requirement {
        if !seen.insert(r.id.clone()) {
            bail!("{from}: requirement {} is listed twice", r.id);
        }
        if r.tests.is_empty() {
            bail!(
                "{from}: requirement {} names no test; name at least one test that shows it is met",
                r.id
            );
        }
        for t in &r.tests {
            TestRef::parse(t).with_context(|| format!("{from}: requirement {}", r.id))?;
        }
    }
    if m.requirement.is_empty() {
        bail!("{from} lists no requirement");
    }
    Ok(m.requirement)
}

/// `validation-pack`: read the mapping, (run the tests,) read their
/// results, pair the two, write the pack, say what is not met.
pub fn run(
    _args: &Args,
    out: &Path,
    junit: Option<&Path>,
    run_tests: bool,
    requirements: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let (text, from) = read_mapping(requirements)?;
    let mapping = load_mapping(&text, &from)?;
    let junit = junit.map_or_else(|| PathBuf::from(DEFAULT_JUNIT), Path::to_path_buf);
    if run_tests {
        run_mapped_tests(&mapping)?;
    }
    let xml = std::fs::read_to_string(&junit).with_context(|| {
        format!(
            "reading the test results {}; run the tests first (scripts/test, or cargo nextest run, which write it), pass --run, or name the report with --junit FILE",
            junit.display()
        )
    })?;
    let report = parse_junit(&xml)
        .with_context(|| format!("{} is not a JUnit report nextest wrote", junit.display()))?;
    let binary = this_binary()?;
    let rows = pair(mapping, &report);
    let pack = Pack {
        written: jiff::Timestamp::now().to_string(),
        binary: &binary,
        junit: &junit,
        junit_timestamp: report.timestamp.as_deref(),
        commit: source_commit(),
        rows: &rows,
    };
    pack.write(out, &text, &xml)?;
    let complete = print_summary(&rows);
    println!(
        "Wrote the validation pack to {} (redcap-warden {}, sha256 {})",
        out.display(),
        binary.version,
        binary.sha256
    );
    Ok(if complete {
        Outcome::Clean
    } else {
        eprintln!(
            "redcap-warden: some mapped tests failed or did not run: the pack is not evidence that every requirement is met"
        );
        Outcome::Findings
    })
}

/// The mapping's text and where it came from: `--requirements FILE`, or
/// the one built in.
fn read_mapping(requirements: Option<&Path>) -> anyhow::Result<(String, String)> {
    Ok(match requirements {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            REQUIREMENTS.to_string(),
            "the built-in docs/validation/requirements.toml".to_string(),
        ),
    })
}

/// Each requirement with the result of each of its tests (not in the
/// report: not run).
fn pair(mapping: Vec<Requirement>, report: &Report) -> Vec<Row> {
    mapping
        .into_iter()
        .map(|requirement| {
            let results = requirement
                .tests
                .iter()
                .map(|raw| {
                    let t = TestRef::parse(raw).expect("checked by load_mapping");
                    let case = report.cases.get(&t);
                    TestResult {
                        status: case.map_or(Status::NotRun, |c| c.status.clone()),
                        seconds: case.and_then(|c| c.seconds),
                        binary: t.binary,
                        name: t.name,
                    }
                })
                .collect();
            Row {
                requirement,
                results,
            }
        })
        .collect()
}

/// One line per requirement, and each test of it that did not pass;
/// whether every requirement is met.
fn print_summary(rows: &[Row]) -> bool {
    let mut complete = true;
    for r in rows {
        let passed = r
            .results
            .iter()
            .filter(|t| t.status == Status::Passed)
            .count();
        complete &= r.complete();
        println!(
            "{} {:<8} {passed}/{} tests passed  {}",
            r.requirement.id,
            if r.complete() { "met" } else { "NOT MET" },
            r.results.len(),
            r.requirement.text
        );
        for t in r.results.iter().filter(|t| t.status != Status::Passed) {
            println!("      {} {} {}", t.status.word(), t.binary, t.name);
        }
    }
    complete
}

/// `--run`: the mapped tests through `scripts/test` (which starts the
/// services some of them need) when it is here, else `cargo nextest run`;
/// a nextest filter picks exactly the mapped tests. Their outcome is read
/// from the JUnit report afterwards, not from the exit status.
fn run_mapped_tests(mapping: &[Requirement]) -> anyhow::Result<()> {
    let mut filters: Vec<String> = mapping
        .iter()
        .flat_map(|r| r.tests.iter())
        .map(|raw| {
            let t = TestRef::parse(raw).expect("checked by load_mapping");
            format!("(binary_id(={}) & test(={}))", t.binary, t.name)
        })
        .collect();
    filters.sort();
    filters.dedup();
    let filter = filters.join(" | ");
    let script = Path::new("scripts/test");
    let mut cmd = if script.exists() {
        let mut c = std::process::Command::new(script);
        c.arg("-E").arg(&filter);
        c
    } else {
        let mut c = std::process::Command::new("cargo");
        c.args([
            "nextest",
            "run",
            "--workspace",
            "--all-targets",
            "--no-fail-fast",
            "-E",
        ])
        .arg(&filter);
        c
    };
    eprintln!(
        "running the {} mapped tests ({})",
        filters.len(),
        if script.exists() {
            "scripts/test"
        } else {
            "cargo nextest run"
        }
    );
    let status = cmd.status().context(
        "starting the tests (run validation-pack --run from the workspace, with cargo-nextest installed)",
    )?;
    if !status.success() {
        eprintln!(
            "the test run ended with {status}; the pack records each mapped test's own result"
        );
    }
    Ok(())
}

/// The working directory's commit, when it is a git checkout (what the
/// tests were built from, if the pack is written where they ran).
fn source_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
}

/// Everything the two matrix files say.
struct Pack<'a> {
    written: String,
    binary: &'a Binary,
    junit: &'a Path,
    junit_timestamp: Option<&'a str>,
    commit: Option<String>,
    rows: &'a [Row],
}

impl Pack<'_> {
    /// Writes every file of the pack into `out` (made if missing).
    fn write(&self, out: &Path, mapping: &str, junit: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let write = |name: &str, body: &[u8]| -> anyhow::Result<()> {
            let p = out.join(name);
            std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))
        };
        write("matrix.md", self.markdown().as_bytes())?;
        write("matrix.html", self.html().as_bytes())?;
        write(
            "results.json",
            serde_json::to_string_pretty(self.rows)?.as_bytes(),
        )?;
        write("results.xml", junit.as_bytes())?;
        write("requirements.toml", mapping.as_bytes())?;
        write(
            "binary.sha256",
            format!("{}  {}\n", self.binary.sha256, self.binary.path.display()).as_bytes(),
        )
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let tests: usize = self.rows.iter().map(|r| r.results.len()).sum();
        let passed: usize = self
            .rows
            .iter()
            .flat_map(|r| &r.results)
            .filter(|t| t.status == Status::Passed)
            .count();
        let met = self.rows.iter().filter(|r| r.complete()).count();
        vec![
            ("Written (UTC)", self.written.clone()),
            ("Binary", self.binary.path.display().to_string()),
            ("Version", format!("redcap-warden {}", self.binary.version)),
            ("Binary SHA-256", self.binary.sha256.clone()),
            (
                "Source commit",
                self.commit
                    .clone()
                    .unwrap_or_else(|| "(not a git checkout)".into()),
            ),
            ("Test results", self.junit.display().to_string()),
            (
                "Test run started",
                self.junit_timestamp.unwrap_or("(not in the report)").into(),
            ),
            ("Requirements met", format!("{met} of {}", self.rows.len())),
            ("Mapped tests passed", format!("{passed} of {tests}")),
        ]
    }

    fn markdown(&self) -> String {
        let mut s = String::from("# Validation pack: traceability matrix and OQ evidence\n\n");
        for (k, v) in self.facts() {
            s += &format!("- **{k}**: {}\n", md(&v));
        }
        s += "\n| Requirement | Sources | Tests | Result |\n|---|---|---|---|\n";
        for r in self.rows {
            let passed = r
                .results
                .iter()
                .filter(|t| t.status == Status::Passed)
                .count();
            s += &format!(
                "| {} {} | {} | {passed}/{} | {} |\n",
                r.requirement.id,
                md(&r.requirement.text),
                md(&r.requirement.sources.join(", ")),
                r.results.len(),
                if r.complete() { "met" } else { "**NOT MET**" }
            );
        }
        for r in self.rows {
            s += &format!(
                "\n## {} {}\n\n{}\n\nSources: {}\n\n| Test | Binary | Result | Time (s) |\n|---|---|---|---|\n",
                r.requirement.id,
                md(&r.requirement.text),
                md(&r.requirement.consequence),
                md(&r.requirement.sources.join(", "))
            );
            for t in &r.results {
                s += &format!(
                    "| `{}` | `{}` | {} | {} |\n",
                    t.name,
                    t.binary,
                    t.status.word(),
                    t.seconds.map_or("-".into(), |x| format!("{x:.3}"))
                );
            }
        }
        s
    }

    fn html(&self) -> String {
        let mut s = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Validation pack — redcap-warden</title>\n<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}table{border-collapse:collapse;width:100%;margin:1em 0}th,td{border:1px solid #999;padding:.3em .5em;text-align:left;vertical-align:top}th{background:#eee}.met{color:#060}.not{color:#b00;font-weight:bold}code{font-size:90%}dt{font-weight:bold}</style></head><body>\n<h1>Validation pack: traceability matrix and OQ evidence</h1>\n<dl>",
        );
        for (k, v) in self.facts() {
            s += &format!("<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
        }
        s += "</dl>\n<table><tr><th>Requirement</th><th>Sources</th><th>Tests</th><th>Result</th></tr>\n";
        for r in self.rows {
            let passed = r
                .results
                .iter()
                .filter(|t| t.status == Status::Passed)
                .count();
            s += &format!(
                "<tr><td><a href=\"#{id}\">{id}</a> {}</td><td>{}</td><td>{passed}/{}</td><td class=\"{}\">{}</td></tr>\n",
                esc(&r.requirement.text),
                esc(&r.requirement.sources.join(", ")),
                r.results.len(),
                if r.complete() { "met" } else { "not" },
                if r.complete() { "met" } else { "NOT MET" },
                id = esc(&r.requirement.id),
            );
        }
        s += "</table>\n";
        for r in self.rows {
            s += &format!(
                "<h2 id=\"{id}\">{id} {}</h2><p>{}</p><p>Sources: {}</p><table><tr><th>Test</th><th>Binary</th><th>Result</th><th>Time (s)</th></tr>\n",
                esc(&r.requirement.text),
                esc(&r.requirement.consequence),
                esc(&r.requirement.sources.join(", ")),
                id = esc(&r.requirement.id),
            );
            for t in &r.results {
                s += &format!(
                    "<tr><td><code>{}</code></td><td><code>{}</code></td><td class=\"{}\">{}</td><td>{}</td></tr>\n",
                    esc(&t.name),
                    esc(&t.binary),
                    if t.status == Status::Passed {
                        "met"
                    } else {
                        "not"
                    },
                    t.status.word(),
                    t.seconds.map_or("-".into(), |x| format!("{x:.3}"))
                );
            }
            s += "</table>\n";
        }
        s += "</body></html>\n";
        s
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Table cells: a `|` would end the cell.
fn md(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The package name of each crate directory, so a binary id
    /// (`package` or `package::target`) leads to its source.
    fn packages() -> HashMap<String, PathBuf> {
        let mut map = HashMap::new();
        for dir in std::fs::read_dir(workspace().join("crates")).unwrap() {
            let dir = dir.unwrap().path();
            let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
                continue;
            };
            let doc: toml::Table = toml::from_str(&manifest).unwrap();
            let name = doc["package"]["name"].as_str().unwrap().to_string();
            map.insert(name, dir);
        }
        map
    }

    /// Every `.rs` file under `dir`.
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Whether the test exists: an integration test (`package::file`) is a
    /// `fn name` in `tests/file.rs`; a unit test (`package`, or
    /// `package::bin/x`) a `fn` of its last path segment in a module
    /// whose file or directory names the path's first segment.
    fn exists(t: &TestRef, packages: &HashMap<String, PathBuf>) -> Result<(), String> {
        let (package, target) = match t.binary.split_once("::") {
            Some((p, t)) => (p, Some(t)),
            None => (t.binary.as_str(), None),
        };
        let dir = packages
            .get(package)
            .ok_or_else(|| format!("no package `{package}` in crates/"))?;
        let name = t.name.rsplit("::").next().unwrap();
        let needle = format!("fn {name}(");
        let files: Vec<PathBuf> = match target {
            Some(file) if !file.starts_with("bin/") => {
                vec![dir.join("tests").join(format!("{file}.rs"))]
            }
            _ => {
                let mut all = Vec::new();
                sources(&dir.join("src"), &mut all);
                let first = t.name.split("::").next().unwrap();
                all.into_iter()
                    .filter(|p| {
                        !t.name.contains("::")
                            || p.components().any(|c| c.as_os_str() == first)
                            || p.file_stem().is_some_and(|s| s == first)
                    })
                    .collect()
            }
        };
        for f in &files {
            if std::fs::read_to_string(f).is_ok_and(|src| src.contains(&needle)) {
                return Ok(());
            }
        }
        Err(format!("no `{needle}` in {files:?}"))
    }

    /// The honesty test of docs/validation/requirements.toml.
    #[test]
    fn the_requirements_map_to_tests_that_exist() {
        let mapping = load_mapping(REQUIREMENTS, "requirements.toml").unwrap();
        let packages = packages();
        let mut missing = Vec::new();
        for r in &mapping {
            assert!(!r.tests.is_empty(), "{} names no test", r.id);
            for raw in &r.tests {
                let t = TestRef::parse(raw).unwrap();
                if let Err(e) = exists(&t, &packages) {
                    missing.push(format!("{}: {raw}: {e}", r.id));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "tests named that do not exist:\n{}",
            missing.join("\n")
        );
        // compliance.md, where it sits beside the repository (the
        // project's shared/ folder), lists exactly these requirements.
        let compliance = std::env::var_os("WARDEN_COMPLIANCE_MD")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("../shared/compliance.md"));
        match std::fs::read_to_string(&compliance) {
            Ok(text) => {
                let rows = compliance_rows(&text);
                assert!(
                    rows.len() >= 10,
                    "the table was not found in {}",
                    compliance.display()
                );
                let ours: Vec<&str> = mapping.iter().map(|r| r.text.as_str()).collect();
                assert_eq!(
                    ours,
                    rows,
                    "requirements.toml and {} disagree",
                    compliance.display()
                );
            }
            Err(_) => eprintln!(
                "{} is not beside the repository: the requirement texts were not compared with it",
                compliance.display()
            ),
        }
    }

    /// The first cells of the table under "What these require".
    fn compliance_rows(text: &str) -> Vec<&str> {
        text.lines()
            .skip_while(|l| !l.starts_with("| Requirement |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split('|').nth(1).map(str::trim))
            .collect()
    }

    #[test]
    fn a_mapping_with_a_hole_is_refused_with_the_fix() {
        let no_test = "[[requirement]]\nid = \"R1\"\ntext = \"t\"\nsources = []\nconsequence = \"c\"\ntests = []\n";
        let e = format!("{:#}", load_mapping(no_test, "m.toml").unwrap_err());
        assert!(e.contains("names no test"), "{e}");
        let bad = no_test.replace("tests = []", "tests = [\"just_a_name\"]");
        let e = format!("{:#}", load_mapping(&bad, "m.toml").unwrap_err());
        assert!(e.contains("<binary id> <test name>"), "{e}");
        let twice = format!(
            "{}{}",
            no_test.replace("[]\n", "[\"a b\"]\n"),
            no_test.replace("tests = []", "tests = [\"a b\"]")
        );
        let e = format!("{:#}", load_mapping(&twice, "m.toml").unwrap_err());
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn junit_cases_are_read_with_their_outcome() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="4" failures="1" errors="0" uuid="x" timestamp="2026-12-07T11:00:00.000+00:00" time="3.2">
  <testsuite name="gateway::e2e" tests="2" disabled="0" errors="0" failures="1">
    <testcase name="a_passes" classname="gateway::e2e" timestamp="2026-12-07T11:00:00.000+00:00" time="0.5">
    </testcase>
    <testcase name="a_fails" classname="gateway::e2e" time="1.0">
      <failure type="test failure">thread panicked &amp; more</failure>
      <system-out>x</system-out>
    </testcase>
  </testsuite>
  <testsuite name="governance" tests="2">
    <testcase name="alerts::tests::flaky" classname="governance" time="0.1"><flakyFailure message="once"/></testcase>
    <testcase name="ignored_one" classname="governance"><skipped/></testcase>
  </testsuite>
</testsuites>"#;
        let r = parse_junit(xml).unwrap();
        let get = |b: &str, n: &str| {
            r.cases
                .get(&TestRef {
                    binary: b.into(),
                    name: n.into(),
                })
                .map(|c| c.status.clone())
        };
        assert_eq!(get("gateway::e2e", "a_passes"), Some(Status::Passed));
        assert_eq!(get("gateway::e2e", "a_fails"), Some(Status::Failed));
        assert_eq!(
            get("governance", "alerts::tests::flaky"),
            Some(Status::Passed),
            "passed on a retry"
        );
        assert_eq!(get("governance", "ignored_one"), Some(Status::Skipped));
        assert_eq!(
            r.timestamp.as_deref(),
            Some("2026-12-07T11:00:00.000+00:00")
        );
        assert!(parse_junit("<testsuites></testsuites>").is_err());
        assert!(parse_junit("<testsuites><testcase name=\"x\"").is_err());
    }
}

//! Outside check: drive the sandbox with PyCap (the Python REDCap client)
//! through a realistic session (`pycap_session.py`): Create Project with the
//! super token, metadata, records imported and exported in JSON, CSV and XML,
//! flat and EAV, users and rights, roles, DAGs and the user-DAG mapping,
//! logging with filters, deletes, and files (`import_file`, `export_file`,
//! `delete_file`); PyCap's File Repository methods
//! (`pycap_file_repository.py`); its longitudinal and repeating methods and
//! a project from REDCap XML (`pycap_longitudinal.py`); `export_report`
//! (`pycap_reports.py`); its survey methods,
//! `export_records(export_survey_fields=True)` and `export_pdf`
//! (`pycap_surveys.py`).
//!
//! `PYCAP_PYTHON` names a Python with `pycap` installed; `scripts/test`
//! creates that venv and exports it. Without it the test passes with a note
//! locally, but **fails under CI** (`CI` set): there a missing PyCap means a
//! broken install step, not a reason to skip.

mod common;

use common::{SUPER, Sandbox};

/// The Python with PyCap, or `None` when the run is to be skipped (never
/// under CI).
fn pycap_python(test: &str) -> Option<std::ffi::OsString> {
    match std::env::var_os("PYCAP_PYTHON") {
        Some(p) if !p.is_empty() => Some(p),
        _ if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => panic!(
            "CI is set but PYCAP_PYTHON is not: scripts/test installs PyCap into a venv and exports PYCAP_PYTHON"
        ),
        _ => {
            eprintln!(
                "{test}: not run; set PYCAP_PYTHON to a python with pycap (scripts/test does)"
            );
            None
        }
    }
}

/// Runs `tests/<script>` against a fresh sandbox (API URL and super token
/// as arguments, the admin secret in the environment) and checks that it
/// ends with `ok_line`.
async fn run_script(python: &std::ffi::OsStr, script: &str, ok_line: &str) {
    let sb = Sandbox::start().await;
    let script = format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(python)
        .arg(&script)
        .arg(&sb.api)
        .arg(SUPER)
        .env("SANDBOX_ADMIN_SECRET", common::SECRET)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run PYCAP_PYTHON={python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(ok_line), "{stdout}");
}

#[tokio::test]
async fn pycap_session() {
    let Some(python) = pycap_python("pycap_session") else {
        return;
    };
    run_script(&python, "pycap_session.py", "PyCap session OK").await;
}

/// PyCap's File Repository methods (`create_folder_in_repository`,
/// `export_file_repository`, `import_file_into_repository`,
/// `export_file_from_repository`, `delete_file_from_repository`), with the
/// answer shapes PyCap's doctests show, DAG-restricted folders and rights.
#[tokio::test]
async fn pycap_file_repository() {
    let Some(python) = pycap_python("pycap_file_repository") else {
        return;
    };
    run_script(
        &python,
        "pycap_file_repository.py",
        "PyCap File Repository OK",
    )
    .await;
}

/// PyCap's longitudinal and repeating methods (`export_arms`,
/// `import_arms`, `delete_arms`, `export_events`, `import_events`,
/// `delete_events`, `export_instrument_event_mappings`,
/// `import_instrument_event_mappings`, the repeating setup, records by
/// event and instance, `delete_records` of one instance, `is_longitudinal`)
/// and a project from REDCap XML created as PyCap's integration fixture
/// creates one.
#[tokio::test]
async fn pycap_longitudinal() {
    let Some(python) = pycap_python("pycap_longitudinal") else {
        return;
    };
    run_script(&python, "pycap_longitudinal.py", "PyCap longitudinal OK").await;
}

/// PyCap's `export_report` (reports defined through the admin endpoint)
/// in every format it offers, with labels, checkbox labels and a CSV
/// delimiter, and REDCap's refusal of another project's report.
#[tokio::test]
async fn pycap_reports() {
    let Some(python) = pycap_python("pycap_reports") else {
        return;
    };
    run_script(&python, "pycap_reports.py", "PyCap reports OK").await;
}

/// PyCap's survey methods (`export_survey_link`,
/// `export_survey_queue_link`, `export_survey_access_code`,
/// `export_survey_return_code`, `export_survey_participant_list` in JSON,
/// CSV and XML), `export_records(export_survey_fields=True)` and
/// `export_pdf` (blank, one record, all records, compact), on a project made
/// from REDCap XML with a survey and a survey queue, checking the answers'
/// shapes.
#[tokio::test]
async fn pycap_surveys() {
    let Some(python) = pycap_python("pycap_surveys") else {
        return;
    };
    run_script(&python, "pycap_surveys.py", "PyCap surveys OK").await;
}

/// The two suites PyCap 2.7.0 ships in its repository (not in its PyPI
/// package): the integration tests (`tests/integration`, whose fixtures
/// create projects from REDCap XML with a super token) and the doctests
/// of its methods (`redcap/`, run by its CI as `pytest --doctest-only
/// --doctest-plus`).
#[derive(Clone, Copy)]
enum Suite {
    Integration,
    Doctests,
}

/// Runs one of PyCap 2.7.0's own suites, unchanged, against a fresh
/// sandbox; any failure, error or skip fails the test.
///
/// `source` is a checkout of PyCap at its tag 2.7.0 (`PYCAP_SOURCE`): its
/// `tests/` and data are not on PyPI, and this repository does not copy
/// them. Its `tests/`, `pytest.ini` and `LICENSE` (and for the doctests the
/// installed `pycap==2.7.0` package, the same files) are copied into a
/// temporary directory, where pytest runs with `pycap_suite_plugin.py`,
/// which checks that every file is PyCap 2.7.0's (git blob hashes) and
/// sends the demo server's URL written in the suites to the sandbox. The
/// sandbox plays that server's public URL (the survey links the suites
/// check start with it); PyCap's `pytest.ini` is used with its `addopts`
/// cleared (they load pylint, black, mypy and coverage plugins, which
/// check PyCap's own code, not the server).
async fn run_suite(python: &std::ffi::OsStr, source: &std::path::Path, suite: Suite) {
    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let work = tempfile::tempdir().unwrap();
    copy_dir(&source.join("tests"), &work.path().join("tests"));
    for file in ["pytest.ini", "LICENSE"] {
        std::fs::copy(source.join(file), work.path().join(file))
            .unwrap_or_else(|e| panic!("PYCAP_SOURCE={}: {file}: {e}", source.display()));
    }
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import os, redcap, pytest, pytest_doctestplus; print(os.path.dirname(redcap.__file__))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run PYCAP_PYTHON={python:?}: {e}"));
    assert!(
        out.status.success(),
        "PYCAP_PYTHON={python:?} lacks pycap, pytest or pytest-doctestplus (scripts/test installs them): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let package = String::from_utf8(out.stdout).unwrap();
    let mut args = vec![
        "-m",
        "pytest",
        "-p",
        "pycap_suite_plugin",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-rfEs",
        "--color=no",
    ];
    let sb = match suite {
        Suite::Integration => {
            args.push("tests/integration");
            Sandbox::start_with(|c| {
                c.public_url = Some("https://redcapdemo.vumc.org/".into());
            })
            .await
        }
        Suite::Doctests => {
            copy_dir(
                std::path::Path::new(package.trim()),
                &work.path().join("redcap"),
            );
            args.extend(["--doctest-only", "--doctest-plus", "redcap"]);
            // The doctest project's role is stored with legacy form codes
            // (its XML, exported from REDCap 15.2.1, says
            // `data_entry="[form_1,2]"`), which REDCap answers as stored;
            // the sandbox keeps rights by meaning and writes the played
            // version's encoding, so it plays a version before the bitmask
            // (15.6.0) here.
            Sandbox::start_with(|c| {
                c.public_url = Some("https://redcapdemo.vumc.org/".into());
                c.version = "15.5.0".parse().unwrap();
            })
            .await
        }
    };
    let out = tokio::process::Command::new(python)
        .args(&args)
        .current_dir(work.path())
        .env("PYTHONPATH", tests)
        .env("PYCAP_SUITE_DIR", work.path())
        .env("SANDBOX_API_URL", &sb.api)
        .env("REDCAPDEMO_SUPERUSER_TOKEN", SUPER)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run PYCAP_PYTHON={python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "PyCap's suite failed:\n{stdout}\n{stderr}"
    );
    // pytest's closing line, e.g. `==== 63 passed in 9.1s ====`.
    let summary = stdout.lines().last().unwrap_or_default();
    let words: Vec<&str> = summary
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    let count = |what: &str| -> u32 {
        words
            .windows(2)
            .find(|w| w[1] == what)
            .and_then(|w| w[0].parse().ok())
            .unwrap_or(0)
    };
    assert!(
        count("passed") > 0 && count("failed") + count("error") + count("errors") == 0,
        "{stdout}"
    );
    // A skip is a failure, except the two doctests PyCap itself marks
    // `# doctest: +SKIP` (`switch_dag`, `export_report`; its CI skips them
    // too).
    let skips_allowed = match suite {
        Suite::Integration => 0,
        Suite::Doctests => 2,
    };
    assert_eq!(count("skipped"), skips_allowed, "{stdout}");
}

/// Copies a directory tree (without `__pycache__`).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A checkout of PyCap at its tag 2.7.0, named by `PYCAP_SOURCE`, or
/// `None` with a notice. PyCap publishes its tests only on GitHub, which
/// CI cannot reach, so these two tests run where a developer has fetched
/// it (`git clone --depth 1 --branch 2.7.0
/// https://github.com/redcap-tools/PyCap`), not in CI.
fn pycap_source(test: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os("PYCAP_SOURCE") {
        Some(p) if !p.is_empty() => Some(p.into()),
        _ => {
            eprintln!(
                "{test}: not run; set PYCAP_SOURCE to a checkout of PyCap 2.7.0 (its tests are not on PyPI) and PYCAP_PYTHON"
            );
            None
        }
    }
}

/// PyCap 2.7.0's integration suite, unchanged (`Suite::Integration`).
#[tokio::test]
async fn pycap_own_integration_suite() {
    let test = "pycap_own_integration_suite";
    let (Some(source), Some(python)) = (pycap_source(test), pycap_python(test)) else {
        return;
    };
    run_suite(&python, &source, Suite::Integration).await;
}

/// PyCap 2.7.0's doctests, unchanged (`Suite::Doctests`): they build their
/// project from the checkout's `tests/data/doctest_project.xml`.
#[tokio::test]
async fn pycap_own_doctests() {
    let test = "pycap_own_doctests";
    let (Some(source), Some(python)) = (pycap_source(test), pycap_python(test)) else {
        return;
    };
    run_suite(&python, &source, Suite::Doctests).await;
}

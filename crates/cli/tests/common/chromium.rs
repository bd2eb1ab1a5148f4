//! Headless Chromium for the tests of the report and the dashboard: load a
//! page, take its DOM and every console message (an error, an uncaught
//! exception, a resource that failed to load), and keep a screenshot under
//! `target/chromium-artifacts/`. Every host but 127.0.0.1 resolves to
//! nothing, so a page that fetches anything from outside fails to load it
//! and says so on the console.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser found for a test.
pub struct Chromium {
    bin: PathBuf,
}

/// A page as Chromium loaded it.
pub struct Loaded {
    /// The DOM after load.
    pub dom: String,
    /// Console messages (none expected).
    pub console: Vec<String>,
}

impl Chromium {
    /// `$CHROMIUM` or `chromium` on PATH. Missing: the test is skipped with
    /// a message, and fails under CI (where `.ci/run` installs it).
    pub fn find(test: &str) -> Option<Chromium> {
        let found = std::env::var_os("CHROMIUM")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                let path = std::env::var_os("PATH")?;
                ["chromium", "chromium-browser", "google-chrome"]
                    .iter()
                    .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
                    .find(|p| p.is_file())
            })
            .filter(|p| p.is_file());
        match found {
            Some(bin) => Some(Chromium { bin }),
            None if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => panic!(
                "{test}: headless Chromium is missing and CI is set; install Debian `chromium` (scripts/test does)"
            ),
            None => {
                eprintln!(
                    "{test}: SKIPPED the browser checks: no chromium on PATH (install Debian `chromium`, or set CHROMIUM)"
                );
                None
            }
        }
    }

    fn command(&self, profile: &Path) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
        cmd
    }

    /// Loads `url`; its DOM and console, and a screenshot kept as
    /// `target/chromium-artifacts/<shot>.png`.
    pub fn load(&self, url: &str, shot: &str) -> Loaded {
        let profile = tempfile::tempdir().unwrap();
        let out = self
            .command(profile.path())
            .arg("--dump-dom")
            .arg(url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "chromium --dump-dom {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let console = stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
            .map(str::to_string)
            .collect();
        let dir = artifacts();
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join(format!("{shot}.png"));
        let _ = std::fs::remove_file(&png);
        let taken = self
            .command(profile.path())
            .arg("--window-size=1200,3000")
            .arg(format!("--screenshot={}", png.display()))
            .arg(url)
            .output()
            .unwrap();
        assert!(
            taken.status.success() && png.is_file(),
            "chromium --screenshot {url}: {}",
            String::from_utf8_lossy(&taken.stderr)
        );
        Loaded {
            dom: String::from_utf8_lossy(&out.stdout).into_owned(),
            console,
        }
    }
}

/// What in `dom` would be fetched from outside the page: `src`/`href`
/// to a network address, a CSS `url(...)` or `@import`.
pub fn outside_references(dom: &str) -> Vec<String> {
    let lower = dom.to_ascii_lowercase();
    [
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "href=\"//",
        "src=\"//",
        "url(",
        "@import",
    ]
    .iter()
    .filter(|p| lower.contains(*p))
    .map(|p| p.to_string())
    .collect()
}

/// `target/chromium-artifacts/`, beside the binary under test.
pub fn artifacts() -> PathBuf {
    let bin = assert_cmd::cargo::cargo_bin("redcap-warden");
    bin.parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("chromium-artifacts")
}

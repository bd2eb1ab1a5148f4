//! Leak canaries. A test writes a canary token through the code under test,
//! then scans everything the code produced — standard output and error,
//! logs, every file outside the secrets store, child processes' command
//! lines and environments — for the canary under every encoding a careless
//! line could give it: as is, upper and lower case, percent-encoded,
//! JSON-escaped, base64 (standard and URL-safe, at all three alignments) and
//! any 16-character slice of it.
//!
//! [`Canary::scan_process_tree`] reads `/proc/<pid>/cmdline` and
//! `/proc/<pid>/environ` of a process and every descendant (found through
//! the parent pid in `/proc/*/stat`), for a canary passed on a command line
//! or through the environment.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

/// A canary and the needles derived from it.
pub struct Canary {
    value: String,
    scanner: Canaries,
}

/// Several canaries searched for in one pass over each haystack: named
/// needles and one Aho-Corasick automaton over all of them, so scanning a
/// directory once for all of them costs what scanning it for one does.
pub struct Canaries {
    needles: Vec<(String, Vec<u8>)>,
    automaton: AhoCorasick,
}

/// Every needle is at least this long (the shortest is a 16-character
/// slice): shorter ones would match ordinary text by chance.
const SHORTEST: usize = 16;

/// Where a needle was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// What held the canary: the name the caller gave the scanned text
    /// (`"stdout"`, a log's name), a file's path, or
    /// `/proc/<pid>/cmdline (<name>)` / `/proc/<pid>/environ (<name>)`.
    pub place: String,
    /// Which encoding of the canary matched (`"as is"`, `"base64
    /// (alignment 1)"`, …), or `"unscanned: …"` for a file that could not be
    /// read, which a test must treat as a failure too.
    pub encoding: String,
}

impl Canary {
    /// A canary shaped like a REDCap project token: 32 upper-case hex.
    pub fn redcap_token() -> Canary {
        Canary::new("CA7A11A5DEADBEEF0123456789ABCDEF")
    }

    /// A canary for `value` and every encoding of it listed in the crate
    /// docs.
    ///
    /// # Panics
    ///
    /// If `value` has 16 characters or fewer: its shortest encodings would
    /// be shorter than the 16-byte window the scanner searches with.
    pub fn new(value: &str) -> Canary {
        let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
        let mut add = |encoding: String, bytes: Vec<u8>| {
            if !bytes.is_empty() && !needles.iter().any(|(_, b)| *b == bytes) {
                needles.push((encoding, bytes));
            }
        };
        add("as is".into(), value.as_bytes().to_vec());
        add("upper case".into(), value.to_uppercase().into_bytes());
        add("lower case".into(), value.to_lowercase().into_bytes());
        let percent: String = value.bytes().map(|b| format!("%{b:02X}")).collect();
        add("percent-encoded".into(), percent.clone().into_bytes());
        add(
            "percent-encoded (lower)".into(),
            percent.to_lowercase().into_bytes(),
        );
        let json = serde_escape(value);
        add("JSON-escaped".into(), json.into_bytes());
        let unicode: String = value
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        add("JSON \\u-escaped".into(), unicode.clone().into_bytes());
        add(
            "JSON \\u-escaped (upper)".into(),
            unicode
                .replace("\\u", "\\U")
                .to_uppercase()
                .replace("\\U", "\\u")
                .into_bytes(),
        );
        // base64 of the value (and of its case variants) starting at each of
        // the three byte alignments: inside a longer encoded blob, the
        // canary's encoding is one of these, minus the first and last
        // (partial) quartets.
        for (case, text) in [
            ("", value.to_string()),
            (", upper case", value.to_uppercase()),
            (", lower case", value.to_lowercase()),
        ] {
            for offset in 0..3 {
                let bytes = prefixed(&text, offset);
                for (engine_name, encoded) in [
                    ("base64", STANDARD.encode(&bytes)),
                    ("base64url", URL_SAFE.encode(&bytes)),
                ] {
                    let core = stable_core(&encoded, offset, bytes.len());
                    add(
                        format!("{engine_name} (alignment {offset}{case})"),
                        core.into_bytes(),
                    );
                }
            }
        }
        let chars: Vec<char> = value.chars().collect();
        if chars.len() > 16 {
            for start in 0..=chars.len() - 16 {
                let slice: String = chars[start..start + 16].iter().collect();
                add(
                    format!("16-character slice at {start}"),
                    slice.to_uppercase().into_bytes(),
                );
                add(
                    format!("16-character slice at {start} (lower)"),
                    slice.to_lowercase().into_bytes(),
                );
            }
        }
        assert!(
            needles.iter().all(|(_, n)| n.len() >= SHORTEST),
            "a canary needs at least 17 characters so every encoding is at least {SHORTEST} bytes"
        );
        Canary {
            value: value.to_string(),
            scanner: Canaries::of(needles),
        }
    }

    /// The canary itself, to feed to the code under test.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// `before ‖ canary ‖ after`, base64-encoded as one blob (standard or
    /// URL-safe): how a canary looks inside an encoded body, for tests that
    /// plant one to prove a scan finds it.
    pub fn in_base64_blob(&self, before: &str, after: &str, url_safe: bool) -> String {
        let text = format!("{before}{}{after}", self.value);
        if url_safe {
            URL_SAFE.encode(text)
        } else {
            STANDARD.encode(text)
        }
    }

    /// Every encoding of the canary found in `haystack`.
    pub fn find(&self, place: &str, haystack: &[u8]) -> Vec<Leak> {
        self.scanner.find(place, haystack)
    }

    /// Scans every regular file below `dir` except those `allowed` (the
    /// secrets store, the encrypted escrow) and those under an allowed
    /// directory. Symbolic links are not followed. A directory or file that
    /// cannot be read is reported as a leak: what cannot be scanned cannot
    /// be called clean.
    pub fn scan_dir(&self, dir: &Path, allowed: &[PathBuf]) -> Vec<Leak> {
        self.scanner.scan_dir_where(dir, allowed, |_| true)
    }

    /// [`Canary::scan_dir`] limited to the files `keep` accepts (e.g. those
    /// modified since a test began, in a shared temporary directory).
    pub fn scan_dir_where(
        &self,
        dir: &Path,
        allowed: &[PathBuf],
        keep: impl Fn(&std::fs::Metadata) -> bool,
    ) -> Vec<Leak> {
        self.scanner.scan_dir_where(dir, allowed, keep)
    }

    /// Scans the command line and environment of process `root` and of
    /// every descendant. A process that exits while being read is skipped.
    pub fn scan_process_tree(&self, root: u32) -> Vec<Leak> {
        self.scanner.scan_process_tree(root)
    }

    /// Fails the test, naming each place and encoding, if anything leaked.
    pub fn assert_clean(&self, leaks: &[Leak]) {
        assert!(leaks.is_empty(), "the canary token leaked: {leaks:#?}");
    }
}

impl Canaries {
    /// One scanner for every canary given; a leak's encoding names the
    /// canary by `label` (e.g. `"rotated token 2: base64 (alignment 1)"`).
    pub fn new<'a>(canaries: impl IntoIterator<Item = (String, &'a Canary)>) -> Canaries {
        let needles = canaries
            .into_iter()
            .flat_map(|(label, c)| {
                c.scanner
                    .needles
                    .iter()
                    .map(move |(encoding, n)| (format!("{label}: {encoding}"), n.clone()))
            })
            .collect();
        Canaries::of(needles)
    }

    fn of(needles: Vec<(String, Vec<u8>)>) -> Canaries {
        let automaton = AhoCorasick::new(needles.iter().map(|(_, n)| n))
            .expect("a few hundred short needles fit any automaton");
        Canaries { needles, automaton }
    }

    /// Every needle found in `haystack`, each named once, in needle order.
    /// Overlapping matches count: a 16-character slice inside the whole
    /// value is reported as well as the value.
    pub fn find(&self, place: &str, haystack: &[u8]) -> Vec<Leak> {
        let mut found = vec![false; self.needles.len()];
        for m in self.automaton.find_overlapping_iter(haystack) {
            found[m.pattern().as_usize()] = true;
        }
        found
            .iter()
            .zip(&self.needles)
            .filter(|(hit, _)| **hit)
            .map(|(_, (encoding, _))| Leak {
                place: place.to_string(),
                encoding: encoding.clone(),
            })
            .collect()
    }

    /// [`Canary::scan_dir`] for every canary of the set.
    pub fn scan_dir(&self, dir: &Path, allowed: &[PathBuf]) -> Vec<Leak> {
        self.scan_dir_where(dir, allowed, |_| true)
    }

    /// [`Canary::scan_dir_where`] for every canary of the set.
    pub fn scan_dir_where(
        &self,
        dir: &Path,
        allowed: &[PathBuf],
        keep: impl Fn(&std::fs::Metadata) -> bool,
    ) -> Vec<Leak> {
        let mut leaks = Vec::new();
        let unreadable = |p: &Path, e: std::io::Error| Leak {
            place: p.display().to_string(),
            encoding: format!("unscanned: cannot read it ({e})"),
        };
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                // Removed while we looked: nothing left to leak.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    leaks.push(unreadable(&d, e));
                    continue;
                }
            };
            for e in entries.flatten() {
                let p = e.path();
                if allowed.iter().any(|a| p.starts_with(a)) {
                    continue;
                }
                let Ok(meta) = std::fs::symlink_metadata(&p) else {
                    continue; // removed while we looked
                };
                if meta.is_dir() {
                    stack.push(p);
                } else if meta.is_file() && keep(&meta) {
                    match std::fs::read(&p) {
                        Ok(bytes) => leaks.extend(self.find(&p.display().to_string(), &bytes)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => leaks.push(unreadable(&p, e)),
                    }
                }
            }
        }
        leaks
    }

    /// [`Canary::scan_process_tree`] for every canary of the set.
    pub fn scan_process_tree(&self, root: u32) -> Vec<Leak> {
        let mut leaks = Vec::new();
        for pid in process_tree(root) {
            for what in ["cmdline", "environ"] {
                if let Ok(bytes) = std::fs::read(format!("/proc/{pid}/{what}")) {
                    let place = format!("/proc/{pid}/{what} ({})", comm(pid));
                    leaks.extend(self.find(&place, &bytes));
                }
            }
        }
        leaks
    }
}

/// `root` and every process descending from it, found by following the
/// parent pid (field 4 of `/proc/<pid>/stat`) of every process.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .as_deref()
                .and_then(parent_pid)
            {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|(_, ppid)| *ppid == p)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    tree
}

/// The parent pid from the text of `/proc/<pid>/stat`: the command name
/// in parentheses may itself hold spaces and parentheses, so the fields
/// are read after the last `)`.
fn parent_pid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn prefixed(value: &str, offset: usize) -> Vec<u8> {
    let mut v = vec![b'x'; offset];
    v.extend_from_slice(value.as_bytes());
    v
}

/// The part of base64(prefix ‖ value) that depends only on the value's own
/// bytes: the quartets of complete 3-byte groups, skipping the first group
/// when the prefix shares it.
fn stable_core(encoded: &str, offset: usize, total_len: usize) -> String {
    let start = if offset == 0 { 0 } else { 4 };
    let end = (total_len / 3) * 4;
    encoded.get(start..end).unwrap_or_default().to_string()
}

fn serde_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_encoding() {
        let c = Canary::redcap_token();
        let v = c.value();
        let cases: Vec<(String, Vec<u8>)> = vec![
            ("plain".into(), format!("token={v}&x").into_bytes()),
            ("lower".into(), v.to_lowercase().into_bytes()),
            (
                "percent".into(),
                v.bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect::<String>()
                    .into_bytes(),
            ),
            ("slice".into(), format!("...{}...", &v[5..21]).into_bytes()),
        ];
        for (what, hay) in cases {
            assert!(!c.find(&what, &hay).is_empty(), "{what} not found");
        }
        for prefix in ["", "a", "ab", "abc"] {
            for engine in [&STANDARD, &URL_SAFE] {
                let blob = engine.encode(format!("{prefix}{{\"token\":\"{v}\"}}"));
                assert!(
                    !c.find("b64", blob.as_bytes()).is_empty(),
                    "base64 with prefix {prefix:?} not found"
                );
            }
        }
    }

    #[test]
    fn finds_the_new_encodings() {
        let c = Canary::redcap_token();
        let v = c.value();
        let unicode: String = v
            .chars()
            .map(|ch| format!("\\u{:04x}", ch as u32))
            .collect();
        assert!(!c.find("u", unicode.as_bytes()).is_empty());
        for offset in 0..3 {
            let blob = URL_SAFE.encode(format!("{}{}", "z".repeat(offset), v.to_lowercase()));
            assert!(
                !c.find("b64 lower", blob.as_bytes()).is_empty(),
                "lower-case base64 at offset {offset}"
            );
        }
        // At the very end and very start of a haystack.
        assert!(
            !c.find("end", format!("xx{}", &v[16..]).as_bytes())
                .is_empty()
        );
        assert!(!c.find("start", &v.as_bytes()[..16]).is_empty());
        assert!(c.find("short", &v.as_bytes()[..15]).is_empty());
    }

    #[test]
    fn scans_files_and_reports_what_it_cannot_read() {
        let c = Canary::redcap_token();
        let dir = std::env::temp_dir().join(format!("canary-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("clean"), b"nothing here").unwrap();
        std::fs::write(
            dir.join("sub/leak"),
            STANDARD.encode(format!("ab{}", c.value())),
        )
        .unwrap();
        std::fs::write(dir.join("store"), c.value()).unwrap();
        let leaks = c.scan_dir(&dir, &[dir.join("store")]);
        assert!(!leaks.is_empty());
        assert!(
            leaks.iter().all(|l| l.place.ends_with("sub/leak")),
            "{leaks:?}"
        );
        assert!(
            c.scan_dir(&dir, &[dir.join("store"), dir.join("sub")])
                .is_empty()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_a_canary_in_a_grandchild_process_environment() {
        let c = Canary::redcap_token();
        // sh forks sleep (the `; true` keeps it from exec'ing it), which
        // inherits the planted environment.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("sleep 30; true")
            .env("PLANTED", c.value().to_lowercase())
            .spawn()
            .unwrap();
        let root = format!("/proc/{}/", child.id());
        let in_descendant = |leaks: &[Leak]| {
            leaks
                .iter()
                .any(|l| l.place.contains("environ") && !l.place.contains(&root))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let leaks = loop {
            let leaks = c.scan_process_tree(child.id());
            if in_descendant(&leaks) || std::time::Instant::now() > deadline {
                break leaks;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let tree = process_tree(child.id());
        let _ = child.kill();
        let _ = child.wait();
        for pid in tree.iter().skip(1) {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        assert!(in_descendant(&leaks), "{leaks:?}");
    }

    #[test]
    fn parent_pid_survives_odd_command_names() {
        assert_eq!(parent_pid("42 (a) b (c)) S 7 42 42 0"), Some(7));
        assert_eq!(parent_pid("garbage"), None);
    }

    #[test]
    fn a_set_finds_each_canary_under_its_label_in_one_pass() {
        let first = Canary::redcap_token();
        let second = Canary::new("0123456789ABCDEF0123456789ABCDEF");
        let set = Canaries::new([
            ("first".to_string(), &first),
            ("second".to_string(), &second),
        ]);
        let text = format!(
            "a {} and b {}",
            first.value(),
            second.in_base64_blob("x", "y", false)
        );
        let leaks = set.find("log", text.as_bytes());
        assert!(
            leaks.iter().any(|l| l.encoding == "first: as is"),
            "{leaks:?}"
        );
        assert!(
            leaks
                .iter()
                .any(|l| l.encoding.starts_with("second: base64")),
            "{leaks:?}"
        );
        assert!(
            !leaks
                .iter()
                .any(|l| l.encoding.starts_with("second: as is"))
        );
        assert!(
            set.find("clean", b"nothing here at all, not even hex")
                .is_empty()
        );
    }

    #[test]
    fn does_not_cry_wolf() {
        let c = Canary::redcap_token();
        assert!(
            c.find(
                "x",
                b"fp1:9f8e7d6c5b4a3921 token=<redacted> CA7A11A5 DEADBEEF"
            )
            .is_empty()
        );
    }
}

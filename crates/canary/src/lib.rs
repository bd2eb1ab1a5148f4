//! Leak canaries. A test writes a canary token through the code under test,
//! then scans everything the code produced — standard output and error,
//! logs, every file outside the secrets store, child processes' command
//! lines and environments — for the canary under every encoding a careless
//! line could give it: as is, upper and lower case, percent-encoded,
//! JSON-escaped, base64 (standard and URL-safe, at all three alignments) and
//! any 16-character slice of it.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

/// A canary and the needles derived from it.
pub struct Canary {
    value: String,
    needles: Vec<(String, Vec<u8>)>,
}

/// Where a needle was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub place: String,
    pub encoding: String,
}

impl Canary {
    /// A canary shaped like a REDCap project token: 32 upper-case hex.
    pub fn redcap_token() -> Canary {
        Canary::new("CA7A11A5DEADBEEF0123456789ABCDEF")
    }

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
        // base64 of the value starting at each of the three byte alignments:
        // inside a longer encoded blob, the canary's encoding is one of
        // these, minus the first and last (partial) quartets.
        for offset in 0..3 {
            let bytes = prefixed(value, offset);
            for (engine_name, encoded) in [
                ("base64", STANDARD.encode(&bytes)),
                ("base64url", URL_SAFE.encode(&bytes)),
            ] {
                let core = stable_core(&encoded, offset, bytes.len());
                add(
                    format!("{engine_name} (alignment {offset})"),
                    core.into_bytes(),
                );
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
        Canary {
            value: value.to_string(),
            needles,
        }
    }

    /// The canary itself, to feed to the code under test.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Every encoding of the canary found in `haystack`.
    pub fn find(&self, place: &str, haystack: &[u8]) -> Vec<Leak> {
        self.needles
            .iter()
            .filter(|(_, n)| haystack.windows(n.len()).any(|w| w == n.as_slice()))
            .map(|(enc, _)| Leak {
                place: place.to_string(),
                encoding: enc.clone(),
            })
            .collect()
    }

    /// Scans every file below `dir` except those `allowed` (the secrets
    /// store, the encrypted escrow).
    pub fn scan_dir(&self, dir: &Path, allowed: &[PathBuf]) -> Vec<Leak> {
        let mut leaks = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if !allowed.iter().any(|a| a == &p)
                    && let Ok(bytes) = std::fs::read(&p)
                {
                    leaks.extend(self.find(&p.display().to_string(), &bytes));
                }
            }
        }
        leaks
    }

    /// Fails the test, naming each place and encoding, if anything leaked.
    pub fn assert_clean(&self, leaks: &[Leak]) {
        assert!(leaks.is_empty(), "the canary token leaked: {leaks:#?}");
    }
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

//! The one redactor for REDCap's log.
//!
//! REDCap writes full token values into its project log: a regeneration
//! logs `Replaced token = <the old token>`, a deletion `Deleted token =
//! <the token>` (redcap-api.md §2.3, §10.12), and anyone with the Logging
//! right can read them back through Export Logging. So every piece of
//! REDCap log text passes [`redact`] before it is kept, printed, written to
//! the ledger or shown: any run of exactly 32 or 64 hexadecimal characters
//! (either case, bounded by non-hex characters or the ends of the text) —
//! the shape of a project token or a super token — is replaced by what a
//! [`TokenMask`] makes of it: a keyed fingerprint (the governance layer's
//! mask) or [`Placeholder`]'s `[token]`.
//!
//! A run of another length is left alone: it is not a token's shape (an
//! MD5 of 32 characters and a SHA-256 of 64 are replaced too — they cannot
//! be told from tokens, and losing them costs nothing).
//!
//! [`crate::client::LogEntry`] can only be built through this function, so
//! a log row that left the client has been redacted.

use std::borrow::Cow;

/// What a token-shaped run becomes. `Sync`, so a mask can be held across
/// the awaits of a log export.
pub trait TokenMask: Sync {
    /// The text to write instead of `token` (a run of 32 or 64 hex
    /// characters). Must not contain the token or a slice of it.
    fn mask(&self, token: &str) -> String;
}

/// Replaces every token with `[token]`: for callers without the
/// installation's fingerprint key.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placeholder;

/// What [`Placeholder`] writes.
pub const PLACEHOLDER: &str = "[token]";

impl TokenMask for Placeholder {
    fn mask(&self, _token: &str) -> String {
        PLACEHOLDER.to_string()
    }
}

/// `text` with every token-shaped run (exactly 32 or 64 hex characters,
/// bounded by non-hex) replaced by `mask`'s text for it; borrowed when
/// there was none.
pub fn redact<'a>(text: &'a str, mask: &dyn TokenMask) -> Cow<'a, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    // Where the text not yet copied to `out` starts.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            i += 1;
        }
        if matches!(i - start, 32 | 64) {
            // Hex digits are ASCII, so both ends are character boundaries.
            let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
            o.push_str(&text[copied..start]);
            o.push_str(&mask.mask(&text[start..i]));
            copied = i;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// Whether `text` still holds a token-shaped run ([`redact`] would change
/// it).
pub fn holds_token(text: &str) -> bool {
    matches!(redact(text, &Placeholder), Cow::Owned(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &[u8] = b"0123456789abcdefABCDEF";

    /// A deterministic generator (no dependency): xorshift.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick(&mut self, from: &[u8]) -> u8 {
            from[(self.next() % from.len() as u64) as usize]
        }
        fn hex(&mut self, n: usize) -> String {
            (0..n).map(|_| self.pick(HEX) as char).collect()
        }
        /// Text of characters that are never hex: letters past f, spaces,
        /// punctuation, non-ASCII.
        fn filler(&mut self, n: usize) -> String {
            const OTHER: &[&str] = &[
                " ", "=", ";", "'", "g", "Z", "x", "(", ")", "é", "—", "\n", "\"", "_", "-",
            ];
            (0..n)
                .map(|_| OTHER[(self.next() % OTHER.len() as u64) as usize])
                .collect()
        }
    }

    struct Echo;
    impl TokenMask for Echo {
        fn mask(&self, token: &str) -> String {
            format!("<{}>", token.len())
        }
    }

    #[test]
    fn redcap_s_token_rows_lose_their_values() {
        let token = "0123456789ABCDEF0123456789ABCDEF";
        let row =
            format!("Regenerate API token for user (username = 'svc'); Replaced token = {token}");
        let out = redact(&row, &Placeholder);
        assert_eq!(
            out,
            "Regenerate API token for user (username = 'svc'); Replaced token = [token]"
        );
        let lower = format!("Deleted token = {}", token.to_lowercase());
        assert_eq!(redact(&lower, &Placeholder), "Deleted token = [token]");
        let super_token = token.repeat(2);
        assert_eq!(redact(&super_token, &Echo), "<64>");
        // REDCap's own redacted form (reassignment) has nothing to redact.
        assert!(matches!(
            redact("token ABC...YZ", &Placeholder),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn only_runs_of_exactly_32_or_64_are_tokens() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for n in 1..=70 {
            let run = g.hex(n);
            let text = format!("a={run};");
            let input = format!("x{text}");
            let out = redact(&input, &Echo);
            if n == 32 || n == 64 {
                assert_eq!(out, format!("xa=<{n}>;"), "run of {n}");
            } else {
                assert_eq!(out, format!("x{text}"), "run of {n}");
            }
        }
        // Bounded by hex on either side: a longer run, not a token.
        assert_eq!(
            redact(&format!("a{}", "b".repeat(32)), &Placeholder),
            format!("a{}", "b".repeat(32))
        );
    }

    /// Property: in random text with token runs planted between non-hex
    /// fillers, every planted token is gone, every filler is kept in order,
    /// and redacting again changes nothing.
    #[test]
    fn planted_tokens_never_survive_and_the_rest_is_kept() {
        let mut g = Gen(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let mut text = String::new();
            let mut fillers = Vec::new();
            let mut tokens = Vec::new();
            for _ in 0..(g.next() % 6) {
                let len = (g.next() % 8) as usize + 1;
                let f = g.filler(len);
                text.push_str(&f);
                fillers.push(f);
                let len = if g.next().is_multiple_of(2) { 32 } else { 64 };
                let t = g.hex(len);
                text.push_str(&t);
                tokens.push(t);
            }
            let f = g.filler(3);
            text.push_str(&f);
            fillers.push(f);
            let out = redact(&text, &Placeholder);
            for t in &tokens {
                assert!(!out.contains(t.as_str()), "{t} survived in {out}");
            }
            assert_eq!(out.matches(PLACEHOLDER).count(), tokens.len());
            assert_eq!(out.replace(PLACEHOLDER, ""), fillers.concat());
            assert_eq!(redact(&out, &Placeholder), out, "not idempotent");
            assert!(!holds_token(&out));
        }
    }
}

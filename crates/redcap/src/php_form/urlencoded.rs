//! `application/x-www-form-urlencoded` bodies as PHP's POST reader splits
//! them (`add_post_var`): on `&` only (never `;`), each piece at its first
//! `=`, `+` and valid `%XX` decoded in names and values (an invalid escape
//! such as `%zz` or a lone `%` stays as it is). Every piece counts against
//! `max_input_vars`, empty ones too, and PHP still registers the piece that
//! goes over the limit before it stops reading.

use super::array::{PhpArray, Value};
use super::register::register;
use super::{Field, Limits, Parsed};

/// Parses a whole urlencoded body.
pub fn parse(body: &[u8], limits: &Limits) -> Parsed {
    let mut post = PhpArray::new();
    let mut fields = Vec::new();
    let mut vars = 0usize;
    let mut pos = 0;
    while pos < body.len() {
        let end = memchr::memchr(b'&', &body[pos..]).map_or(body.len(), |e| pos + e);
        let piece = &body[pos..end];
        let (name, value) = match memchr::memchr(b'=', piece) {
            Some(eq) => (url_decode(&piece[..eq]), url_decode(&piece[eq + 1..])),
            None => (url_decode(piece), Vec::new()),
        };
        let registration = register(
            &mut post,
            &name,
            Value::Str(value),
            limits.max_input_nesting_level,
        );
        fields.push(Field {
            raw_name: name,
            registration,
        });
        vars += 1;
        pos = end + 1;
        if vars > limits.max_input_vars {
            break;
        }
    }
    Parsed {
        stopped_early: vars > limits.max_input_vars && pos < body.len(),
        post,
        files: PhpArray::new(),
        fields,
        vars,
        notes: Vec::new(),
    }
}

/// PHP's `php_url_decode`.
pub fn url_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len()
                && s[i + 1].is_ascii_hexdigit()
                && s[i + 2].is_ascii_hexdigit() =>
            {
                out.push(hex(s[i + 1]) << 4 | hex(s[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::php_form::array::Key;

    fn limits(max_input_vars: usize) -> Limits {
        Limits {
            max_input_vars,
            ..Limits::default()
        }
    }

    fn keys(p: &Parsed) -> Vec<String> {
        p.post.iter().map(|(k, _)| k.to_text()).collect()
    }

    #[test]
    fn decoding_keeps_invalid_escapes() {
        assert_eq!(url_decode(b"a+b%2Bc%zz%4%"), b"a b+c%zz%4%");
        assert_eq!(url_decode(b"%00%ff%FF"), [0, 255, 255]);
    }

    #[test]
    fn the_piece_over_max_input_vars_is_still_read_then_php_stops() {
        // Read off PHP 8.2 with max_input_vars=3.
        let p = parse(b"a=1&b=2&c=3&d=4&e=5", &limits(3));
        assert_eq!(keys(&p), ["a", "b", "c", "d"]);
        assert!(p.stopped_early);
        let p = parse(b"a=1&&b=2&c=3", &limits(3));
        assert_eq!(keys(&p), ["a", "b", "c"]);
        assert_eq!(p.vars, 4);
        assert!(!p.stopped_early, "nothing came after the fourth piece");
        let p = parse(b"&&&a=1", &limits(3));
        assert_eq!(keys(&p), ["a"]);
        let p = parse(b"a=1&b=2&c=3&", &limits(3));
        assert_eq!(p.vars, 3);
    }

    #[test]
    fn names_are_decoded_before_php_reads_brackets() {
        let p = parse(b"a%5B0%5D=1&content%00=user&+content=x", &limits(100));
        assert!(
            p.post
                .get(&Key::Str(b"a".to_vec()))
                .unwrap()
                .as_array()
                .is_some()
        );
        assert_eq!(
            p.post.get_name("content").unwrap().as_bytes(),
            Some(&b"x"[..])
        );
        assert_eq!(p.fields[1].raw_name, b"content\0");
        assert_eq!(p.fields[2].raw_name, b" content");
    }
}

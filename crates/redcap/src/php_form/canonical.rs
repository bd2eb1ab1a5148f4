//! The body PHP reads back into exactly a given `$_POST`.
//!
//! One field per leaf, in `$_POST`'s order, every key spelled out (never
//! `[]`, whose index PHP 7 and PHP 8 compute differently), every byte
//! outside `A–Z a–z 0–9 - _ . ~` percent-encoded. A base name never holds
//! a space, `.` or `[` (PHP rewrote those) and a key never holds `]`, so
//! `name[key]` reads back as it was written; the differential test checks
//! the round trip against PHP.

use super::array::{Key, PhpArray, Value};

/// Every leaf as (canonical name bytes, value).
pub fn leaves(post: &PhpArray) -> Vec<(Vec<u8>, &Value)> {
    let mut out = Vec::with_capacity(post.len());
    for (k, v) in post.iter() {
        walk(k.to_bytes(), v, &mut out);
    }
    out
}

fn walk<'a>(name: Vec<u8>, v: &'a Value, out: &mut Vec<(Vec<u8>, &'a Value)>) {
    match v {
        Value::Array(a) => {
            for (k, inner) in a.iter() {
                let mut n = name.clone();
                n.push(b'[');
                n.extend_from_slice(&k.to_bytes());
                n.push(b']');
                walk(n, inner, out);
            }
        }
        leaf => out.push((name, leaf)),
    }
}

/// `application/x-www-form-urlencoded`. Written in one pass, each leaf's
/// name from the keys on its way down (`prefix` holds the encoded name of
/// the array being walked): the gateway encodes every request it forwards.
pub fn urlencoded(post: &PhpArray) -> String {
    // Sized for a typical request's body and name, which then take no
    // reallocation.
    let mut out = String::with_capacity(256);
    let mut prefix = String::with_capacity(64);
    for (k, v) in post.iter() {
        prefix.clear();
        encode_key(k, &mut prefix);
        write_leaves(&mut prefix, v, &mut out);
    }
    out
}

/// Writes `name=value` for every leaf under `name` (encoded).
fn write_leaves(name: &mut String, v: &Value, out: &mut String) {
    match v {
        Value::Array(a) => {
            let len = name.len();
            for (k, inner) in a.iter() {
                name.push('[');
                encode_key(k, name);
                name.push(']');
                write_leaves(name, inner, out);
                name.truncate(len);
            }
        }
        Value::Str(s) => {
            start_field(name, out);
            percent_encode(s, out);
        }
        Value::Int(i) => {
            start_field(name, out);
            push_int(*i, out);
        }
    }
}

fn start_field(name: &str, out: &mut String) {
    if !out.is_empty() {
        out.push('&');
    }
    out.push_str(name);
    out.push('=');
}

/// A key as its part of a canonical name (integers in decimal, which need
/// no encoding).
fn encode_key(k: &Key, out: &mut String) {
    match k {
        Key::Int(i) => push_int(*i, out),
        Key::Str(s) => encode_name(s, out),
    }
}

fn push_int(i: i64, out: &mut String) {
    use std::fmt::Write;
    write!(out, "{i}").expect("writing to a String cannot fail");
}

/// A canonical name: brackets literal, everything else encoded.
fn encode_name(name: &[u8], out: &mut String) {
    for &b in name {
        if b == b'[' || b == b']' {
            out.push(b as char);
        } else {
            percent_encode(&[b], out);
        }
    }
}

/// Percent-encodes all but the unreserved characters.
pub fn percent_encode(s: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// Whether a canonical name can be written as a multipart part name: PHP
/// reads it from a header line, so it cannot hold a line feed or a NUL.
pub fn multipart_name_ok(name: &[u8]) -> bool {
    !name.iter().any(|&c| c == b'\n' || c == 0)
}

/// `name="…"` for a multipart header, with PHP's escapes.
pub fn quote_multipart(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 2);
    out.push(b'"');
    for &c in value {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Limits, urlencoded};
    use super::*;

    /// The body as every leaf's whole name, encoded, then its value: what
    /// `urlencoded` writes in one pass.
    fn by_leaves(post: &PhpArray) -> String {
        let mut out = String::new();
        for (name, value) in leaves(post) {
            if !out.is_empty() {
                out.push('&');
            }
            encode_name(&name, &mut out);
            out.push('=');
            match value {
                Value::Str(s) => percent_encode(s, &mut out),
                Value::Int(i) => out.push_str(&i.to_string()),
                Value::Array(_) => unreachable!("leaves are never arrays"),
            }
        }
        out
    }

    #[test]
    fn the_one_pass_body_names_every_leaf_as_its_whole_name_would() {
        let limits = Limits::default();
        for body in [
            &b""[..],
            b"token=K&content=record&records%5B0%5D=1&records%5B1%5D=2",
            b"a[x][y]=1&a[x][z]=2&a[ q]=3&a[b[c]=4&a[05]=5&a[]=6&n%2Bx=%00%FF&123=v&-7[-8][x%5D]=9",
            b"my.field=1&a]b=2&a[-5]=3&a[]=4&e[]=&e[][]=x",
        ] {
            let post = urlencoded::parse(body, &limits).post;
            assert_eq!(urlencoded(&post), by_leaves(&post));
        }
        let mut ints = PhpArray::new();
        ints.update(Key::Str(b"f".to_vec()), Value::Int(-3));
        assert_eq!(urlencoded(&ints), "f=-3");
    }

    #[test]
    fn a_parsed_body_round_trips_through_its_canonical_form() {
        let limits = Limits::default();
        for body in [
            &b"token=K&content=record&records%5B0%5D=1&records%5B1%5D=2&fields=a%2Cb"[..],
            b"a[x][y]=1&a[x][z]=2&a[ q]=3&a[b[c]=4&a[05]=5&a[]=6&n%2Bx=%00%FF&123=v",
            b"my.field=1&a]b=2&a[-5]=3&a[]=4",
        ] {
            let parsed = urlencoded::parse(body, &limits);
            let canonical = urlencoded(&parsed.post);
            let again = urlencoded::parse(canonical.as_bytes(), &limits);
            assert_eq!(again.post, parsed.post, "{canonical}");
            assert!(!canonical.contains("[]"), "{canonical}");
        }
    }

    #[test]
    fn names_a_header_line_cannot_carry_are_recognised() {
        assert!(multipart_name_ok(b"records[0]"));
        assert!(multipart_name_ok(b"a[b[c]"));
        assert!(multipart_name_ok(b"a[ x]"));
        assert!(!multipart_name_ok(b"a[x\ny]"));
        assert!(!multipart_name_ok(b"a[x\0]"));
        assert_eq!(quote_multipart(b"a\"b\\"), b"\"a\\\"b\\\\\"");
    }
}

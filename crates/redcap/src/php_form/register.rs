//! PHP's variable registration: how one `name=value` lands in `$_POST`.
//!
//! Every body format ends here (PHP's `php_register_variable_ex`). The
//! rules, as PHP 8 applies them (checked against PHP 8.2 by the
//! differential test):
//!
//! 1. The name is a C string: it ends at its first NUL byte.
//! 2. Leading spaces are dropped; in the base name (before the first `[`)
//!    every space and `.` becomes `_`. An empty base drops the field.
//! 3. `[key]` groups descend into nested arrays; `[]` appends at the next
//!    free integer index, and so does `[` + one whitespace character + `]`
//!    (`a[ ]`, `a[\t]`); otherwise a leading whitespace character stays in
//!    the key (`a[ x]` is the key `" x"`); numeric keys become integers.
//! 4. After a `]`, anything but `[` ends the name (`a[0]junk` is `a[0]`).
//! 5. A `[` without a closing `]` right after the base turns into `_`, and
//!    so does every space, `.` and `[` after it (`a[b.c` is `a_b_c`); at a
//!    deeper level the unclosed group is ignored (`a[x][y` is `a[x]`).
//! 6. More than `max_input_nesting_level` groups delete the whole base
//!    variable, including what earlier fields put there — unless an append
//!    on the way failed first.
//! 7. A later value replaces an earlier one in place; descending through a
//!    string replaces it with an array.

use std::borrow::Cow;

use super::array::{Key, PhpArray, Value};

/// What one registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The top-level `$_POST` key the field touched (`None` when the name
    /// was empty and PHP dropped the field).
    pub top: Option<Key>,
    /// What happened there.
    pub effect: Effect,
}

/// The outcome of registering one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The value was stored.
    Set,
    /// The name was empty: nothing was stored.
    Dropped,
    /// Too deeply nested: the whole top-level variable was deleted.
    Deleted,
    /// `[]` found its next index taken (after `a[9223372036854775807]`):
    /// nothing was stored.
    AppendFailed,
}

/// C's `isspace` in the "C" locale.
pub(crate) fn is_space(c: u8) -> bool {
    c == b' ' || (b'\t'..=b'\r').contains(&c)
}

/// Registers `name = value` into `post` as PHP does.
pub fn register(
    post: &mut PhpArray,
    name: &[u8],
    value: Value,
    max_nesting: usize,
) -> Registration {
    let name = &name[..memchr::memchr(0, name).unwrap_or(name.len())];
    let start = name.iter().position(|&c| c != b' ').unwrap_or(name.len());
    let name = &name[start..];
    let open = name.iter().position(|&c| c == b'[');
    let base_len = open.unwrap_or(name.len());
    if base_len == 0 {
        return Registration {
            top: None,
            effect: Effect::Dropped,
        };
    }
    // Copied only when PHP rewrites a character of it.
    let base: Cow<'_, [u8]> = if name[..base_len].iter().any(|&c| base_char(c) != c) {
        Cow::Owned(name[..base_len].iter().map(|&c| base_char(c)).collect())
    } else {
        Cow::Borrowed(&name[..base_len])
    };
    let top = Key::from_bytes(&base);
    let Some(open) = open else {
        post.update(top.clone(), value);
        return set(top);
    };

    // Walk the bracket groups: `path` is where to descend (None = append),
    // `pending` the key the value lands on in the deepest array.
    let mut path: Vec<Option<Key>> = Vec::new();
    let mut pending = Some(top.clone());
    let mut ip = open;
    let mut nest = 0;
    // PHP checks the nesting level before each group, but descends (and
    // can fail an append) as it goes: an overflow only deletes the variable
    // if every step before it succeeded.
    let mut overflow = false;
    loop {
        nest += 1;
        if nest > max_nesting {
            overflow = true;
            break;
        }
        ip += 1;
        let index_start = ip;
        if name.get(ip).is_some_and(|&c| is_space(c)) {
            ip += 1;
        }
        let next = if name.get(ip) == Some(&b']') {
            None
        } else {
            match memchr::memchr(b']', &name[ip.min(name.len())..]) {
                Some(e) => {
                    let key = Key::from_bytes(&name[index_start..ip + e]);
                    ip += e;
                    Some(key)
                }
                None if path.is_empty() => {
                    // Not an index after all: the `[` and what follows join
                    // the base name.
                    let mut joined = base.into_owned();
                    joined.push(b'_');
                    joined.extend(name[index_start..].iter().map(|&c| match c {
                        b' ' | b'.' | b'[' => b'_',
                        c => c,
                    }));
                    let top = Key::from_bytes(&joined);
                    post.update(top.clone(), value);
                    return set(top);
                }
                None => break,
            }
        };
        path.push(pending);
        pending = next;
        ip += 1;
        if name.get(ip) != Some(&b'[') {
            break;
        }
    }

    let mut arr = &mut *post;
    for step in path {
        arr = match step {
            Some(key) => arr.descend(key),
            None => match arr.append(Value::Array(PhpArray::new())) {
                Some(Value::Array(a)) => a,
                _ => return failed(top),
            },
        };
    }
    if overflow {
        post.remove(&top);
        return Registration {
            top: Some(top),
            effect: Effect::Deleted,
        };
    }
    match pending {
        Some(key) => arr.update(key, value),
        None => {
            if arr.append(value).is_none() {
                return failed(top);
            }
        }
    }
    set(top)
}

fn base_char(c: u8) -> u8 {
    if c == b' ' || c == b'.' { b'_' } else { c }
}

fn set(top: Key) -> Registration {
    Registration {
        top: Some(top),
        effect: Effect::Set,
    }
}

fn failed(top: Key) -> Registration {
    Registration {
        top: Some(top),
        effect: Effect::AppendFailed,
    }
}

/// The name PHP registers an upload's `$_FILES` entries under
/// (`normalize_protected_variable`): leading spaces dropped, space and `.`
/// in the base become `_`, leading whitespace (space, tab, CR, LF) inside
/// each `[…]` group is dropped, and anything after the last group that is
/// followed by something other than `[` is cut. So an upload named
/// `f[ x]` is `$_FILES['f']['name']['x']`, where a text part of that name
/// is `$_POST['f'][' x']`.
pub fn normalize_multipart_name(name: &[u8]) -> Vec<u8> {
    let start = name.iter().position(|&c| c != b' ').unwrap_or(name.len());
    let name = &name[start..];
    let Some(open) = name.iter().position(|&c| c == b'[') else {
        return name.iter().map(|&c| base_char(c)).collect();
    };
    let mut out: Vec<u8> = name[..open].iter().map(|&c| base_char(c)).collect();
    out.push(b'[');
    let mut i = open + 1;
    loop {
        while i < name.len() && matches!(name[i], b' ' | b'\r' | b'\n' | b'\t') {
            i += 1;
        }
        let end = memchr::memchr(b']', &name[i..]).map_or(name.len(), |e| i + e + 1);
        out.extend_from_slice(&name[i..end]);
        i = end;
        if name.get(i) == Some(&b'[') {
            out.push(b'[');
            i += 1;
        } else {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.as_bytes().to_vec())
    }

    /// Registers each `name=value` and returns `$_POST` as nested
    /// `(key, value)` text for comparison.
    fn post(pairs: &[(&str, &str)], nesting: usize) -> String {
        let mut p = PhpArray::new();
        for (n, v) in pairs {
            register(&mut p, n.as_bytes(), s(v), nesting);
        }
        show(&p)
    }

    fn show(a: &PhpArray) -> String {
        let items: Vec<String> = a
            .iter()
            .map(|(k, v)| {
                let k = match k {
                    Key::Int(i) => i.to_string(),
                    Key::Str(s) => format!("{:?}", String::from_utf8_lossy(s)),
                };
                let v = match v {
                    Value::Str(s) => format!("{:?}", String::from_utf8_lossy(s)),
                    Value::Int(i) => i.to_string(),
                    Value::Array(a) => show(a),
                };
                format!("{k}:{v}")
            })
            .collect();
        format!("{{{}}}", items.join(","))
    }

    /// Each row was read off PHP 8.2 (`php -S` printing `$_POST`).
    #[test]
    fn names_land_where_php_puts_them() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("a[b.c d[e", "1")], r#"{"a_b_c_d_e":"1"}"#),
            (&[("a.b[c", "1")], r#"{"a_b_c":"1"}"#),
            (&[("a[-5]", "1"), ("a[]", "2")], r#"{"a":{-5:"1",-4:"2"}}"#),
            (&[("a[x][y", "1")], r#"{"a":{"x":"1"}}"#),
            (
                &[("a[ x]", "1"), ("a[ ]", "2"), ("a[  ]", "3")],
                r#"{"a":{" x":"1",0:"2","  ":"3"}}"#,
            ),
            (&[("content\0x", "1")], r#"{"content":"1"}"#),
            (&[("  content", "1")], r#"{"content":"1"}"#),
            (&[("a[0]x[1]", "1")], r#"{"a":{0:"1"}}"#),
            (&[("a[b[c]", "1")], r#"{"a":{"b[c":"1"}}"#),
            (&[("a]b", "1")], r#"{"a]b":"1"}"#),
            (&[("123", "x"), ("0", "y")], r#"{123:"x",0:"y"}"#),
            (
                &[("a[9223372036854775807]", "1"), ("a[]", "2")],
                r#"{"a":{9223372036854775807:"1"}}"#,
            ),
            (
                &[("a[05]", "1"), ("a[5]", "2"), ("a[-0]", "3")],
                r#"{"a":{"05":"1",5:"2","-0":"3"}}"#,
            ),
            (&[("a", "1"), ("a[]", "2")], r#"{"a":{0:"2"}}"#),
            (&[("a[]", "1"), ("a", "2")], r#"{"a":"2"}"#),
            (
                &[("a", "1"), ("b", "2"), ("a", "3")],
                r#"{"a":"3","b":"2"}"#,
            ),
            (&[("[x]", "1"), ("", "2"), ("   ", "3")], r#"{}"#),
            (
                &[("a[][x]", "1"), ("a[][y]", "2")],
                r#"{"a":{0:{"x":"1"},1:{"y":"2"}}}"#,
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(&post(pairs, 64), want, "{pairs:?}");
        }
    }

    #[test]
    fn too_deep_a_name_deletes_the_whole_variable() {
        assert_eq!(
            post(&[("x", "1"), ("a[1][2][3]", "1")], 3),
            r#"{"x":"1","a":{1:{2:{3:"1"}}}}"#
        );
        assert_eq!(post(&[("a", "1"), ("a[1][2][3][4]", "1")], 3), "{}");
        assert_eq!(post(&[("a", "1"), ("a[1][2][3][4", "1")], 3), "{}");
        let mut p = PhpArray::new();
        let r = register(&mut p, b"a[1][2]", s("1"), 1);
        assert_eq!(r.effect, Effect::Deleted);
        assert_eq!(r.top, Some(Key::Str(b"a".to_vec())));
    }

    #[test]
    fn upload_names_are_normalised_first() {
        for (raw, want) in [
            ("a[ x]", "a[x]"),
            ("a[\tx][\r\ny]", "a[x][y]"),
            ("a[  ]", "a[]"),
            ("a[0]junk", "a[0]"),
            ("a[b", "a[b"),
            ("a[ b", "a[b"),
            ("  my.field x[k.1]", "my_field_x[k.1]"),
            ("plain", "plain"),
        ] {
            assert_eq!(
                String::from_utf8(normalize_multipart_name(raw.as_bytes())).unwrap(),
                want,
                "{raw:?}"
            );
        }
    }
}

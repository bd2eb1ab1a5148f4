//! Request bodies read the way PHP fills `$_POST` (§1.1, DESIGN "gateway").
//!
//! REDCap acts on PHP's `$_POST`, so the sandbox parses form and multipart
//! bodies with PHP's rules:
//!
//! - `a[0]=x&a[1]=y`, `a[]=x&a[]=y` and `a[k]=x` build arrays (nesting works
//!   too); `a[]` appends with the next integer key.
//! - A later duplicate replaces an earlier one (last wins).
//! - In the name before the first `[`, `.` and space become `_`; leading
//!   spaces are dropped; an unmatched `[` also becomes `_`.
//! - Multipart file parts go to `$_FILES`, not `$_POST`: they are kept apart.

/// A `$_POST` value: a string or an (ordered) array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhpValue {
    Str(String),
    Array(Vec<(String, PhpValue)>),
}

impl PhpValue {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PhpValue::Str(s) => Some(s),
            PhpValue::Array(_) => None,
        }
    }

    /// The string elements of an array, in order (nested arrays skipped).
    pub fn array_strings(&self) -> Option<Vec<String>> {
        match self {
            PhpValue::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|(_, v)| v.as_str().map(str::to_owned))
                    .collect(),
            ),
            PhpValue::Str(_) => None,
        }
    }
}

/// An uploaded file part (multipart), as PHP's `$_FILES` would hold it:
/// the part's name, the client's file name, the client's declared type
/// (`$_FILES[…]['type']`) and the raw bytes, never decoded.
#[derive(Debug, Clone)]
pub struct Upload {
    pub name: String,
    pub filename: String,
    pub content_type: Option<String>,
    pub bytes: axum::body::Bytes,
}

/// The parsed `$_POST` (plus `$_FILES`).
#[derive(Debug, Clone, Default)]
pub struct Post {
    values: Vec<(String, PhpValue)>,
    pub files: Vec<Upload>,
}

/// Splits a raw field name into PHP's base name and bracket keys.
fn split_name(raw: &str) -> Option<(String, Vec<String>)> {
    let raw = raw.trim_start_matches(' ');
    // Base: up to the first '[' that has a matching ']'.
    let mut base = String::new();
    let mut keys = Vec::new();
    let mut rest = None;
    for (i, c) in raw.char_indices() {
        if c == '[' {
            if raw[i + 1..].contains(']') {
                rest = Some(&raw[i..]);
                break;
            }
            // Unmatched '[': PHP turns it into '_' and keeps the rest
            // verbatim — unless nothing came before it (empty name).
            if base.is_empty() {
                return None;
            }
            base.push('_');
            base.push_str(&raw[i + 1..]);
            rest = None;
            break;
        }
        base.push(if c == '.' || c == ' ' { '_' } else { c });
    }
    if base.is_empty() {
        return None;
    }
    let mut rest = rest.unwrap_or("");
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(end) = stripped.find(']') else { break };
        keys.push(stripped[..end].to_owned());
        rest = &stripped[end + 1..];
    }
    Some((base, keys))
}

fn next_index(items: &[(String, PhpValue)]) -> String {
    let max = items
        .iter()
        .filter_map(|(k, _)| k.parse::<i64>().ok())
        .max();
    match max {
        Some(m) if m >= 0 => (m + 1).to_string(),
        _ => "0".to_owned(),
    }
}

fn insert(items: &mut Vec<(String, PhpValue)>, key: String, keys: &[String], value: String) {
    let key = if key.is_empty() {
        next_index(items)
    } else {
        key
    };
    if keys.is_empty() {
        if let Some(slot) = items.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = PhpValue::Str(value);
        } else {
            items.push((key, PhpValue::Str(value)));
        }
        return;
    }
    let pos = match items.iter().position(|(k, _)| *k == key) {
        Some(p) => {
            if !matches!(items[p].1, PhpValue::Array(_)) {
                items[p].1 = PhpValue::Array(Vec::new());
            }
            p
        }
        None => {
            items.push((key, PhpValue::Array(Vec::new())));
            items.len() - 1
        }
    };
    if let PhpValue::Array(inner) = &mut items[pos].1 {
        insert(inner, keys[0].clone(), &keys[1..], value);
    }
}

impl Post {
    /// The uploaded file part named `name` (`$_FILES[name]`); PHP keeps the
    /// last of several with one name.
    pub fn file(&self, name: &str) -> Option<&Upload> {
        self.files.iter().rev().find(|u| u.name == name)
    }

    /// Adds one `name=value` pair with PHP's rules.
    pub fn push(&mut self, name: &str, value: String) {
        if let Some((base, keys)) = split_name(name) {
            insert(&mut self.values, base, &keys, value);
        }
    }

    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn from_urlencoded(body: &[u8]) -> Self {
        let mut post = Post::default();
        for (k, v) in form_urlencoded::parse(body) {
            post.push(&k, v.into_owned());
        }
        post
    }

    /// The value of a parameter.
    pub fn get(&self, name: &str) -> Option<&PhpValue> {
        self.values.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The parameter as a string; `""` when absent or an array.
    pub fn str(&self, name: &str) -> &str {
        self.get(name).and_then(PhpValue::as_str).unwrap_or("")
    }

    /// Whether the parameter is present (even empty).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// PHP truthiness used for REDCap's boolean flags: `1` or `true`
    /// (case-insensitive) (§1.2).
    pub fn flag(&self, name: &str) -> bool {
        let v = self.str(name);
        v == "1" || v.eq_ignore_ascii_case("true")
    }

    /// A list parameter: a PHP array, or (where REDCap explodes on commas)
    /// a comma-separated string. Empty items are dropped.
    pub fn list(&self, name: &str, comma_string: bool) -> Option<Vec<String>> {
        let value = self.get(name)?;
        let items = match value {
            PhpValue::Array(_) => value.array_strings().unwrap_or_default(),
            PhpValue::Str(s) if comma_string => s.split(',').map(|p| p.trim().to_owned()).collect(),
            PhpValue::Str(s) => vec![s.clone()],
        };
        Some(items.into_iter().filter(|s| !s.is_empty()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Post {
        Post::from_urlencoded(body.as_bytes())
    }

    #[test]
    fn arrays_with_indexes_and_appends() {
        let p = parse("records[0]=1&records[1]=2&fields[]=a&fields[]=b&m[x]=1&m[y]=2");
        assert_eq!(
            p.get("records").unwrap().array_strings().unwrap(),
            ["1", "2"]
        );
        assert_eq!(
            p.get("fields").unwrap().array_strings().unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            p.get("m").unwrap(),
            &PhpValue::Array(vec![
                ("x".into(), PhpValue::Str("1".into())),
                ("y".into(), PhpValue::Str("2".into()))
            ])
        );
        let p = parse("a[5]=x&a[]=y");
        assert_eq!(
            p.get("a").unwrap(),
            &PhpValue::Array(vec![
                ("5".into(), PhpValue::Str("x".into())),
                ("6".into(), PhpValue::Str("y".into()))
            ])
        );
    }

    #[test]
    fn last_duplicate_wins() {
        let p = parse("token=A&content=version&token=B");
        assert_eq!(p.str("token"), "B");
        let p = parse("r[0]=1&r[0]=2");
        assert_eq!(p.get("r").unwrap().array_strings().unwrap(), ["2"]);
        // A scalar after an array replaces it, and the other way round.
        assert_eq!(parse("a[]=1&a=2").str("a"), "2");
        assert!(parse("a=2&a[]=1").get("a").unwrap().as_str().is_none());
    }

    #[test]
    fn dots_and_spaces_become_underscores() {
        let p = parse("return.Format=json&my+name=x&a.b[c.d]=1&+lead=y");
        assert_eq!(p.str("return_Format"), "json");
        assert_eq!(p.str("my_name"), "x");
        assert_eq!(
            p.get("a_b").unwrap(),
            &PhpValue::Array(vec![("c.d".into(), PhpValue::Str("1".into()))])
        );
        assert_eq!(p.str("lead"), "y");
        // Unmatched bracket becomes '_'.
        assert_eq!(parse("a[b=1").str("a_b"), "1");
        // Empty names vanish.
        assert!(parse("=1&[x]=2&[y=3&+=4").values.is_empty());
    }

    #[test]
    fn lists_and_flags() {
        let p = parse("records=1,2,%203&fields[]=a&x=TRUE&y=yes");
        assert_eq!(p.list("records", true).unwrap(), ["1", "2", "3"]);
        assert_eq!(p.list("records", false).unwrap(), ["1,2, 3"]);
        assert_eq!(p.list("fields", true).unwrap(), ["a"]);
        assert!(p.list("forms", true).is_none());
        assert!(p.flag("x"));
        assert!(!p.flag("y"));
    }

    proptest::proptest! {
        /// Any body parses without panicking; every parsed name is
        /// non-empty, and has no `.` or space unless an unmatched `[`
        /// (kept verbatim after it, as PHP does) let them through.
        #[test]
        fn any_body_parses(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let post = Post::from_urlencoded(&body);
            for (name, _) in &post.values {
                proptest::prop_assert!(!name.is_empty());
                proptest::prop_assert!(!name.starts_with(' '));
                let raw: Vec<String> = form_urlencoded::parse(&body).map(|(k, _)| k.into_owned()).collect();
                if raw.iter().all(|k| !k.contains('[')) {
                    proptest::prop_assert!(!name.contains('.') && !name.contains(' '));
                }
            }
        }

        #[test]
        fn names_with_brackets_never_panic(name in "[a-z .\\[\\]]{0,12}", value in "[a-z]{0,4}") {
            let mut post = Post::default();
            post.push(&name, value);
        }
    }
}

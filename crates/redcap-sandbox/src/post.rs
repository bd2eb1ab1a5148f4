//! Request bodies read the way PHP fills `$_POST` and `$_FILES` (§1.1,
//! DESIGN "gateway").
//!
//! REDCap acts on PHP's `$_POST`, so the sandbox reads bodies with the
//! same model of PHP's parser the gateway decides on,
//! [`redcap::php_form`]: names cut at NUL, `.` and space turned into `_`,
//! brackets building arrays, the last duplicate winning, PHP's multipart
//! reader with its own quoting, and the `php.ini` limits of
//! [`PHP_LIMITS`]. This file only adapts that model to the strings the
//! API code works with.

use redcap::php_form::{self, Limits, PhpArray, Value};

/// The `php.ini` limits the sandbox reads bodies with: PHP's defaults,
/// with REDCap's recommended `max_input_vars` of 10,000 and no upload
/// size limit (REDCap's own file-size checks apply).
pub const PHP_LIMITS: Limits = Limits {
    max_input_vars: 10_000,
    max_input_nesting_level: 64,
    max_file_uploads: 20,
    max_multipart_body_parts: None,
    upload_max_filesize: 0,
};

/// A `$_POST` value: a string or an (ordered) array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhpValue {
    /// A scalar, e.g. `token=…`; bytes that are not UTF-8 become U+FFFD.
    Str(String),
    /// `name[]=…` or `name[key]=…`: keys (integer keys as text) and values
    /// in PHP's order.
    Array(Vec<(String, PhpValue)>),
}

impl PhpValue {
    fn of(v: &Value) -> PhpValue {
        match v {
            Value::Str(s) => PhpValue::Str(String::from_utf8_lossy(s).into_owned()),
            Value::Int(i) => PhpValue::Str(i.to_string()),
            Value::Array(a) => PhpValue::Array(
                a.iter()
                    .map(|(k, v)| (k.to_text(), PhpValue::of(v)))
                    .collect(),
            ),
        }
    }

    /// [`PhpValue::of`], taking the value: a string keeps its buffer (a
    /// large `data` is not copied).
    fn of_owned(v: Value) -> PhpValue {
        match v {
            Value::Str(s) => PhpValue::Str(
                String::from_utf8(s)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
            other => PhpValue::of(&other),
        }
    }

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

/// An uploaded file part, as PHP's `$_FILES` holds it: the part's name,
/// the client's file name (its basename, PHP's `name`), the declared type
/// and the raw bytes. `error` is PHP's `UPLOAD_ERR_*` (0: kept).
#[derive(Debug, Clone)]
pub struct Upload {
    /// The form field it was sent under (REDCap's Import File reads `file`).
    pub name: String,
    /// The client's file name, reduced to its basename.
    pub filename: String,
    /// The part's `Content-Type`, if it declared one.
    pub content_type: Option<String>,
    /// PHP's `UPLOAD_ERR_*` code; anything but 0 means the bytes were not
    /// kept.
    pub error: i64,
    /// The file's content.
    pub bytes: axum::body::Bytes,
}

/// The parsed `$_POST` (plus `$_FILES`).
#[derive(Debug, Clone, Default)]
pub struct Post {
    values: Vec<(String, PhpValue)>,
    /// `$_FILES`: the file parts of a multipart body, in order.
    pub files: Vec<Upload>,
}

impl Post {
    /// Reads a body by its `Content-Type`, as PHP does; any type but a
    /// form or multipart body is an empty `$_POST`.
    pub fn from_body(content_type: &[u8], body: &[u8]) -> Result<Post, String> {
        let (parsed, uploads) = php_form::parse_buffered(content_type, body, &PHP_LIMITS)
            .map_err(|e| format!("unreadable multipart body: {e}"))?;
        let files = uploads
            .into_iter()
            .map(|u| Upload {
                name: String::from_utf8_lossy(&u.name).into_owned(),
                filename: String::from_utf8_lossy(basename(&u.filename)).into_owned(),
                content_type: (!u.content_type.is_empty())
                    .then(|| String::from_utf8_lossy(&u.content_type).into_owned()),
                error: u.error,
                bytes: u.bytes.into(),
            })
            .collect();
        Ok(Post::from_array(parsed.post, files))
    }

    /// Takes the parsed array over, value by value (last first: removing
    /// from the end moves nothing), so no value is held twice.
    fn from_array(mut post: PhpArray, files: Vec<Upload>) -> Post {
        let keys: Vec<_> = post.iter().map(|(k, _)| k.clone()).collect();
        let mut values = Vec::with_capacity(keys.len());
        for k in keys.into_iter().rev() {
            if let Some(v) = post.remove(&k) {
                values.push((k.to_text(), PhpValue::of_owned(v)));
            }
        }
        values.reverse();
        Post { values, files }
    }

    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn from_urlencoded(body: &[u8]) -> Self {
        let parsed = php_form::urlencoded::parse(body, &PHP_LIMITS);
        Post::from_array(parsed.post, Vec::new())
    }

    /// The uploaded file part named `name` (`$_FILES[name]`); PHP keeps the
    /// last of several with one name.
    pub fn file(&self, name: &str) -> Option<&Upload> {
        self.files.iter().rev().find(|u| u.name == name)
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

/// PHP's `$_FILES[…]['name']`: after the last `/` or `\`.
fn basename(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&c| c == b'/' || c == b'\\') {
        Some(i) => &path[i + 1..],
        None => path,
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
        /// Any body parses without panicking; every top-level name is
        /// non-empty, and PHP 8 leaves no `.`, space or NUL in it.
        #[test]
        fn any_body_parses(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let post = Post::from_urlencoded(&body);
            for (name, _) in &post.values {
                proptest::prop_assert!(!name.is_empty());
                proptest::prop_assert!(!name.contains(['.', ' ', '\0']), "{name:?}");
            }
        }
    }
}

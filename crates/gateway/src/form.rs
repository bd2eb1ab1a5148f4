//! The gateway's view of a request: PHP's `$_POST`, and the rule that
//! keeps it the only view.
//!
//! REDCap acts on what PHP builds from the body, so the gateway decides on
//! exactly that — [`redcap::php_form`] computes it — and never on the raw
//! names. On top of the model sits one rule: a parameter that drives REDCap
//! or the gateway ([`PROTECTED`]) may be set only by a field spelled
//! exactly as its name (`content`; for lists also `records[]` and
//! `records[N]`), once, as valid UTF-8. So `content%00=user`, `+content`,
//! `content[]`, a second `action`, a `records` that is both a
//! string and an array, or a multipart `name="content\0"` are refused with
//! a REDCap-shaped 400 naming the parameter — the policy, the hold, the
//! ledger, the token and the DAG guard can never see one request while
//! REDCap sees another. Any other name PHP rewrites is forwarded under the
//! name PHP gives it, and the ledger records that name.
//!
//! What reaches REDCap is never the client's bytes but the canonical body
//! of the checked `$_POST` ([`redcap::php_form::canonical`]), which PHP
//! reads back into the same array (the differential test checks that
//! too), with at most `max_input_vars` fields once the token is added.

use redcap::php_form::{Effect, Key, Limits, Parsed, PhpArray, Value, canonical};

/// How a protected parameter may be spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One string, under exactly its name.
    Scalar,
    /// A string (REDCap splits it on commas) or a flat list: `name`,
    /// `name[]` or `name[N]`, never both forms.
    List,
}

/// The parameters whose meaning must be unambiguous: what selects the
/// method, the credential, the records and fields concerned, the shape of
/// the answer (which the guard and the ledger read), and the gateway's own.
pub const PROTECTED: &[(&str, Shape)] = &[
    ("token", Shape::Scalar),
    ("content", Shape::Scalar),
    ("action", Shape::Scalar),
    ("format", Shape::Scalar),
    ("type", Shape::Scalar),
    ("returnFormat", Shape::Scalar),
    ("returnContent", Shape::Scalar),
    ("overwriteBehavior", Shape::Scalar),
    ("forceAutoNumber", Shape::Scalar),
    ("backgroundProcess", Shape::Scalar),
    ("data", Shape::Scalar),
    ("odm", Shape::Scalar),
    ("filterLogic", Shape::Scalar),
    ("dag", Shape::Scalar),
    ("report_id", Shape::Scalar),
    ("record", Shape::Scalar),
    ("field", Shape::Scalar),
    ("event", Shape::Scalar),
    ("instrument", Shape::Scalar),
    ("repeat_instance", Shape::Scalar),
    ("arm", Shape::Scalar),
    ("exportDataAccessGroups", Shape::Scalar),
    ("exportSurveyFields", Shape::Scalar),
    ("rawOrLabel", Shape::Scalar),
    ("rawOrLabelHeaders", Shape::Scalar),
    ("exportCheckboxLabel", Shape::Scalar),
    ("csvDelimiter", Shape::Scalar),
    ("decimalCharacter", Shape::Scalar),
    ("dateRangeBegin", Shape::Scalar),
    ("dateRangeEnd", Shape::Scalar),
    ("beginTime", Shape::Scalar),
    ("endTime", Shape::Scalar),
    ("user", Shape::Scalar),
    ("reason", Shape::Scalar),
    ("mobile_app", Shape::Scalar),
    ("mobileApp", Shape::Scalar),
    ("playground", Shape::Scalar),
    ("records", Shape::List),
    ("fields", Shape::List),
    ("forms", Shape::List),
    ("events", Shape::List),
    ("arms", Shape::List),
    ("dags", Shape::List),
    ("users", Shape::List),
    ("roles", Shape::List),
];

/// Protected parameters whose value may be any bytes (REDCap parses them
/// as data, and the gateway only hashes them).
const BINARY: &[&str] = &["data", "odm", "filterLogic"];

/// Parameters the gateway removes: they change how REDCap treats the
/// caller (`mobile_app` escalates rights, `playground` relabels the log).
pub const STRIPPED: &[&str] = &["mobile_app", "mobileApp", "playground"];

fn protected(name: &[u8]) -> Option<(usize, &'static str, Shape)> {
    PROTECTED
        .iter()
        .enumerate()
        .find(|(_, (n, _))| n.as_bytes() == name)
        .map(|(i, &(n, shape))| (i, n, shape))
}

/// Why a body was refused; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// PHP stops reading (urlencoded) or ignores the rest (multipart).
    #[error(
        "the request has more fields than the {max} REDCap's PHP reads (max_input_vars); it would silently drop the rest. Send fewer fields"
    )]
    TooManyFields {
        /// The configured `max_input_vars`.
        max: usize,
    },
    /// With the token and the gateway's own parameters added.
    #[error(
        "with the token the gateway adds, the request would have {count} fields, more than the {max} REDCap's PHP reads (max_input_vars). Send fewer fields"
    )]
    TooManyOutgoing {
        /// Fields in the body the gateway would forward.
        count: usize,
        /// The configured `max_input_vars`.
        max: usize,
    },
    /// A protected parameter set more than once.
    #[error(
        "the parameter \"{name}\" is sent more than once (or as both a value and a list); PHP would keep only one of them. Send it once"
    )]
    Repeated {
        /// The parameter.
        name: String,
    },
    /// A scalar protected parameter sent as an array.
    #[error("the parameter \"{name}\" must be a single value, not an array (sent as \"{raw}\")")]
    ArrayNotAllowed {
        /// The parameter.
        name: String,
        /// The name as sent, escaped.
        raw: String,
    },
    /// A name PHP rewrites onto a protected parameter.
    #[error(
        "the parameter name \"{raw}\" is read by PHP, and so by REDCap, as \"{php}\"; send it as {spelling}"
    )]
    Rewritten {
        /// The name as sent, escaped.
        raw: String,
        /// The parameter PHP makes of it.
        php: String,
        /// The spellings accepted.
        spelling: String,
    },
    /// A protected parameter whose value is not UTF-8.
    #[error("the value of the parameter \"{name}\" is not valid UTF-8")]
    NotUtf8 {
        /// The parameter.
        name: String,
    },
    /// A multipart body PHP reads in a surprising way.
    #[error("the multipart body has {0}; send a plain multipart/form-data body")]
    Multipart(&'static str),
    /// A body PHP cannot read at all.
    #[error("the request body cannot be read: {0}")]
    Unreadable(String),
}

/// A checked `$_POST`: what REDCap will act on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    post: PhpArray,
}

/// The body's `$_POST` if the rule allows it (taken, not copied: an
/// import's `data` can be most of the body).
pub fn check(parsed: Parsed, limits: &Limits) -> Result<Form, Refusal> {
    if parsed.stopped_early || parsed.vars > limits.max_input_vars {
        return Err(Refusal::TooManyFields {
            max: limits.max_input_vars,
        });
    }
    if let Some(note) = parsed.notes.first() {
        return Err(Refusal::Multipart(note.describe()));
    }
    // Fields that touched each protected parameter (by its place in
    // `PROTECTED`).
    let mut touched = [0usize; PROTECTED.len()];
    for field in &parsed.fields {
        let Some(Key::Str(top)) = &field.registration.top else {
            continue;
        };
        let Some((index, name, shape)) = protected(top) else {
            continue;
        };
        let raw = &field.raw_name[..];
        let exact = raw == name.as_bytes();
        let spelled = match shape {
            Shape::Scalar => exact,
            Shape::List => exact || list_item(raw, name),
        };
        if !spelled {
            let escaped = escape(raw);
            if shape == Shape::Scalar && raw.starts_with(format!("{name}[").as_bytes()) {
                return Err(Refusal::ArrayNotAllowed {
                    name: name.into(),
                    raw: escaped,
                });
            }
            return Err(Refusal::Rewritten {
                raw: escaped,
                php: name.into(),
                spelling: match shape {
                    Shape::Scalar => format!("\"{name}\""),
                    Shape::List => format!("\"{name}\", \"{name}[]\" or \"{name}[N]\""),
                },
            });
        }
        if field.registration.effect != Effect::Set {
            return Err(Refusal::Repeated { name: name.into() });
        }
        touched[index] += 1;
    }
    for (&(name, _), count) in PROTECTED.iter().zip(touched) {
        if count == 0 {
            continue;
        }
        let value = parsed.post.get_name(name);
        let leaves = match value {
            Some(Value::Str(_)) => 1,
            Some(Value::Array(a)) => a.len(),
            _ => 0,
        };
        if leaves != count {
            return Err(Refusal::Repeated { name: name.into() });
        }
        if !BINARY.contains(&name) {
            let text = match value {
                Some(Value::Str(s)) => std::str::from_utf8(s).is_ok(),
                Some(Value::Array(a)) => a
                    .iter()
                    .all(|(_, v)| v.as_bytes().is_some_and(|b| std::str::from_utf8(b).is_ok())),
                _ => true,
            };
            if !text {
                return Err(Refusal::NotUtf8 { name: name.into() });
            }
        }
    }
    let mut form = Form { post: parsed.post };
    for name in STRIPPED {
        form.post.remove_name(name);
    }
    Ok(form)
}

/// `name[]` or `name[N]` with N a plain non-negative number (no sign, no
/// leading zero, at most nine digits: PHP 7 and 8 agree on where those
/// land).
fn list_item(raw: &[u8], name: &str) -> bool {
    let Some(rest) = raw.strip_prefix(name.as_bytes()) else {
        return false;
    };
    let Some(inner) = rest.strip_prefix(b"[").and_then(|r| r.strip_suffix(b"]")) else {
        return false;
    };
    inner.is_empty()
        || (inner.len() <= 9
            && inner.iter().all(u8::is_ascii_digit)
            && (inner == b"0" || inner[0] != b'0'))
}

/// A name as a user can read it: printable ASCII as is, the rest escaped.
fn escape(raw: &[u8]) -> String {
    let mut out = String::new();
    for &c in raw {
        match c {
            0 => out.push_str("\\0"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(c as char),
            _ => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out
}

fn key(name: &str) -> Key {
    Key::from_bytes(name.as_bytes())
}

impl Form {
    /// `$_POST` itself.
    pub fn post(&self) -> &PhpArray {
        &self.post
    }

    /// A string parameter, if present and UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    /// A string parameter's bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.post.get_name(name).and_then(Value::as_bytes)
    }

    /// A list parameter: the array's values in order, or a string split on
    /// commas (as REDCap accepts for `records`, `fields`…).
    pub fn list(&self, name: &str) -> Vec<String> {
        match self.post.get_name(name) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|(_, v)| v.as_bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect(),
            Some(Value::Str(s)) => String::from_utf8_lossy(s)
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Removes a string parameter and returns it.
    pub fn take(&mut self, name: &str) -> Option<String> {
        match self.post.get_name(name) {
            Some(Value::Str(_)) => match self.post.remove_name(name) {
                Some(Value::Str(s)) => Some(String::from_utf8_lossy(&s).into_owned()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Sets a string parameter, in place or at the end.
    pub fn set(&mut self, name: &str, value: &str) {
        self.post
            .update(key(name), Value::Str(value.as_bytes().to_vec()));
    }

    /// A copy with a string parameter set.
    pub fn with(&self, name: &str, value: &str) -> Form {
        let mut form = self.clone();
        form.set(name, value);
        form
    }

    /// What `self.with(name, value).encode()` adds after `self.encode()`
    /// (`encoded`) when the form has no `name`: the pair, after a `&`
    /// unless `encoded` is empty. The gateway sends the canonical body it
    /// recorded and then this, so an import's payload is neither copied
    /// nor encoded again to add the token.
    pub fn encoded_suffix(encoded: &[u8], name: &str, value: &str) -> String {
        let mut out = String::with_capacity(name.len() + value.len() + 2);
        if !encoded.is_empty() {
            out.push('&');
        }
        canonical::percent_encode(name.as_bytes(), &mut out);
        out.push('=');
        canonical::percent_encode(value.as_bytes(), &mut out);
        out
    }

    /// The top-level parameter names, as PHP will see them (what the
    /// ledger records).
    pub fn names(&self) -> Vec<String> {
        self.post.iter().map(|(k, _)| k.to_text()).collect()
    }

    /// The canonical urlencoded body.
    pub fn encode(&self) -> String {
        canonical::urlencoded(&self.post)
    }

    /// The fields PHP will count in the canonical body.
    pub fn field_count(&self) -> usize {
        self.post.leaf_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redcap::php_form::urlencoded;

    fn parse(body: &str) -> Result<Form, Refusal> {
        let limits = Limits::default();
        check(urlencoded::parse(body.as_bytes(), &limits), &limits)
    }

    #[test]
    fn the_bodies_of_the_report_are_refused() {
        assert!(matches!(
            parse("content=version&content%00=user"),
            Err(Refusal::Rewritten { ref raw, ref php, .. }) if raw == "content\\0" && php == "content"
        ));
        assert!(matches!(
            parse("content=record&action=export&format=json&action%00=delete&records%5B0%5D=1"),
            Err(Refusal::Rewritten { ref php, .. }) if php == "action"
        ));
        assert!(matches!(
            parse("content=record&records%00x[0]=1"),
            Err(Refusal::Rewritten { ref php, .. }) if php == "records"
        ));
    }

    #[test]
    fn an_ordinary_pycap_body_passes_and_round_trips() {
        let body = "token=ABC&content=record&format=json&records%5B0%5D=1&records%5B1%5D=2&fields=a%2Cb&type=flat";
        let f = parse(body).unwrap();
        assert_eq!(f.get("content"), Some("record"));
        assert_eq!(f.list("records"), ["1", "2"]);
        assert_eq!(f.list("fields"), ["a", "b"]);
        assert_eq!(
            f.names(),
            ["token", "content", "format", "records", "fields", "type"]
        );
        assert_eq!(parse(&f.encode()).unwrap(), f);
        assert!(parse("records[]=1&records[]=2&fields[]=x").is_ok());
    }

    #[test]
    fn every_rewrite_onto_a_protected_name_is_refused() {
        for body in [
            "+content=1",
            "%20content=1",
            "content%00anything=1",
            "mobile.app=1",
            "mobile+app=1",
            " mobile_app=1",
            "records%5B0%5Dx=1",
            "records[00]=1",
            "records[-1]=1",
            "records[0][1]=1",
            "records[ 0]=1",
            "records[a]=1",
            "records[1234567890]=1",
        ] {
            let got = parse(body);
            assert!(
                matches!(
                    got,
                    Err(Refusal::Rewritten { .. } | Refusal::ArrayNotAllowed { .. })
                ),
                "{body}: {got:?}"
            );
        }
        // Harmless rewrites of other names pass, under PHP's name.
        assert_eq!(parse("my.field=1").unwrap().names(), ["my_field"]);
        assert_eq!(parse("content.=1").unwrap().names(), ["content_"]);
    }

    #[test]
    fn repeats_and_mixed_shapes_are_refused() {
        for body in [
            "content=record&content=user",
            "data=1&data=2",
            "records=1&records[]=2",
            "records[]=1&records=2",
            "records[0]=1&records[0]=2",
            "records[]=1&records[0]=2",
        ] {
            assert!(
                matches!(parse(body), Err(Refusal::Repeated { .. })),
                "{body}"
            );
        }
        assert!(
            parse("records[0]=1&records[]=2").is_ok(),
            "appending after 0 is 1"
        );
    }

    #[test]
    fn arrays_of_scalars_and_bad_utf8_are_refused() {
        for (name, _) in PROTECTED.iter().filter(|(_, s)| *s == Shape::Scalar) {
            assert!(
                matches!(
                    parse(&format!("{name}[]=x")),
                    Err(Refusal::ArrayNotAllowed { .. })
                ),
                "{name}"
            );
        }
        assert!(matches!(parse("content=%FF"), Err(Refusal::NotUtf8 { .. })));
        assert!(parse("data=%FF").is_ok(), "data is bytes");
    }

    #[test]
    fn stripped_parameters_go_and_limits_hold() {
        let f = parse("content=version&mobile_app=1&mobileApp=1&playground=1").unwrap();
        assert_eq!(f.names(), ["content"]);
        let limits = Limits {
            max_input_vars: 3,
            ..Limits::default()
        };
        let parsed = urlencoded::parse(b"a=1&b=2&c=3&d=4", &limits);
        assert!(matches!(
            check(parsed, &limits),
            Err(Refusal::TooManyFields { .. })
        ));
    }

    #[test]
    fn the_encoded_suffix_is_what_setting_the_parameter_adds() {
        for body in [
            "",
            "content=version",
            "content=record&records[0]=1&data=%7B%22a%22%3A1%7D&my.field=x",
        ] {
            let f = parse(body).unwrap();
            let encoded = f.encode();
            let value = "0123456789ABCDEF&=% é";
            assert_eq!(
                encoded.clone() + &Form::encoded_suffix(encoded.as_bytes(), "token", value),
                f.with("token", value).encode(),
                "{body}"
            );
        }
    }

    #[test]
    fn take_and_set_edit_scalars() {
        let mut f = parse("token=K&content=record").unwrap();
        assert_eq!(f.take("token").as_deref(), Some("K"));
        f.set("returnContent", "ids");
        f.set("content", "record");
        assert_eq!(f.encode(), "content=record&returnContent=ids");
    }
}

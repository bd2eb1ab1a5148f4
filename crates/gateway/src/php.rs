//! Reading a request body exactly as PHP will, and refusing anything PHP
//! would read differently from how a careful reader would.
//!
//! REDCap acts on PHP's `$_POST`, which is built by rules that are easy to
//! abuse: a later duplicate silently wins, `.` and space in a name become
//! `_` (so `mobile.app` arrives as `mobile_app`), `name[]` makes an array,
//! and fields past `max_input_vars` vanish. A proxy that reads the body one
//! way while PHP reads it another can be talked into logging one request
//! and forwarding another. So the gateway refuses every body whose meaning
//! depends on those rules, and forwards a canonical re-serialisation of
//! what it checked — never the client's bytes.

use std::collections::HashMap;

/// One field as PHP registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name as PHP stores it: base name after PHP's rewriting.
    pub base: String,
    /// Bracket keys after the base (`records[0]` → `["0"]`, `a[]` → `[""]`).
    pub keys: Vec<String>,
    pub value: String,
}

impl Field {
    pub fn is_scalar(&self) -> bool {
        self.keys.is_empty()
    }

    /// The field's name in canonical form: `base[k1][k2]`.
    pub fn name(&self) -> String {
        let mut n = self.base.clone();
        for k in &self.keys {
            n.push('[');
            n.push_str(k);
            n.push(']');
        }
        n
    }
}

/// Why a body was refused; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the request has {count} fields, more than the {max} PHP reads (max_input_vars); REDCap would silently drop the rest. Send fewer fields."
    )]
    TooManyFields { count: usize, max: usize },
    #[error(
        "the parameter \"{name}\" is sent more than once; REDCap would use only the last. Send it once."
    )]
    Repeated { name: String },
    #[error("the parameter \"{name}\" must be a single value, not an array")]
    ArrayNotAllowed { name: String },
    #[error(
        "the parameter name \"{raw}\" is rewritten by PHP to \"{php}\"; use the name \"{php}\" itself"
    )]
    Rewritten { raw: String, php: String },
    #[error("the request body is not valid form data ({detail})")]
    Malformed { detail: String },
}

/// Parameters whose meaning must be unambiguous: the method and formats,
/// the credential, and what decides the shape of the answer.
pub const SINGLE_VALUED: &[&str] = &[
    "token",
    "content",
    "action",
    "format",
    "returnFormat",
    "returnContent",
    "type",
];

/// Parameters the gateway removes: they change how REDCap treats the
/// caller (`mobile_app` escalates rights, `playground` relabels the log).
pub const STRIPPED: &[&str] = &["mobile_app", "mobileApp", "playground"];

/// A checked form: fields in the order received, none of them stripped
/// parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pub fields: Vec<Field>,
}

impl Form {
    /// The value of a scalar parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.base == name && f.is_scalar())
            .map(|f| f.value.as_str())
    }

    /// The values of an array parameter (`records[0]=…`), or of a scalar
    /// split on commas where REDCap accepts that form.
    pub fn list(&self, name: &str) -> Vec<String> {
        let items: Vec<String> = self
            .fields
            .iter()
            .filter(|f| f.base == name && !f.is_scalar())
            .map(|f| f.value.clone())
            .collect();
        if !items.is_empty() {
            return items;
        }
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes a scalar parameter and returns its value.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let i = self
            .fields
            .iter()
            .position(|f| f.base == name && f.is_scalar())?;
        Some(self.fields.remove(i).value)
    }

    /// Sets a scalar parameter, replacing it or appending it.
    pub fn set(&mut self, name: &str, value: &str) {
        match self
            .fields
            .iter_mut()
            .find(|f| f.base == name && f.is_scalar())
        {
            Some(f) => f.value = value.to_string(),
            None => self.fields.push(Field {
                base: name.into(),
                keys: vec![],
                value: value.into(),
            }),
        }
    }

    /// The parameter names, in order (what the ledger records).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for f in &self.fields {
            if !names.contains(&f.base) {
                names.push(f.base.clone());
            }
        }
        names
    }

    /// `application/x-www-form-urlencoded` serialisation.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            percent_encode(&f.name(), &mut out);
            out.push('=');
            percent_encode(&f.value, &mut out);
        }
        out
    }
}

/// Splits a raw name into PHP's base name and bracket keys, with PHP's
/// rewriting. `None` when PHP would drop the field (empty base name).
pub fn php_name(raw: &str) -> Option<(String, Vec<String>)> {
    let raw = raw.trim_start_matches(' ');
    let mut base = String::new();
    let mut rest = "";
    for (i, c) in raw.char_indices() {
        if c == '[' {
            if raw[i + 1..].contains(']') {
                rest = &raw[i..];
            } else {
                // An unmatched `[` becomes `_` and the rest is kept as is.
                base.push('_');
                base.push_str(&raw[i + 1..]);
            }
            break;
        }
        base.push(if c == '.' || c == ' ' { '_' } else { c });
    }
    if base.is_empty() {
        return None;
    }
    let mut keys = Vec::new();
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find(']') else { break };
        keys.push(inner[..end].to_string());
        rest = &inner[end + 1..];
        // PHP ignores anything after a closing bracket that is not `[`.
        if !rest.starts_with('[') {
            break;
        }
    }
    Some((base, keys))
}

/// Parses a urlencoded body strictly (see the module docs).
pub fn parse_form(body: &[u8], max_input_vars: usize) -> Result<Form, Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| Refusal::Malformed {
        detail: "not UTF-8".into(),
    })?;
    let pairs: Vec<(String, String)> = if text.is_empty() {
        Vec::new()
    } else {
        text.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (n, v) = p.split_once('=').unwrap_or((p, ""));
                Ok((percent_decode(n)?, percent_decode(v)?))
            })
            .collect::<Result<_, Refusal>>()?
    };
    check_fields(pairs, max_input_vars)
}

/// Applies the strict rules to (raw name, value) pairs from any encoding.
pub fn check_fields(pairs: Vec<(String, String)>, max_input_vars: usize) -> Result<Form, Refusal> {
    if pairs.len() > max_input_vars {
        return Err(Refusal::TooManyFields {
            count: pairs.len(),
            max: max_input_vars,
        });
    }
    let mut fields = Vec::with_capacity(pairs.len());
    // base name -> (seen as scalar, explicit keys seen)
    let mut seen: HashMap<String, (bool, Vec<Vec<String>>)> = HashMap::new();
    for (raw, value) in pairs {
        let Some((base, keys)) = php_name(&raw) else {
            continue;
        };
        let raw_base = raw.split('[').next().unwrap_or_default().to_string();
        let protected = SINGLE_VALUED.contains(&base.as_str()) || STRIPPED.contains(&base.as_str());
        if protected && raw_base != base {
            return Err(Refusal::Rewritten { raw, php: base });
        }
        if STRIPPED.contains(&base.as_str()) {
            continue;
        }
        if SINGLE_VALUED.contains(&base.as_str()) && !keys.is_empty() {
            return Err(Refusal::ArrayNotAllowed { name: base });
        }
        let entry = seen.entry(base.clone()).or_default();
        let repeated = if keys.is_empty() {
            entry.0 || !entry.1.is_empty()
        } else {
            // `a[]` appends; an explicit key repeated, or mixing scalar and
            // array, is ambiguous.
            entry.0 || (!keys.iter().any(String::is_empty) && entry.1.contains(&keys))
        };
        if repeated {
            return Err(Refusal::Repeated { name: base });
        }
        if keys.is_empty() {
            entry.0 = true;
        } else {
            entry.1.push(keys.clone());
        }
        fields.push(Field { base, keys, value });
    }
    Ok(Form { fields })
}

fn percent_decode(s: &str) -> Result<String, Refusal> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                    return Err(Refusal::Malformed {
                        detail: format!(
                            "bad percent-escape near \"{}\"",
                            &s[i..s.len().min(i + 3)]
                        ),
                    });
                };
                out.push(b);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Refusal::Malformed {
        detail: "a decoded value is not UTF-8".into(),
    })
}

fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Form, Refusal> {
        parse_form(body.as_bytes(), 1000)
    }

    #[test]
    fn php_rewrites_names_as_php_does() {
        assert_eq!(php_name("a.b c"), Some(("a_b_c".into(), vec![])));
        assert_eq!(php_name("  x"), Some(("x".into(), vec![])));
        assert_eq!(
            php_name("r[0][k]"),
            Some(("r".into(), vec!["0".into(), "k".into()]))
        );
        assert_eq!(php_name("r[]"), Some(("r".into(), vec!["".into()])));
        assert_eq!(php_name("a[b"), Some(("a_b".into(), vec![])));
        assert_eq!(
            php_name("a.b[c.d]"),
            Some(("a_b".into(), vec!["c.d".into()]))
        );
        assert_eq!(
            php_name("r[0]junk[1]"),
            Some(("r".into(), vec!["0".into()]))
        );
        assert_eq!(php_name("[x]"), None);
        assert_eq!(php_name(""), None);
    }

    #[test]
    fn an_ordinary_pycap_body_parses_and_round_trips() {
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
    }

    #[test]
    fn a_repeated_scalar_is_refused() {
        assert_eq!(
            parse("content=record&content=user"),
            Err(Refusal::Repeated {
                name: "content".into()
            })
        );
        assert_eq!(
            parse("data=1&data=2"),
            Err(Refusal::Repeated {
                name: "data".into()
            })
        );
        assert_eq!(
            parse("a=1&a[]=2"),
            Err(Refusal::Repeated { name: "a".into() })
        );
        assert_eq!(
            parse("a[]=1&a=2"),
            Err(Refusal::Repeated { name: "a".into() })
        );
        assert_eq!(
            parse("r[0]=1&r[0]=2"),
            Err(Refusal::Repeated { name: "r".into() })
        );
        assert!(parse("r[]=1&r[]=2").is_ok(), "appending is unambiguous");
    }

    #[test]
    fn arrays_of_single_valued_parameters_are_refused() {
        for p in SINGLE_VALUED {
            assert_eq!(
                parse(&format!("{p}[]=x")),
                Err(Refusal::ArrayNotAllowed { name: (*p).into() }),
                "{p}"
            );
        }
    }

    #[test]
    fn names_php_rewrites_onto_protected_parameters_are_refused() {
        for raw in [
            "mobile.app",
            "mobile app",
            " token",
            "  content",
            " mobile_app",
            " playground",
        ] {
            let body = format!("{}=1", raw.replace(' ', "+"));
            let got = parse(&body);
            assert!(
                matches!(
                    got,
                    Err(Refusal::Rewritten { .. }) | Err(Refusal::ArrayNotAllowed { .. })
                ),
                "{raw}: {got:?}"
            );
        }
        // Harmless rewrites of other names pass, under PHP's name.
        assert_eq!(parse("my.field=1").unwrap().fields[0].base, "my_field");
    }

    #[test]
    fn mobile_app_and_playground_are_stripped() {
        let f = parse("content=version&mobile_app=1&mobileApp=1&playground=1").unwrap();
        assert_eq!(f.names(), ["content"]);
    }

    #[test]
    fn more_fields_than_max_input_vars_is_refused() {
        let body: Vec<String> = (0..11).map(|i| format!("r[]={i}")).collect();
        assert_eq!(
            parse_form(body.join("&").as_bytes(), 10),
            Err(Refusal::TooManyFields { count: 11, max: 10 })
        );
        assert!(parse_form(body[..10].join("&").as_bytes(), 10).is_ok());
    }

    #[test]
    fn malformed_bodies_are_refused_not_guessed() {
        assert!(matches!(parse("a=%zz"), Err(Refusal::Malformed { .. })));
        assert!(matches!(parse("a=%"), Err(Refusal::Malformed { .. })));
        assert!(matches!(
            parse_form(&[0xff], 10),
            Err(Refusal::Malformed { .. })
        ));
        assert_eq!(parse("a=x+y%2By").unwrap().get("a"), Some("x y+y"));
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

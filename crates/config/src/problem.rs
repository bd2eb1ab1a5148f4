//! Configuration problems as a user should read them: where (file, line,
//! column, dotted field), what is wrong, and how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One thing wrong with the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line, 0 when the problem is not tied to a position.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// Dotted path of the field, e.g. `redcap.url`, when one is known.
    pub field: Option<String>,
    /// What is wrong, e.g. "`Europe/Berln` is not a time zone name known to
    /// the IANA database".
    pub message: String,
    /// What to change to make it right; printed after `fix:`.
    pub fix: String,
}

/// Every problem found in one file. `Display` prints one line per problem.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file the problems are in.
    pub path: PathBuf,
    /// All of them, sorted by line and column; never empty.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub(crate) fn new(path: &Path, problems: Vec<Problem>) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            problems,
        }
    }
}

/// Why a configuration could not be loaded.
///
/// `Display` and `Error` are written by hand: the OS error of
/// [`LoadError::Unreadable`] is part of its message, so it is not also
/// returned as the error's `source()` — callers that print the whole chain
/// (`anyhow`'s `{:#}`) would otherwise show it twice.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read at all.
    Unreadable {
        /// The file that was asked for.
        path: PathBuf,
        /// The OS error (no such file, permission denied, …); fix the path
        /// or the file's permissions.
        source: std::io::Error,
    },
    /// The file was read and has problems.
    Invalid(ConfigError),
}

impl From<ConfigError> for LoadError {
    fn from(e: ConfigError) -> Self {
        LoadError::Invalid(e)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Unreadable { path, source } => write!(
                f,
                "{}: cannot read the configuration file: {source}; fix: {}",
                path.display(),
                unreadable_fix(source)
            ),
            LoadError::Invalid(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Already in the message (see the type's documentation).
            LoadError::Unreadable { .. } => None,
            LoadError::Invalid(e) => std::error::Error::source(e),
        }
    }
}

fn unreadable_fix(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::NotFound {
        "run `redcap-warden init` in an empty directory to create one, or pass --config PATH"
    } else {
        "check the path and the file's permissions"
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.path.display())?;
            if p.line > 0 {
                write!(f, ":{}:{}", p.line, p.column)?;
            }
            write!(f, ": ")?;
            if let Some(field) = &p.field {
                write!(f, "`{field}`: ")?;
            }
            write!(f, "{}; fix: {}", p.message, p.fix)?;
        }
        Ok(())
    }
}

impl Problem {
    pub(crate) fn at_offset(
        text: &str,
        offset: usize,
        field: Option<String>,
        message: String,
        fix: String,
    ) -> Problem {
        let (line, column) = line_column(text, offset);
        Problem {
            line,
            column,
            field,
            message,
            fix,
        }
    }

    /// Turns a toml/serde error into a problem with the field's dotted name
    /// and a fix. Serde's messages have a small, stable set of shapes; each
    /// gets its own advice.
    pub(crate) fn from_toml(text: &str, e: &toml::de::Error) -> Problem {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_string();
        let container = path_at(text, span.start);
        let (field, fix) = if let Some(name) = quoted_after(&message, "unknown field `") {
            let expected = expected_names(&message);
            let table = container.rsplit_once('.').map_or("", |(t, _)| t);
            let field = join(table, &name);
            (Some(field), unknown_key_fix(&name, &expected).0)
        } else if let Some(name) = quoted_after(&message, "missing field `") {
            let table = container.clone();
            let where_ = if table.is_empty() {
                "at the top of the file".to_string()
            } else {
                format!("to the [{table}] table")
            };
            (
                Some(join(&table, &name)),
                format!(
                    "add `{name} = …` {where_} (`redcap-warden init` writes a commented example)"
                ),
            )
        } else if let Some(expected) = message
            .strip_prefix("invalid type: ")
            .and_then(|m| m.split_once(", expected "))
        {
            (non_empty(container), format!("write {} here", expected.1))
        } else if let Some(rest) = message.strip_prefix("unknown variant `") {
            let expected = expected_names(rest);
            let what = rest.split('`').next().unwrap_or_default();
            (non_empty(container), unknown_choice_fix(what, &expected))
        } else if message.starts_with("invalid value") {
            (non_empty(container), "correct the value".to_string())
        } else {
            (
                non_empty(container),
                "correct the TOML syntax at this position".to_string(),
            )
        };
        Problem::at_offset(text, span.start, field, message, fix)
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn join(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    }
}

pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    message
        .strip_prefix(prefix)
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string)
}

/// `expected `a``, `expected `a` or `b``, `expected one of `a`, `b`, `c``:
/// the way serde lists names, kept so messages read the same.
pub(crate) fn expected_list(names: &[String], expected: &str) -> String {
    match names {
        [] => "there are none".to_string(),
        [one] => format!("{expected} `{one}`"),
        [a, b] => format!("{expected} `{a}` or `{b}`"),
        _ => format!("{expected} one of {}", quoted_list(names, "`")),
    }
}

/// `a`, `b`, `c` with the given quote around each name.
pub(crate) fn quoted_list(names: &[String], quote: &str) -> String {
    names
        .iter()
        .map(|n| format!("{quote}{n}{quote}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How to fix a key the table does not accept (`expected` are the keys it
/// does), and the key it is likely a misspelling of.
pub(crate) fn unknown_key_fix(name: &str, expected: &[String]) -> (String, Option<String>) {
    let best = closest(name, expected);
    let fix = match &best {
        Some(best) => format!("did you mean `{best}`? rename the key or remove it"),
        None if expected.is_empty() => "remove the key".to_string(),
        None => format!(
            "remove the key; this table accepts only {}",
            quoted_list(expected, "`")
        ),
    };
    (fix, best)
}

/// How to fix a value that is not one of `choices`.
pub(crate) fn unknown_choice_fix(value: &str, choices: &[String]) -> String {
    match closest(value, choices) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("use one of {}", quoted_list(choices, "`")),
    }
}

/// The names serde lists after "expected" (`a`, `b` or `c`).
fn expected_names(message: &str) -> Vec<String> {
    let Some((_, tail)) = message.split_once("expected") else {
        return Vec::new();
    };
    tail.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The expected name nearest to a misspelling, if it is near enough to be a
/// typo rather than a different word.
fn closest(name: &str, expected: &[String]) -> Option<String> {
    expected
        .iter()
        .map(|e| (edit_distance(name, e), e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Dotted path of the deepest key whose key or value covers `offset`. A
/// `[table]`'s own span is only its header, so tables are searched through
/// their children; an error on the header itself (a missing field) resolves
/// to the table.
fn path_at(text: &str, offset: usize) -> String {
    fn find(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
        for (key, value) in table.iter() {
            path.push(key.get_ref().to_string());
            if let Some(inner) = value.get_ref().as_table()
                && find(inner, offset, path)
            {
                return true;
            }
            if key.span().contains(&offset) || value.span().contains(&offset) {
                return true;
            }
            path.pop();
        }
        false
    }
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return String::new();
    };
    let mut path = Vec::new();
    find(doc.get_ref(), offset, &mut path);
    path.join(".")
}

//! The first pass over `warden.toml`: the file as a generic, spanned TOML
//! document, walked table by table against a description of every key the
//! typed sections accept and the kind of value each takes.
//!
//! Serde stops at the first unknown key or wrong type; this walk does not,
//! so `config check` lists every such problem of a file in one run, each
//! with the full path of the field (`study[1].site[0].dag_id`) and what to
//! write there in words a user reads ("a whole number", "true or false"),
//! never a Rust type name. The typed deserialization runs only once this
//! walk (and the semantic checks) found nothing.
//!
//! The description must match the serde structs key for key; a test
//! compares the two (`tests::the_schema_matches_the_serde_structs`).

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::Problem;
use crate::problem::{expected_list, quoted_list, unknown_choice_fix, unknown_key_fix};

/// What a key's value must be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// Any string.
    Text,
    /// A file or directory path: a non-empty string.
    Path,
    /// An IP address with a port, e.g. the given example.
    Addr(&'static str),
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// A whole number in a range.
    Count(Count),
    /// `true` or `false`.
    Bool,
    /// An array of strings.
    TextList,
    /// A table with these keys.
    Table(&'static [Field]),
    /// An array of tables (`[[name]]`), each with these keys.
    Tables(&'static [Field]),
}

/// The range a whole number must lie in, and why its lower bound is what it
/// is (shown when a value is below it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Count {
    pub min: i64,
    pub max: i64,
    pub why: &'static str,
}

/// One key of a table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub key: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// A line to copy, shown in fixes, e.g. `dag_id = 3`.
    pub example: Option<&'static str>,
}

const fn req(key: &'static str, kind: Kind) -> Field {
    Field {
        key,
        kind,
        required: true,
        example: None,
    }
}

const fn opt(key: &'static str, kind: Kind) -> Field {
    Field {
        key,
        kind,
        required: false,
        example: None,
    }
}

impl Field {
    const fn eg(self, example: &'static str) -> Field {
        Field {
            example: Some(example),
            ..self
        }
    }
}

const fn count(min: i64, max: i64, why: &'static str) -> Kind {
    Kind::Count(Count { min, max, why })
}

/// The largest value of the Rust field types, as TOML integers (i64).
const U32: i64 = u32::MAX as i64;
const U64: i64 = i64::MAX;
const USIZE: i64 = if usize::BITS >= 64 {
    i64::MAX
} else {
    usize::MAX as i64
};

/// The whole file ([`crate::Config`]).
pub(crate) const TOP: &[Field] = &[
    req("redcap", Kind::Table(REDCAP)),
    opt("paths", Kind::Table(PATHS)),
    opt("secrets", Kind::Table(SECRETS)),
    opt("ledger", Kind::Table(LEDGER)),
    opt("gateway", Kind::Table(GATEWAY)),
    opt("study", Kind::Tables(STUDY)),
    opt("profile", Kind::Tables(PROFILE)),
    opt("account", Kind::Tables(ACCOUNT)),
    opt("client", Kind::Tables(CLIENT)),
    opt("rotation", Kind::Table(ROTATION)),
    opt("reconcile", Kind::Table(RECONCILE)),
    opt("sop", Kind::Table(SOP)),
    opt("review", Kind::Table(REVIEW)),
    opt("alerts", Kind::Table(ALERTS)),
];

/// `[review]` ([`crate::ReviewSection`]).
pub(crate) const REVIEW: &[Field] = &[opt("reviewers", Kind::TextList)
    .eg("reviewers = [\"qa@example.org ssh-ed25519 AAAAC3Nz... qa\"]")];

pub(crate) const REDCAP: &[Field] = &[req("url", Kind::Text), req("time_zone", Kind::Text)];

pub(crate) const PATHS: &[Field] = &[opt("data_dir", Kind::Path)];

pub(crate) const SECRETS: &[Field] = &[
    opt("backend", Kind::Choice(&["file", "vault", "aws"])),
    opt("file", Kind::Table(SECRETS_FILE)),
    opt("vault", Kind::Table(SECRETS_VAULT)),
    opt("aws", Kind::Table(SECRETS_AWS)),
];

pub(crate) const SECRETS_FILE: &[Field] = &[
    opt("path", Kind::Path),
    opt("identity", Kind::Path),
    // 0 used to be read as 1 without a word (the store always keeps the
    // version it replaces), so it is refused rather than silently changed.
    opt(
        "keep_versions",
        count(
            1,
            USIZE,
            "the store always keeps at least the version a new one replaces; 0 used to be read silently as 1",
        ),
    )
    .eg("keep_versions = 20"),
    opt("passphrase_file", Kind::Path),
];

pub(crate) const SECRETS_VAULT: &[Field] = &[
    req("address", Kind::Text).eg("address = \"https://vault.example.org:8200\""),
    opt("mount", Kind::Text),
    opt("prefix", Kind::Text),
    opt("namespace", Kind::Text),
    opt("ca_file", Kind::Path),
    opt("auth", Kind::Choice(&["token", "approle"])),
    opt("token_file", Kind::Path),
    opt("token_env", Kind::Text),
    opt("approle_mount", Kind::Text),
    opt("role_id_file", Kind::Path),
    opt("role_id_env", Kind::Text),
    opt("secret_id_file", Kind::Path),
    opt("secret_id_env", Kind::Text),
    // 0 is meaningful: KV then uses the mount's own max_versions.
    opt(
        "max_versions",
        count(
            0,
            U32,
            "a number of versions cannot be negative (0 leaves it to the mount's setting)",
        ),
    )
    .eg("max_versions = 20"),
    // 0 would mean every request times out at once.
    opt(
        "timeout_seconds",
        count(
            1,
            U64,
            "a request needs at least a second; 0 would make every call to Vault time out",
        ),
    )
    .eg("timeout_seconds = 30"),
];

pub(crate) const SECRETS_AWS: &[Field] = &[
    opt("region", Kind::Text),
    opt("endpoint_url", Kind::Text),
    opt("prefix", Kind::Text),
    // AWS itself refuses anything outside 7 to 30; saying so here beats a
    // failure at the first deletion.
    opt(
        "recovery_window_days",
        count(
            7,
            30,
            "AWS Secrets Manager accepts a recovery window of 7 to 30 days",
        ),
    )
    .eg("recovery_window_days = 30"),
    opt("kms_key_id", Kind::Text),
];

pub(crate) const LEDGER: &[Field] = &[
    opt("backend", Kind::Choice(&["file", "postgres"])),
    opt("dir", Kind::Path),
    req("verifier_key", Kind::Text),
    opt("witness_file", Kind::Path),
    opt("postgres", Kind::Table(LEDGER_POSTGRES)),
    opt("export", Kind::Table(LEDGER_EXPORT)),
];

pub(crate) const LEDGER_POSTGRES: &[Field] = &[
    opt("url", Kind::Text),
    opt("url_file", Kind::Path),
    opt("url_credential", Kind::Text),
    opt("schema", Kind::Text),
];

pub(crate) const LEDGER_EXPORT: &[Field] = &[
    req("bucket", Kind::Text).eg("bucket = \"warden-audit\""),
    opt("prefix", Kind::Text),
    opt("region", Kind::Text),
    opt("endpoint_url", Kind::Text),
    // An object locked for 0 days is not locked at all.
    req(
        "retention_days",
        count(
            1,
            crate::MAX_RETENTION_DAYS as i64,
            "an object locked for 0 days is not locked at all; COMPLIANCE mode cannot be shortened, so choose it from your retention policy",
        ),
    )
    .eg("retention_days = 3650"),
    // 0 minutes would ship the checkpoint continuously.
    opt(
        "interval_minutes",
        count(
            1,
            10_080,
            "the latest checkpoint is shipped at most once a minute",
        ),
    )
    .eg("interval_minutes = 60"),
];

pub(crate) const GATEWAY: &[Field] = &[
    opt("listen", Kind::Addr("127.0.0.1:8470")),
    opt("tls_cert", Kind::Path),
    opt("tls_key", Kind::Path),
    opt("admin_listen", Kind::Addr("127.0.0.1:8471")),
    // 0 would refuse every request: each one has at least `content`.
    opt(
        "max_input_vars",
        count(
            1,
            USIZE,
            "every REDCap API request has at least one field (content), so 0 would refuse them all; write the value of max_input_vars in the REDCap server's php.ini",
        ),
    )
    .eg("max_input_vars = 1000"),
    // 0 would drop every `name[]` field, and REDCap's arrays (records[],
    // fields[], forms[]) are such fields.
    opt(
        "max_input_nesting_level",
        count(
            1,
            USIZE,
            "0 would drop every array parameter such as records[] or fields[]; write the value of max_input_nesting_level in the REDCap server's php.ini",
        ),
    )
    .eg("max_input_nesting_level = 64"),
    // 0 would refuse every request: no REDCap call has an empty body.
    opt(
        "max_body_bytes",
        count(
            1,
            U64,
            "every REDCap API call has a body, so 0 would refuse them all",
        ),
    )
    .eg("max_body_bytes = 268435456"),
    // 0 would read the store on every call (a Vault or AWS round trip, or
    // decrypting the age file, per request) and make every call fail while
    // the store is unreachable; a rotated token is picked up anyway, since
    // the gateway re-reads a token REDCap refuses.
    opt(
        "token_cache_seconds",
        count(
            1,
            U64,
            "0 would read the secrets store on every call and fail every call while the store is unreachable; a rotated token is picked up anyway, because a token REDCap refuses is read again",
        ),
    )
    .eg("token_cache_seconds = 300"),
    opt("keys_file", Kind::Path),
    opt("accounts_file", Kind::Path),
    opt("admin_token_file", Kind::Path),
    // A key that expires the moment it is issued is no key.
    opt(
        "key_lifetime_days",
        count(
            1,
            U32,
            "a key with a lifetime of 0 days would expire the moment it is issued",
        ),
    )
    .eg("key_lifetime_days = 90"),
    // 0 is meaningful: re-issuing a key then ends the older keys at once.
    opt(
        "key_overlap_days",
        count(
            0,
            U32,
            "a number of days cannot be negative (0 ends a client's older keys as soon as a new one is issued)",
        ),
    )
    .eg("key_overlap_days = 7"),
    // 0 calls a minute would forbid every call; it used to be read
    // silently as 1.
    opt(
        "outbound_per_minute",
        count(
            1,
            U32,
            "0 calls a minute would forbid every call to REDCap (it used to be read silently as 1)",
        ),
    )
    .eg("outbound_per_minute = 300"),
    // A hold of 0 seconds ends before it begins: the cut-over it protects
    // would refuse the account's requests at once.
    opt(
        "cutover_hold_seconds",
        count(
            1,
            U64,
            "a hold of 0 seconds would end at once and refuse the account's requests during every cut-over",
        ),
    )
    .eg("cutover_hold_seconds = 120"),
];

pub(crate) const STUDY: &[Field] = &[
    req("name", Kind::Text).eg("name = \"heart2\""),
    // REDCap numbers projects from 1.
    opt(
        "project_id",
        count(1, U64, "REDCap numbers its projects from 1"),
    )
    .eg("project_id = 14"),
    opt("rights_manager", Kind::Text).eg("rights_manager = \"heart2-rights\""),
    opt("site", Kind::Tables(SITE)),
    opt("log_reader", Kind::Text).eg("log_reader = \"heart2-log\""),
];

pub(crate) const SITE: &[Field] = &[
    req("name", Kind::Text).eg("name = \"site-a\""),
    // REDCap numbers Data Access Groups from 1.
    req(
        "dag_id",
        count(
            1,
            U64,
            "REDCap numbers its Data Access Groups from 1 (data_access_group_id)",
        ),
    )
    .eg("dag_id = 3"),
    opt("dag_name", Kind::Text).eg("dag_name = \"site_a\""),
];

pub(crate) const ACCOUNT: &[Field] = &[
    req("name", Kind::Text).eg("name = \"heart2-site-a\""),
    req("username", Kind::Text).eg("username = \"svc_heart_site_a\""),
    req("secret", Kind::Text).eg("secret = \"redcap/heart2/site-a\""),
    req("study", Kind::Text).eg("study = \"heart2\""),
    opt("site", Kind::Text).eg("site = \"site-a\""),
    opt("profile", Kind::Text).eg("profile = \"site-data-read\""),
    // 0 would make every token overdue the moment it is stored.
    opt(
        "rotate_every_days",
        count(
            1,
            U32,
            "a token must live at least a day; 0 would make every token overdue the moment it is stored",
        ),
    )
    .eg("rotate_every_days = 90"),
    opt(
        "reauth_every_days",
        count(1, 3650, "an approval must last at least a day"),
    )
    .eg("reauth_every_days = 90"),
    opt(
        "lapse_after_inactive_days",
        count(1, 3650, "an account is idle for at least a day"),
    )
    .eg("lapse_after_inactive_days = 30"),
    opt("approvers", Kind::TextList)
        .eg("approvers = [\"ana@example.org ssh-ed25519 AAAAC3Nz... ana\"]"),
    opt("mode", Kind::Choice(&["single", "dual"])).eg("mode = \"dual\""),
    opt("partner", Kind::Text).eg("partner = \"heart2-site-a-2\""),
];

pub(crate) const ROTATION: &[Field] = &[
    opt("issuer", Kind::Choice(&["manual", "sandbox", "command"])),
    opt("sandbox_url", Kind::Text).eg("sandbox_url = \"http://127.0.0.1:8480\""),
    opt("sandbox_admin_secret_file", Kind::Path),
    opt("command", Kind::TextList)
        .eg("command = [\"/usr/local/bin/regenerate-token\", \"{username}\", \"{project_id}\"]"),
    opt("after_switch", Kind::TextList)
        .eg("after_switch = [\"/usr/local/bin/redeploy\", \"{account}\"]"),
    opt("after_switch_webhook", Kind::Text)
        .eg("after_switch_webhook = \"https://deploy.example.org/hooks/redcap-token\""),
];

pub(crate) const SOP: &[Field] = &[
    req("document_id", Kind::Text).eg("document_id = \"SOP-IT-017\""),
    req("version", Kind::Text).eg("version = \"1.0\""),
    opt("title", Kind::Text).eg("title = \"Management of REDCap API tokens\""),
    opt("approved", Kind::Path).eg("approved = \"sop/approved/token-sop.md\""),
    req("owner", Kind::Table(SOP_ROLE)),
    req("approver", Kind::Table(SOP_ROLE)),
    req("operator", Kind::Table(SOP_ROLE)),
    req("redcap_admin", Kind::Table(SOP_ROLE)),
    opt("revision", Kind::Tables(SOP_REVISION)),
];

pub(crate) const SOP_ROLE: &[Field] = &[
    req("name", Kind::Text).eg("name = \"Research IT (J. Doe)\""),
    req("deputy", Kind::Text).eg("deputy = \"A. Smith\""),
    opt("contact", Kind::Text).eg("contact = \"redcap-admin@example.org\""),
];

pub(crate) const SOP_REVISION: &[Field] = &[
    req("version", Kind::Text).eg("version = \"1.0\""),
    req("date", Kind::Text).eg("date = \"2026-12-01\""),
    req("author", Kind::Text).eg("author = \"J. Doe\""),
    req("change", Kind::Text).eg("change = \"first issue\""),
];

pub(crate) const PROFILE: &[Field] = &[
    req("name", Kind::Text).eg("name = \"site-etl\""),
    opt("extends", Kind::Text).eg("extends = \"site-data-import\""),
    opt("grant", Kind::TextList).eg("grant = [\"api_export\", \"record_create\"]"),
    opt("forms", Kind::TextList).eg("forms = [\"*:read_only\"]"),
    opt("forms_export", Kind::TextList).eg("forms_export = [\"*:de_identified\"]"),
];

pub(crate) const CLIENT: &[Field] = &[
    req("name", Kind::Text).eg("name = \"site-a-app\""),
    req("account", Kind::Text).eg("account = \"heart2-site-a\""),
    req("allow", Kind::TextList).eg("allow = [\"record:export\", \"metadata\"]"),
    opt("write_reason", Kind::Choice(&["required", "optional"])),
    opt("sources", Kind::TextList).eg("sources = [\"10.1.0.0/16\"]"),
    opt("unchecked_exports", Kind::Bool).eg("unchecked_exports = false"),
];

pub(crate) const ALERTS: &[Field] = &[
    opt("webhook", Kind::Text).eg("webhook = \"https://alerts.example.org/hooks/redcap-warden\""),
    opt("webhook_secret", Kind::Text).eg("webhook_secret = \"alerts/webhook\""),
    opt("webhook_header", Kind::Text).eg("webhook_header = \"X-Redcap-Warden-Secret\""),
    opt(
        "webhook_timeout_seconds",
        count(1, U64, "a POST given 0 seconds could never be answered"),
    )
    .eg("webhook_timeout_seconds = 10"),
    opt(
        "webhook_retries",
        count(
            0,
            10,
            "retries wait 1, 2, 4 … s each; more than 10 would wait for hours",
        ),
    )
    .eg("webhook_retries = 3"),
    opt("syslog", Kind::Text).eg("syslog = \"udp://syslog.example.org:514\""),
    opt(
        "min_severity",
        Kind::Choice(&["info", "warning", "critical"]),
    ),
];

pub(crate) const RECONCILE: &[Field] = &[
    // 0 would demand that REDCap's clock and the ledger's agree to the
    // second, which two machines' clocks never do.
    opt(
        "tolerance_seconds",
        count(
            1,
            U64,
            "REDCap's clock and the gateway's never agree exactly; 0 would make every call a finding",
        ),
    )
    .eg("tolerance_seconds = 120"),
    opt(
        "api_only_lookback_days",
        count(1, U32, "a lookback of 0 days would read none of REDCap's log"),
    )
    .eg("api_only_lookback_days = 30"),
    opt(
        "every_minutes",
        count(
            0,
            U32,
            "a number of minutes cannot be negative (0 turns the scheduled reconcile off)",
        ),
    )
    .eg("every_minutes = 60"),
];

/// Where the walk is: the full path with indexes (`study[0].site[1]`) and
/// the header a user writes for this table (`[[study.site]]`).
#[derive(Clone)]
struct Place {
    path: String,
    header: String,
    in_array: bool,
}

impl Place {
    fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn header_key(&self, key: &str) -> String {
        if self.header.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.header)
        }
    }
}

/// Walks the whole document; returns every unknown key, wrong type, value
/// out of range and missing required key.
pub(crate) fn walk(doc: &Spanned<DeTable<'_>>, text: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    let top = Place {
        path: String::new(),
        header: String::new(),
        in_array: false,
    };
    walk_table(text, doc.get_ref(), doc.span(), TOP, &top, &mut out);
    out
}

fn walk_table(
    text: &str,
    table: &DeTable<'_>,
    span: Range<usize>,
    fields: &[Field],
    place: &Place,
    out: &mut Vec<Problem>,
) {
    // Keys a misspelt key is taken for: renaming it fixes "missing" too, so
    // that is not reported a second time.
    let mut suggested = Vec::new();
    for (key, value) in table.iter() {
        let name = key.get_ref().as_ref();
        match fields.iter().find(|f| f.key == name) {
            Some(field) => check_value(text, value, field, place, out),
            None => {
                let (problem, best) = unknown_key(text, key, fields, place);
                out.push(problem);
                suggested.extend(best);
            }
        }
    }
    for field in fields.iter().filter(|f| f.required) {
        if table.get(field.key).is_none() && !suggested.iter().any(|s| s == field.key) {
            out.push(missing_key(text, span.start, field, place));
        }
    }
}

fn unknown_key(
    text: &str,
    key: &Spanned<toml::de::DeString<'_>>,
    fields: &[Field],
    place: &Place,
) -> (Problem, Option<String>) {
    let name: &str = key.get_ref();
    let expected: Vec<String> = fields.iter().map(|f| f.key.to_string()).collect();
    let message = format!(
        "unknown field `{name}`, {}",
        expected_list(&expected, "expected")
    );
    let (fix, best) = unknown_key_fix(name, &expected);
    (
        Problem::at_offset(text, key.span().start, Some(place.key(name)), message, fix),
        best,
    )
}

fn missing_key(text: &str, offset: usize, field: &Field, place: &Place) -> Problem {
    let field_path = place.key(field.key);
    let message = format!("missing field `{}`", field.key);
    let fix = match field.kind {
        Kind::Table(_) | Kind::Tables(_) if place.path.is_empty() => format!(
            "add a [{}] table at the top of the file (`redcap-warden init` writes a commented example)",
            field.key
        ),
        _ => {
            let table = if place.in_array {
                format!("to this [[{}]] table", place.header)
            } else if place.header.is_empty() {
                "at the top of the file".to_string()
            } else {
                format!("to the [{}] table", place.header)
            };
            match field.example {
                Some(example) => format!("add `{} = …` {table}, e.g. {example}", field.key),
                None => format!(
                    "add `{} = …` {table} (`redcap-warden init` writes a commented example)",
                    field.key
                ),
            }
        }
    };
    Problem::at_offset(text, offset, Some(field_path), message, fix)
}

/// "write … here", with the field's example when it has one.
fn write_here(expected: &str, field: &Field) -> String {
    match field.example {
        Some(example) => format!("write {expected} here, e.g. {example}"),
        None => format!("write {expected} here"),
    }
}

fn check_value(
    text: &str,
    value: &Spanned<DeValue<'_>>,
    field: &Field,
    place: &Place,
    out: &mut Vec<Problem>,
) {
    let path = place.key(field.key);
    let at = value.span().start;
    let wrong_type = |expected: &str| {
        Problem::at_offset(
            text,
            at,
            Some(path.clone()),
            format!(
                "invalid type: {}, expected {expected}",
                describe(value.get_ref())
            ),
            write_here(expected, field),
        )
    };
    match (field.kind, value.get_ref()) {
        (Kind::Text, DeValue::String(_)) | (Kind::Bool, DeValue::Boolean(_)) => {}
        (Kind::Text, _) => out.push(wrong_type("a string")),
        (Kind::Bool, _) => out.push(wrong_type("true or false")),
        (Kind::Path, DeValue::String(s)) => {
            if s.is_empty() {
                out.push(Problem::at_offset(
                    text,
                    at,
                    Some(path),
                    "the path is empty".into(),
                    "write the path of a file, relative to this file's directory or absolute, or remove the key to use the default".into(),
                ));
            }
        }
        (Kind::Path, _) => out.push(wrong_type("a path in quotes")),
        (Kind::Addr(example), DeValue::String(s)) => {
            if s.parse::<std::net::SocketAddr>().is_err() {
                out.push(Problem::at_offset(
                    text,
                    at,
                    Some(path),
                    format!("`{s}` is not an IP address with a port"),
                    format!(
                        "write an address like \"{example}\" (an IPv6 address goes in brackets: \"[::1]:8470\"); a host name is not accepted"
                    ),
                ));
            }
        }
        (Kind::Addr(example), _) => {
            out.push(wrong_type(&format!("an address like \"{example}\"")));
        }
        (Kind::Choice(choices), DeValue::String(s)) => {
            if !choices.contains(&s.as_ref()) {
                let choices: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
                let fix = unknown_choice_fix(s, &choices);
                out.push(Problem::at_offset(
                    text,
                    at,
                    Some(path),
                    format!(
                        "unknown variant `{s}`, {}",
                        expected_list(&choices, "expected")
                    ),
                    fix,
                ));
            }
        }
        (Kind::Choice(choices), _) => {
            let choices: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
            out.push(wrong_type(&format!(
                "one of {}",
                quoted_list(&choices, "\"")
            )));
        }
        (Kind::Count(range), DeValue::Integer(i)) => {
            let n = i64::from_str_radix(i.as_str(), i.radix()).ok();
            let span = match range.max {
                U64 => format!("a whole number of at least {}", range.min),
                max => format!("a whole number from {} to {max}", range.min),
            };
            let problem = match n {
                Some(n) if n < range.min => {
                    Some(format!("{} = {n} is not allowed: {}", field.key, range.why))
                }
                Some(n) if n > range.max => Some(format!(
                    "{} = {n} is too large; the largest accepted is {}",
                    field.key, range.max
                )),
                Some(_) => None,
                None => Some(format!("{} = {i} is too large", field.key)),
            };
            if let Some(message) = problem {
                out.push(Problem::at_offset(
                    text,
                    at,
                    Some(path),
                    message,
                    write_here(&span, field),
                ));
            }
        }
        (Kind::Count(_), _) => out.push(wrong_type("a whole number")),
        (Kind::TextList, DeValue::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.get_ref().is_str() {
                    out.push(Problem::at_offset(
                        text,
                        item.span().start,
                        Some(format!("{path}[{i}]")),
                        format!(
                            "invalid type: {}, expected a string",
                            describe(item.get_ref())
                        ),
                        write_here("a string in quotes", field),
                    ));
                }
            }
        }
        (Kind::TextList, _) => out.push(wrong_type("an array of strings")),
        (Kind::Table(fields), DeValue::Table(table)) => {
            let inner = Place {
                path: path.clone(),
                header: place.header_key(field.key),
                in_array: false,
            };
            walk_table(text, table, value.span(), fields, &inner, out);
        }
        (Kind::Table(_), _) => {
            let header = place.header_key(field.key);
            out.push(Problem::at_offset(
                text,
                at,
                Some(path),
                format!(
                    "invalid type: {}, expected a table ([{header}])",
                    describe(value.get_ref())
                ),
                format!("write it as a [{header}] table with its keys on the lines below"),
            ));
        }
        (Kind::Tables(fields), DeValue::Array(items)) => {
            let header = place.header_key(field.key);
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                match item.get_ref() {
                    DeValue::Table(table) => {
                        let inner = Place {
                            path: item_path,
                            header: header.clone(),
                            in_array: true,
                        };
                        walk_table(text, table, item.span(), fields, &inner, out);
                    }
                    other => out.push(Problem::at_offset(
                        text,
                        item.span().start,
                        Some(item_path),
                        format!(
                            "invalid type: {}, expected a table ([[{header}]])",
                            describe(other)
                        ),
                        format!("write each entry as a [[{header}]] table"),
                    )),
                }
            }
        }
        (Kind::Tables(_), _) => out.push(Problem::at_offset(
            text,
            at,
            Some(path),
            format!(
                "invalid type: {}, expected [[{}]] tables",
                describe(value.get_ref()),
                place.header_key(field.key)
            ),
            format!(
                "write each entry as a [[{}]] table",
                place.header_key(field.key)
            ),
        )),
    }
}

/// A value as a user wrote it: `string "x"`, ``integer `3` ``, `an array`.
fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("string {s:?}"),
        DeValue::Integer(i) => format!("integer `{i}`"),
        DeValue::Float(f) => format!("decimal number `{f}`"),
        DeValue::Boolean(b) => format!("boolean `{b}`"),
        DeValue::Datetime(d) => format!("date-time `{d}`"),
        DeValue::Array(_) => "array".into(),
        DeValue::Table(_) => "table".into(),
    }
}

// Read access to the generic document for the semantic checks, which run
// whether or not the walk found problems: each accessor yields a value
// only when it has the right kind (a wrong one is already reported).

/// `table[key]` as a string, with the value's span.
pub(crate) fn str_at<'a>(table: &'a DeTable<'_>, key: &str) -> Option<(&'a str, Range<usize>)> {
    let v = table.get(key)?;
    v.get_ref().as_str().map(|s| (s, v.span()))
}

/// `table[key]` as an integer, with the value's span.
pub(crate) fn int_at(table: &DeTable<'_>, key: &str) -> Option<(i64, Range<usize>)> {
    let v = table.get(key)?;
    let i = v.get_ref().as_integer()?;
    i64::from_str_radix(i.as_str(), i.radix())
        .ok()
        .map(|n| (n, v.span()))
}

/// `table[key]` as a table.
pub(crate) fn table_at<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a DeTable<'i>> {
    table.get(key)?.get_ref().as_table()
}

/// The tables of the array `table[key]`, with their indexes and spans.
pub(crate) fn tables_at<'a, 'i>(
    table: &'a DeTable<'i>,
    key: &str,
) -> Vec<(usize, &'a DeTable<'i>, Range<usize>)> {
    let Some(items) = table.get(key).and_then(|v| v.get_ref().as_array()) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.get_ref().as_table().map(|t| (i, t, v.span())))
        .collect()
}

/// The strings of the array `table[key]`, with their indexes and spans;
/// `None` if the key is absent or not an array.
pub(crate) fn strs_at<'a>(
    table: &'a DeTable<'_>,
    key: &str,
) -> Option<Vec<(usize, &'a str, Range<usize>)>> {
    let items = table.get(key)?.get_ref().as_array()?;
    Some(
        items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.get_ref().as_str().map(|s| (i, s, v.span())))
            .collect(),
    )
}

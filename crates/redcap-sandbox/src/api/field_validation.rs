//! Export Field Validations (`content=fieldValidation`): the text
//! validation types of the server with a JavaScript regular expression
//! each, as REDCap's `API/fieldValidation/export.php` answers them — JSON
//! `[{"validation_type", "regex"}]`, CSV `validation_type,regex` (the
//! regex always quoted), XML `<field_validations>` with the regex in
//! CDATA — logged "Export field validations (API)". API Export is the
//! only right it needs (the entry gate).
//!
//! The types are those the sandbox validates on import
//! ([`super::validation`]); the expressions are the sandbox's own,
//! written from what each type accepts there, not copied from REDCap's
//! table of validation types (whose expressions differ in detail).

use redcap::ApiError;
use serde_json::{Value, json};

use super::Ctx;
use crate::db::LogKind;
use crate::format::{Format, Reply, php_json};

/// Each validation type with the expression of what it accepts.
const TYPES: &[(&str, &str)] = &[
    ("alpha_only", r"/^[a-z]+$/i"),
    (
        "date_dmy",
        r"/^(0?[1-9]|[12]\d|3[01])([-\/.])(0?[1-9]|1[012])\2(\d{4})$/",
    ),
    (
        "date_mdy",
        r"/^(0?[1-9]|1[012])([-\/.])(0?[1-9]|[12]\d|3[01])\2(\d{4})$/",
    ),
    (
        "date_ymd",
        r"/^(\d{4})([-\/.])(0?[1-9]|1[012])\2(0?[1-9]|[12]\d|3[01])$/",
    ),
    (
        "datetime_dmy",
        r"/^(0?[1-9]|[12]\d|3[01])([-\/.])(0?[1-9]|1[012])\2(\d{4})\s([01]?\d|2[0-3]):[0-5]\d$/",
    ),
    (
        "datetime_mdy",
        r"/^(0?[1-9]|1[012])([-\/.])(0?[1-9]|[12]\d|3[01])\2(\d{4})\s([01]?\d|2[0-3]):[0-5]\d$/",
    ),
    (
        "datetime_seconds_dmy",
        r"/^(0?[1-9]|[12]\d|3[01])([-\/.])(0?[1-9]|1[012])\2(\d{4})\s([01]?\d|2[0-3]):[0-5]\d:[0-5]\d$/",
    ),
    (
        "datetime_seconds_mdy",
        r"/^(0?[1-9]|1[012])([-\/.])(0?[1-9]|[12]\d|3[01])\2(\d{4})\s([01]?\d|2[0-3]):[0-5]\d:[0-5]\d$/",
    ),
    (
        "datetime_seconds_ymd",
        r"/^(\d{4})([-\/.])(0?[1-9]|1[012])\2(0?[1-9]|[12]\d|3[01])\s([01]?\d|2[0-3]):[0-5]\d:[0-5]\d$/",
    ),
    (
        "datetime_ymd",
        r"/^(\d{4})([-\/.])(0?[1-9]|1[012])\2(0?[1-9]|[12]\d|3[01])\s([01]?\d|2[0-3]):[0-5]\d$/",
    ),
    ("email", r"/^[^\s@]+@[^\s@.]+(\.[^\s@.]+)*\.[a-z]{2,}$/i"),
    ("integer", r"/^[-+]?\d+$/"),
    ("number", r"/^[-+]?(\d+(\.\d*)?|\.\d+)$/"),
    ("number_1dp", r"/^[-+]?\d+\.\d$/"),
    ("number_1dp_comma_decimal", r"/^[-+]?\d+,\d$/"),
    ("number_2dp", r"/^[-+]?\d+\.\d{2}$/"),
    ("number_2dp_comma_decimal", r"/^[-+]?\d+,\d{2}$/"),
    ("number_3dp", r"/^[-+]?\d+\.\d{3}$/"),
    ("number_3dp_comma_decimal", r"/^[-+]?\d+,\d{3}$/"),
    ("number_4dp", r"/^[-+]?\d+\.\d{4}$/"),
    ("number_4dp_comma_decimal", r"/^[-+]?\d+,\d{4}$/"),
    ("number_comma_decimal", r"/^[-+]?(\d+(,\d*)?|,\d+)$/"),
    (
        "phone",
        r"/^[\s(.-]*[2-9]\d{2}[\s).-]*[2-9]\d{2}[\s.-]*\d{4}$/",
    ),
    ("time", r"/^([01]\d|2[0-3]):[0-5]\d$/"),
    ("time_hh_mm_ss", r"/^([01]\d|2[0-3]):[0-5]\d:[0-5]\d$/"),
    ("time_mm_ss", r"/^[0-5]\d:[0-5]\d$/"),
    ("zipcode", r"/^\d{5}(-?\d{4})?$/"),
];

/// Export Field Validations.
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let body = match ctx.format {
        Format::Json => php_json(&Value::Array(
            TYPES
                .iter()
                .map(|(t, re)| json!({"validation_type": t, "regex": re}))
                .collect(),
        )),
        Format::Csv => {
            let mut out = String::from("validation_type,regex\n");
            for (t, re) in TYPES {
                out.push_str(&format!("{t},\"{}\"\n", re.replace('"', "\"\"")));
            }
            out
        }
        Format::Xml => {
            let mut out =
                String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<field_validations>\n");
            for (t, re) in TYPES {
                out.push_str(&format!(
                    "<field_validation><validation_type>{t}</validation_type><regex><![CDATA[{re}]]></regex></field_validation>\n"
                ));
            }
            out.push_str("</field_validations>\n");
            out
        }
    };
    ctx.log_manage(LogKind::Manage, "Export field validations");
    Ok(Reply::ok(ctx.format, body))
}

#[cfg(test)]
mod tests {
    use super::TYPES;

    /// Every type the import validates is listed, once, in name order.
    #[test]
    fn types_are_the_validated_ones_in_order() {
        let names: Vec<&str> = TYPES.iter().map(|(t, _)| *t).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        for name in names {
            // Unknown types accept anything; each listed one refuses "!".
            assert!(
                !super::super::validation::valid(name, "!"),
                "{name} is not validated on import"
            );
        }
    }
}

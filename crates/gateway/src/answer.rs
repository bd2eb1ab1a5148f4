//! Reading REDCap's import answers for what the ledger needs (record ids),
//! and giving the client back the shape it asked for. (Exports are read as
//! they stream: [`crate::export`].)
//!
//! To learn which records an import changed, the gateway asks REDCap for
//! `returnContent=ids` when the client asked for `count`, `nothing` or
//! nothing at all, then rebuilds the client's answer from the ids in the
//! client's `returnFormat`.

use crate::reply::Format;

/// What a record import asked REDCap to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnContent {
    Count,
    Ids,
    AutoIds,
    Nothing,
}

impl ReturnContent {
    /// REDCap's reading: anything unknown is `count`; `auto_ids` without
    /// `forceAutoNumber` is `count` too.
    pub fn of(value: Option<&str>, force_auto_number: bool) -> ReturnContent {
        match value {
            Some("ids") => ReturnContent::Ids,
            Some("auto_ids") if force_auto_number => ReturnContent::AutoIds,
            Some("nothing") => ReturnContent::Nothing,
            _ => ReturnContent::Count,
        }
    }

    /// Whether the gateway must ask for ids instead and rebuild the answer.
    pub fn needs_rewrite(self) -> bool {
        matches!(self, ReturnContent::Count | ReturnContent::Nothing)
    }
}

/// REDCap's boolean flags: `1` or `true` in any case.
pub fn php_true(v: Option<&str>) -> bool {
    v.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The ids in an import answer to `returnContent=ids` (or `auto_ids`, whose
/// items are `new,original`: the new id is recorded).
pub fn import_ids(body: &str, format: Format) -> Option<Vec<String>> {
    let ids: Vec<String> = match format {
        Format::Json => serde_json::from_str::<Vec<serde_json::Value>>(body)
            .ok()?
            .into_iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        Format::Csv => {
            let mut lines = body.lines();
            let header = lines.next()?;
            if !header.starts_with("id") {
                return None;
            }
            lines
                .filter(|l| !l.is_empty())
                .map(|l| l.trim_matches('"').to_string())
                .collect()
        }
        Format::Xml => xml_elements(body, "id"),
    };
    Some(
        ids.into_iter()
            .map(|id| id.split(',').next().unwrap_or_default().to_string())
            .collect(),
    )
}

/// The answer the client asked for, rebuilt from the ids.
pub fn rebuild_import_answer(
    wanted: ReturnContent,
    ids: &ledger::RecordIds,
    format: Format,
) -> String {
    match wanted {
        ReturnContent::Nothing => String::new(),
        ReturnContent::Count => match format {
            Format::Json => format!("{{\"count\": {}}}", ids.len()),
            Format::Csv => ids.len().to_string(),
            Format::Xml => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><count>{}</count>",
                ids.len()
            ),
        },
        ReturnContent::Ids | ReturnContent::AutoIds => {
            unreachable!("ids answers are passed through")
        }
    }
}

/// REDCap's `csvDelimiter` (§6.1): `,` unless one of the others is given.
pub fn csv_delimiter(value: Option<&str>) -> u8 {
    match value {
        Some("tab") => b'\t',
        Some(";") => b';',
        Some("|") => b'|',
        Some("^") => b'^',
        _ => b',',
    }
}

/// Texts of `<tag>…</tag>` elements (no nesting, no attributes).
fn xml_elements(body: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        let text = after[..j].trim();
        let text = text
            .strip_prefix("<![CDATA[")
            .and_then(|t| t.strip_suffix("]]>"))
            .unwrap_or(text);
        out.push(text.to_string());
        rest = &after[j + close.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_content_is_read_as_redcap_reads_it() {
        assert_eq!(ReturnContent::of(None, false), ReturnContent::Count);
        assert_eq!(
            ReturnContent::of(Some("bogus"), false),
            ReturnContent::Count
        );
        assert_eq!(
            ReturnContent::of(Some("auto_ids"), false),
            ReturnContent::Count
        );
        assert_eq!(
            ReturnContent::of(Some("auto_ids"), true),
            ReturnContent::AutoIds
        );
        assert!(ReturnContent::Nothing.needs_rewrite() && !ReturnContent::Ids.needs_rewrite());
        assert!(
            php_true(Some("TRUE"))
                && php_true(Some("1"))
                && !php_true(Some("yes"))
                && !php_true(None)
        );
    }

    #[test]
    fn ids_are_read_in_every_format() {
        assert_eq!(
            import_ids(r#"["1","2"]"#, Format::Json).unwrap(),
            ["1", "2"]
        );
        assert_eq!(import_ids(r#"["5,new1"]"#, Format::Json).unwrap(), ["5"]);
        assert_eq!(import_ids("id\n1\n2\n", Format::Csv).unwrap(), ["1", "2"]);
        assert_eq!(
            import_ids("<?xml version=\"1.0\" encoding=\"UTF-8\" ?><ids><id>1</id><id><![CDATA[x y]]></id></ids>", Format::Xml).unwrap(),
            ["1", "x y"]
        );
        assert_eq!(import_ids("{\"count\": 1}", Format::Json), None);
    }

    #[test]
    fn answers_are_rebuilt_in_the_shape_asked_for() {
        let ids: ledger::RecordIds = ["1", "2"].into_iter().collect();
        assert_eq!(
            rebuild_import_answer(ReturnContent::Count, &ids, Format::Json),
            "{\"count\": 2}"
        );
        assert_eq!(
            rebuild_import_answer(ReturnContent::Count, &ids, Format::Csv),
            "2"
        );
        assert_eq!(
            rebuild_import_answer(ReturnContent::Count, &ids, Format::Xml),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><count>2</count>"
        );
        assert_eq!(
            rebuild_import_answer(ReturnContent::Nothing, &ids, Format::Json),
            ""
        );
    }
}

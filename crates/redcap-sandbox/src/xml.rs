//! Reading XML `data`: `<root><item><field>value</field>…</item>…</root>`,
//! with one level of nesting for `forms`/`forms_export`
//! (`<forms><form_1>130</form_1></forms>`).

use quick_xml::Reader;
use quick_xml::events::Event;
use redcap::ApiError;
use serde_json::{Map, Value};

fn bad(details: impl std::fmt::Display) -> ApiError {
    ApiError::BadXml {
        details: details.to_string(),
    }
}

/// Parses the items of an XML document into rows of strings.
pub fn decode_items(data: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
    let mut reader = Reader::from_str(data);
    let mut rows = Vec::new();
    let mut depth = 0usize;
    let mut row = Map::new();
    let mut nested = Map::new();
    let mut names: Vec<String> = Vec::new();
    let mut raw = String::new();
    let mut saw_root = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| bad(format!("{e} at byte {}", reader.buffer_position())))?;
        match event {
            Event::Start(e) => {
                depth += 1;
                saw_root = true;
                names.push(e.name().as_ref().to_owned());
                raw.clear();
                if depth == 2 {
                    row = Map::new();
                } else if depth == 3 {
                    nested = Map::new();
                } else if depth > 4 {
                    return Err(bad("elements are nested too deeply"));
                }
            }
            Event::Empty(e) => {
                let name = e.name().as_ref().to_owned();
                match depth {
                    0 => saw_root = true,
                    1 => rows.push(Map::new()),
                    2 => {
                        row.insert(name, Value::String(String::new()));
                    }
                    3 => {
                        nested.insert(name, Value::String(String::new()));
                    }
                    _ => {}
                }
            }
            Event::Text(t) => raw.push_str(&t.into_inner()),
            Event::GeneralRef(r) => {
                raw.push('&');
                raw.push_str(&r.into_inner());
                raw.push(';');
            }
            Event::CData(c) => raw.push_str(&quick_xml::escape::escape(c.into_inner().as_ref())),
            Event::End(_) => {
                let name = names.pop().unwrap_or_default();
                match depth {
                    4 => {
                        let text = quick_xml::escape::unescape(&raw).map_err(bad)?;
                        nested.insert(name, Value::String(text.trim().to_owned()));
                    }
                    3 => {
                        if nested.is_empty() {
                            let text = quick_xml::escape::unescape(&raw).map_err(bad)?;
                            row.insert(name, Value::String(text.into_owned()));
                        } else {
                            row.insert(name, Value::Object(std::mem::take(&mut nested)));
                        }
                    }
                    2 => rows.push(std::mem::take(&mut row)),
                    _ => {}
                }
                raw.clear();
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root || depth != 0 {
        return Err(bad("the document is empty or not closed"));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_items_and_nested_forms() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8" ?>
<users><item><username>alice</username><design>1</design>
<forms><f1>130</f1><f2>128</f2></forms><note>a &amp; b<![CDATA[<x>]]></note><empty/></item></users>"#;
        let rows = decode_items(xml).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["username"], json!("alice"));
        assert_eq!(rows[0]["forms"], json!({"f1": "130", "f2": "128"}));
        assert_eq!(rows[0]["note"], json!("a & b<x>"));
        assert_eq!(rows[0]["empty"], json!(""));
    }

    #[test]
    fn refuses_broken_xml() {
        assert!(decode_items("<users><item>").is_err());
        assert!(decode_items("").is_err());
        assert!(decode_items("<a></b>").is_err());
    }
}

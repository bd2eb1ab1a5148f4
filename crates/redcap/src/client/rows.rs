//! Decoding answers: rows in any of the three formats, bare counts, and
//! lenient scalars (REDCap writes the same attribute as `1` or `"1"`
//! depending on the method and version).

use quick_xml::Reader;
use quick_xml::events::Event;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::{Error, Format};

/// One exported row, column order kept: a flat record, an Export Users row,
/// a metadata field, … Values are strings in CSV and XML; JSON keeps what
/// REDCap wrote. Nested elements (`forms`) become objects in JSON and XML.
pub type Row = Map<String, Value>;

/// Decodes an export body in `format` into rows: a JSON array, CSV with a
/// header line, or XML `<root><item><k>v</k>…</item>…</root>`.
pub fn decode_rows(format: Format, body: &str) -> Result<Vec<Row>, Error> {
    let bad = |detail: String| Error::Decode {
        what: "rows",
        detail,
    };
    match format {
        Format::Json => match serde_json::from_str::<Value>(body) {
            Ok(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::Object(m) => Ok(m),
                    other => Err(bad(format!("a row is not an object: {other}"))),
                })
                .collect(),
            Ok(Value::Object(m)) => Ok(vec![m]),
            Ok(other) => Err(bad(format!("not an array: {other}"))),
            Err(e) => Err(bad(e.to_string())),
        },
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new().from_reader(body.as_bytes());
            let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
            let mut rows = Vec::new();
            for rec in reader.records() {
                let rec = rec.map_err(|e| bad(e.to_string()))?;
                rows.push(
                    headers
                        .iter()
                        .zip(rec.iter())
                        .map(|(h, v)| (h.to_owned(), Value::String(v.to_owned())))
                        .collect(),
                );
            }
            Ok(rows)
        }
        Format::Xml => decode_xml(body).map_err(bad),
    }
}

/// An XML element in the tree [`decode_xml`] builds.
#[derive(Default)]
struct Element {
    name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    /// A leaf becomes its unescaped text; an element with children an object.
    fn value(self) -> Result<Value, String> {
        if self.children.is_empty() {
            return quick_xml::escape::unescape(&self.text)
                .map(|t| Value::String(t.into_owned()))
                .map_err(|e| e.to_string());
        }
        self.children
            .into_iter()
            .map(|c| Ok((c.name.clone(), c.value()?)))
            .collect::<Result<Map<_, _>, String>>()
            .map(Value::Object)
    }
}

fn decode_xml(body: &str) -> Result<Vec<Row>, String> {
    let mut reader = Reader::from_str(body);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(start) => stack.push(Element {
                name: start.name().as_ref().to_owned(),
                ..Element::default()
            }),
            Event::Empty(start) => {
                let element = Element {
                    name: start.name().as_ref().to_owned(),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push('&');
                    top.text.push_str(&r.into_inner());
                    top.text.push(';');
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text
                        .push_str(&quick_xml::escape::escape(c.into_inner().as_ref()));
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("unbalanced XML")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let root = root.ok_or("no root element")?;
    root.children
        .into_iter()
        .map(|item| match item.value()? {
            Value::Object(m) => Ok(m),
            Value::String(s) if s.trim().is_empty() => Ok(Map::new()),
            other => Err(format!("an item is not a row: {other}")),
        })
        .collect()
}

/// A bare count (`1`, `3`): the answer of most imports and deletes (§1.6).
pub(crate) fn parse_count(what: &'static str, body: &str) -> Result<usize, Error> {
    body.trim().parse().map_err(|_| Error::Decode {
        what,
        detail: format!("expected a count, got {} bytes", body.len()),
    })
}

/// Any JSON scalar as text (`1`, `"1"`, `true` → `"1"`, null → `""`).
pub(crate) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => String::new(),
        Value::String(s) => s,
        Value::Bool(b) => if b { "1" } else { "0" }.to_owned(),
        other => other.to_string(),
    })
}

/// A number written as a JSON number or a numeric string.
pub(crate) fn number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = text(d)?;
    s.trim().parse().map_err(serde::de::Error::custom)
}

/// `1`/`"1"`/`true` → true, `0`/`""` → false.
pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(matches!(text(d)?.trim(), "1" | "true"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_all_three_formats_to_the_same_rows() {
        let json = r#"[{"record_id":"1","name":"A, \"B\""},{"record_id":"2","name":""}]"#;
        let csv = "record_id,name\n1,\"A, \"\"B\"\"\"\n2,\n";
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<records>\n<item><record_id>1</record_id><name>A, &quot;B&quot;</name></item>\n<item><record_id>2</record_id><name></name></item>\n</records>\n";
        let a = decode_rows(Format::Json, json).unwrap();
        assert_eq!(a[0]["name"], json!("A, \"B\""));
        assert_eq!(decode_rows(Format::Csv, csv).unwrap(), a);
        assert_eq!(decode_rows(Format::Xml, xml).unwrap(), a);
    }

    #[test]
    fn nested_xml_becomes_objects() {
        let xml = "<users><item><username>a</username><forms><f>130</f></forms></item></users>";
        let rows = decode_rows(Format::Xml, xml).unwrap();
        assert_eq!(rows[0]["forms"], json!({"f": "130"}));
        assert!(decode_rows(Format::Xml, "<a><b>").is_err());
        assert!(decode_rows(Format::Json, "5").is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("x", "3").unwrap(), 3);
        assert!(parse_count("x", "{\"count\":3}").is_err());
    }
}

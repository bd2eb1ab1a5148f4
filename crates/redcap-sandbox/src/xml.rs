//! Reading XML `data`.
//!
//! REDCap's XML payloads are shallow: `<root><item><field>value</field>…
//! </item>…</root>`, with one more level for `forms`/`forms_export`
//! (`<forms><form_1>130</form_1></forms>`). Create Project also accepts a
//! single item as the root (`<item><project_title>…</project_title></item>`).
//! The document is read into a small element tree, then into rows.

use quick_xml::Reader;
use quick_xml::events::Event;
use redcap::ApiError;
use serde_json::{Map, Value};

fn bad(details: impl std::fmt::Display) -> ApiError {
    ApiError::BadXml {
        details: details.to_string(),
    }
}

/// One element: name, text, child elements.
#[derive(Debug, Default)]
struct Element {
    name: String,
    raw_text: String,
    children: Vec<Element>,
}

impl Element {
    fn text(&self) -> Result<String, ApiError> {
        Ok(quick_xml::escape::unescape(&self.raw_text)
            .map_err(bad)?
            .into_owned())
    }

    /// A leaf becomes its text; an element with children an object.
    fn value(&self) -> Result<Value, ApiError> {
        if self.children.is_empty() {
            return Ok(Value::String(self.text()?));
        }
        let mut m = Map::new();
        for c in &self.children {
            m.insert(c.name.clone(), c.value()?);
        }
        Ok(Value::Object(m))
    }

    fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }
}

fn parse(data: &str) -> Result<Element, ApiError> {
    let mut reader = Reader::from_str(data);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| bad(format!("{e} at byte {}", reader.buffer_position())))?;
        match event {
            Event::Start(e) => {
                if stack.len() >= 8 {
                    return Err(bad("elements are nested too deeply"));
                }
                stack.push(Element {
                    name: e.name().as_ref().to_owned(),
                    ..Element::default()
                });
            }
            Event::Empty(e) => {
                let el = Element {
                    name: e.name().as_ref().to_owned(),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err(bad("more than one root element")),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.raw_text.push_str(&t.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    top.raw_text.push('&');
                    top.raw_text.push_str(&r.into_inner());
                    top.raw_text.push(';');
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.raw_text
                        .push_str(&quick_xml::escape::escape(c.into_inner().as_ref()));
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| bad("unbalanced end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err(bad("more than one root element")),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(bad("the document ends inside an element"));
    }
    root.ok_or_else(|| bad("the document has no root element"))
}

/// Parses the items of an XML document into rows. A root whose children
/// are all leaves is itself the single row.
pub fn decode_items(data: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
    let root = parse(data)?;
    let single = !root.children.is_empty() && root.children.iter().all(Element::is_leaf);
    let items: Vec<&Element> = if single {
        vec![&root]
    } else {
        root.children.iter().collect()
    };
    items
        .into_iter()
        .map(|item| {
            let mut row = Map::new();
            for field in &item.children {
                row.insert(field.name.clone(), field.value()?);
            }
            Ok(row)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_items_and_nested_forms() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8" ?>
<users><item><username>alice</username><design>1</design>
<forms><f1>130</f1><f2>128</f2></forms><note>a &amp; b<![CDATA[<x>]]></note><empty/></item>
<item><username>bob</username></item></users>"#;
        let rows = decode_items(xml).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["username"], json!("alice"));
        assert_eq!(rows[0]["forms"], json!({"f1": "130", "f2": "128"}));
        assert_eq!(rows[0]["note"], json!("a & b<x>"));
        assert_eq!(rows[0]["empty"], json!(""));
        assert_eq!(rows[1]["username"], json!("bob"));
    }

    #[test]
    fn a_root_of_leaves_is_one_item() {
        let rows =
            decode_items("<item><project_title>T</project_title><purpose>0</purpose></item>")
                .unwrap();
        assert_eq!(
            rows,
            vec![
                json!({"project_title": "T", "purpose": "0"})
                    .as_object()
                    .unwrap()
                    .clone()
            ]
        );
        assert_eq!(decode_items("<records></records>").unwrap().len(), 0);
    }

    #[test]
    fn refuses_broken_xml() {
        assert!(decode_items("<users><item>").is_err());
        assert!(decode_items("").is_err());
        assert!(decode_items("<a></b>").is_err());
        assert!(decode_items("<a/><b/>").is_err());
    }
}

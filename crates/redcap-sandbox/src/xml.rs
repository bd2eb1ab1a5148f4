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

/// Reads the document and hands each item (each child of the root, or the
/// root itself when all its children are leaves) to `item` as soon as it
/// is complete: memory holds one item. Parse errors end the reading.
fn read_items(
    data: &str,
    mut item: impl FnMut(&Element) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut reader = Reader::from_str(data);
    // The open elements; `stack[0]` is the root, which keeps its children
    // only while they are all leaves (it may be the single item).
    let mut stack: Vec<Element> = Vec::new();
    let mut root_seen = false;
    let mut leaves_only = true;
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
                match stack.len() {
                    0 if root_seen => return Err(bad("more than one root element")),
                    0 => root_seen = true,
                    1 => child_done(&mut stack[0], el, &mut leaves_only, &mut item)?,
                    _ => stack.last_mut().expect("not empty").children.push(el),
                }
            }
            Event::Text(t) => {
                // The root's own text is never read: not kept.
                if stack.len() > 1
                    && let Some(top) = stack.last_mut()
                {
                    top.raw_text.push_str(&t.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                if stack.len() > 1
                    && let Some(top) = stack.last_mut()
                {
                    top.raw_text.push('&');
                    top.raw_text.push_str(&r.into_inner());
                    top.raw_text.push(';');
                }
            }
            Event::CData(c) => {
                if stack.len() > 1
                    && let Some(top) = stack.last_mut()
                {
                    top.raw_text
                        .push_str(&quick_xml::escape::escape(c.into_inner().as_ref()));
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| bad("unbalanced end tag"))?;
                match stack.len() {
                    0 if root_seen => return Err(bad("more than one root element")),
                    0 => {
                        root_seen = true;
                        if leaves_only && !el.children.is_empty() {
                            item(&el)?;
                        }
                    }
                    1 => child_done(&mut stack[0], el, &mut leaves_only, &mut item)?,
                    _ => stack.last_mut().expect("not empty").children.push(el),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(bad("the document ends inside an element"));
    }
    if !root_seen {
        return Err(bad("the document has no root element"));
    }
    Ok(())
}

/// A child of the root is complete: an item, or held back while the root
/// may still turn out to be the single item (all its children leaves).
fn child_done(
    root: &mut Element,
    el: Element,
    leaves_only: &mut bool,
    item: &mut impl FnMut(&Element) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    if *leaves_only {
        if el.is_leaf() {
            root.children.push(el);
            return Ok(());
        }
        *leaves_only = false;
        for held in std::mem::take(&mut root.children) {
            item(&held)?;
        }
    }
    item(&el)
}

/// An item as a row: each child a field.
fn row_of(item: &Element) -> Result<Map<String, Value>, ApiError> {
    let mut row = Map::new();
    for field in &item.children {
        row.insert(field.name.clone(), field.value()?);
    }
    Ok(row)
}

/// Checks a document as [`decode_items`] reads it, keeping nothing: a
/// parse error anywhere comes before an unreadable value (an entity), and
/// of those the first.
pub fn check(data: &str) -> Result<(), ApiError> {
    let mut first_bad_value = None;
    read_items(data, |item| {
        if let (Err(e), None) = (row_of(item), &first_bad_value) {
            first_bad_value = Some(e);
        }
        Ok(())
    })?;
    first_bad_value.map_or(Ok(()), Err)
}

/// Hands each item of a document to `f` as a row, as it is read (memory
/// holds one item). Call [`check`] first for [`decode_items`]'s errors.
pub fn for_each_item(
    data: &str,
    mut f: impl FnMut(Map<String, Value>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    read_items(data, |item| f(row_of(item)?))
}

/// Parses the items of an XML document into rows. A root whose children
/// are all leaves is itself the single row.
pub fn decode_items(data: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
    check(data)?;
    let mut rows = Vec::new();
    for_each_item(data, |row| {
        rows.push(row);
        Ok(())
    })?;
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

    /// Items are handed over one by one; leaf children of the root are
    /// held back only while the root may be the single item, and a parse
    /// error anywhere comes before an unreadable value.
    #[test]
    fn items_stream_in_order_and_errors_keep_their_precedence() {
        let mut seen = Vec::new();
        for_each_item(
            "<r><a/><item><x>1</x></item><b>t</b><item><x>2</x></item></r>",
            |row| {
                seen.push(row);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            [json!({}), json!({"x": "1"}), json!({}), json!({"x": "2"})]
                .map(|v| v.as_object().unwrap().clone())
        );
        let bad_entity = "<r><item><x>&bogus;</x></item>";
        let late_parse_error = format!("{bad_entity}<item></r>");
        let e = decode_items(&late_parse_error).unwrap_err();
        assert_eq!(check(&late_parse_error).unwrap_err().message(), e.message());
        assert!(!e.message().contains("bogus"), "{}", e.message());
        let e = check(&format!("{bad_entity}</r>")).unwrap_err();
        assert!(e.message().contains("bogus"), "{}", e.message());
        assert!(check("<r><item><x>1</x></item></r>").is_ok());
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

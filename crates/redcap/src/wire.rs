//! Wire formats as REDCap normalises them (§1.2), and the shape of its
//! error answers (§1.6): shared by the sandbox, which answers like REDCap,
//! and the gateway, which refuses like REDCap.

/// A normalised `format` or `returnFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `json`: errors as `{"error":"…"}`.
    Json,
    /// `csv`: errors as `ERROR: …`.
    Csv,
    /// `xml` (and anything unrecognised): errors as `<hash><error>…`.
    Xml,
}

impl Format {
    /// `format`: `json`, `csv` (and `odm`, answered as XML); anything else
    /// is XML (§1.2).
    pub fn from_param(value: &str) -> Format {
        match value {
            "json" => Format::Json,
            "csv" => Format::Csv,
            _ => Format::Xml,
        }
    }

    /// `returnFormat`: empty means the same as `format` (§1.2).
    pub fn return_format(value: &str, format: Format) -> Format {
        if value.is_empty() {
            format
        } else {
            Format::from_param(value)
        }
    }

    /// `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xml => "text/xml; charset=utf-8",
        }
    }

    /// The name REDCap writes into export log details.
    pub fn log_name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Csv => "CSV",
            Format::Xml => "XML",
        }
    }
}

/// An error body in the shape `format` asks for: `{"error":…}` with `/`
/// escaped as PHP's `json_encode` does, `ERROR: …`, or REDCap's XML, whose
/// message is not escaped.
pub fn error_body(message: &str, format: Format) -> String {
    match format {
        Format::Json => serde_json::json!({ "error": message })
            .to_string()
            .replace('/', "\\/"),
        Format::Csv => format!("ERROR: {message}"),
        Format::Xml => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>{message}</error></hash>"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_normalise_as_redcap_does() {
        assert_eq!(Format::from_param("json"), Format::Json);
        assert_eq!(Format::from_param("odm"), Format::Xml);
        assert_eq!(
            Format::from_param("JSON"),
            Format::Xml,
            "case-sensitive, like PHP"
        );
        assert_eq!(Format::return_format("", Format::Csv), Format::Csv);
        assert_eq!(Format::return_format("json", Format::Csv), Format::Json);
    }

    #[test]
    fn error_bodies_have_redcaps_shapes() {
        assert_eq!(error_body("a/b", Format::Json), r#"{"error":"a\/b"}"#);
        assert_eq!(error_body("no", Format::Csv), "ERROR: no");
        assert_eq!(
            error_body("no", Format::Xml),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>no</error></hash>"
        );
    }
}

//! The PostgreSQL schema name rules, built without the `postgres` feature
//! too: configuration checks a name before any connection is made.

/// The PostgreSQL schema that holds a ledger's tables unless configured
/// otherwise.
pub const DEFAULT_SCHEMA: &str = "redcap_warden";

/// Whether `schema` is a name the PostgreSQL backend accepts for its
/// schema: a plain lowercase identifier, so it is used in SQL unquoted.
pub fn valid_schema(schema: &str) -> Result<(), String> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase())
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "schema {schema:?} is not a plain lowercase name (a-z, 0-9 and _, starting with a letter, at most 63 characters, not pg_…)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["redcap_warden", "l1", "a"] {
            assert!(valid_schema(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "A",
            "a-b",
            "a;drop",
            "pg_x",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(valid_schema(bad).is_err(), "{bad}");
        }
    }
}

//! Field-level differences between two versions of `warden.toml`, for the
//! ledger's start and reload entries: an inspector sees exactly which
//! settings changed, not only that the file's hash did. (The file holds no
//! secrets, so values are shown.) Tables in arrays (`[[client]]`, …) are
//! named by their `name` key, so reordering them is not a change.

use std::collections::BTreeMap;

/// One changed setting, e.g. `client[etl].allow: ["record:export"] → ["record:export", "record:import"]`.
pub fn field_diff(old: &str, new: &str) -> Vec<String> {
    let (Ok(old), Ok(new)) = (old.parse::<toml::Table>(), new.parse::<toml::Table>()) else {
        return vec!["(one of the versions does not parse)".into()];
    };
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", &toml::Value::Table(old), &mut a);
    flatten("", &toml::Value::Table(new), &mut b);
    let mut out = Vec::new();
    for (k, v) in &a {
        match b.get(k) {
            None => out.push(format!("{k}: removed (was {v})")),
            Some(w) if w != v => out.push(format!("{k}: {v} → {w}")),
            Some(_) => {}
        }
    }
    for (k, w) in &b {
        if !a.contains_key(k) {
            out.push(format!("{k}: added ({w})"));
        }
    }
    out
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten(&join(k), v, out);
            }
        }
        toml::Value::Array(items) if !items.is_empty() && items.iter().all(|i| i.is_table()) => {
            for (i, item) in items.iter().enumerate() {
                let id = item
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string());
                flatten(&format!("{prefix}[{id}]"), item, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_named_by_field() {
        let old = "[redcap]\nurl = \"a\"\n[[client]]\nname = \"etl\"\nallow = [\"x\"]\n[[client]]\nname = \"b\"\nallow = []\n";
        let new = "[redcap]\nurl = \"a\"\ntime_zone = \"UTC\"\n[[client]]\nname = \"b\"\nallow = []\n[[client]]\nname = \"etl\"\nallow = [\"x\", \"y\"]\n";
        assert_eq!(
            field_diff(old, new),
            [
                r#"client[etl].allow: ["x"] → ["x", "y"]"#.to_string(),
                r#"redcap.time_zone: added ("UTC")"#.to_string(),
            ]
        );
        assert!(field_diff(old, old).is_empty());
        assert_eq!(field_diff("[a]\nx = 1\n", ""), ["a.x: removed (was 1)"]);
    }
}

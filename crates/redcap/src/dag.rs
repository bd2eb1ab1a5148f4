//! Unique Data Access Group names (§5.2).
//!
//! REDCap stores only a DAG's label; the unique name is recomputed from all
//! labels of the project every time, so renaming a DAG (or adding one with the
//! same prefix) can change unique names. Bind to `group_id`, not to the name.

use md5::{Digest, Md5};

/// The unique name of one label, ignoring the other DAGs of the project.
///
/// Keep ASCII letters, digits, `_` and space; trim; lower-case; every space
/// becomes `_`; cut to 18 characters; drop one trailing `_`. A label with
/// nothing left gets the first 10 hex characters of the MD5 of the label.
pub fn base_unique_name(label: &str) -> String {
    let kept: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ' ')
        .collect();
    let mut name: String = kept
        .trim()
        .to_ascii_lowercase()
        .replace(' ', "_")
        .chars()
        .take(18)
        .collect();
    if name.ends_with('_') {
        name.pop();
    }
    if name.is_empty() {
        let digest = Md5::digest(label.as_bytes());
        name = digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()[..10]
            .to_owned();
    }
    name
}

/// The suffix of the `n`-th duplicate (1-based): `b` … `z`, then two letters
/// `aa`, `ab`, … (the two-letter scheme is INF in the spec).
fn suffix(n: usize) -> String {
    if n <= 25 {
        char::from(b'a' + n as u8).to_string()
    } else {
        let k = n - 26;
        let first = char::from(b'a' + ((k / 26) % 26) as u8);
        let second = char::from(b'a' + (k % 26) as u8);
        format!("{first}{second}")
    }
}

/// The unique names of all DAGs of a project, aligned with `labels` (which are
/// in storage order, i.e. by `group_id`).
///
/// Labels are processed in order of their trimmed, case-folded text (ties by
/// storage order); the first of a base name keeps it, later ones get `b`,
/// `c`, …, skipping any name already taken.
pub fn unique_group_names<S: AsRef<str>>(labels: &[S]) -> Vec<String> {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by_key(|&i| (labels[i].as_ref().trim().to_lowercase(), i));
    let mut taken = std::collections::HashSet::new();
    let mut names = vec![String::new(); labels.len()];
    for i in order {
        let base = base_unique_name(labels[i].as_ref());
        let mut name = base.clone();
        let mut n = 0;
        while taken.contains(&name) {
            n += 1;
            name = format!("{base}{}", suffix(n));
        }
        taken.insert(name.clone());
        names[i] = name;
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names() {
        let table = [
            ("Site A", "site_a"),
            ("  Boston General  ", "boston_general"),
            ("Ärzte-Zentrum #1", "rztezentrum_1"),
            ("Hospital of the University", "hospital_of_the_un"),
            ("A very long name_", "a_very_long_name"),
            ("seventeen chars x_y", "seventeen_chars_x"),
            ("Two  spaces", "two__spaces"),
            ("UPPER_lower 9", "upper_lower_9"),
        ];
        for (label, want) in table {
            assert_eq!(base_unique_name(label), want, "{label:?}");
        }
    }

    #[test]
    fn empty_result_falls_back_to_md5_prefix() {
        // md5("###") = dc27db9710… (printf "###" | md5sum)
        assert_eq!(base_unique_name("###"), "dc27db9710");
        assert_eq!(base_unique_name("").len(), 10);
    }

    #[test]
    fn duplicates_get_letter_suffixes_in_label_order() {
        assert_eq!(
            unique_group_names(&["Site A", "site a", "SITE A!"]),
            ["site_a", "site_ab", "site_ac"]
        );
        // Ordering is by trimmed label, not storage order.
        assert_eq!(
            unique_group_names(&["site a ", "Site A"]),
            ["site_a", "site_ab"]
        );
        assert_eq!(unique_group_names(&["B", "A"]), ["b", "a"]);
    }

    #[test]
    fn renaming_changes_the_unique_name() {
        assert_eq!(unique_group_names(&["Site A"]), ["site_a"]);
        assert_eq!(unique_group_names(&["Site A (Boston)"]), ["site_a_boston"]);
    }

    #[test]
    fn many_duplicates_use_two_letters() {
        let labels = vec!["x"; 30];
        let names = unique_group_names(&labels);
        assert_eq!(names[0], "x");
        assert_eq!(names[1], "xb");
        assert_eq!(names[25], "xz");
        assert_eq!(names[26], "xaa");
        assert_eq!(names[29], "xad");
        let set: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(set.len(), 30);
    }
}

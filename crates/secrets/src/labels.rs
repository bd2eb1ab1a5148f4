//! How staging labels move, written once for the backends that keep labels
//! themselves (the file store, Vault's `<name>.labels` entry). AWS moves its
//! own labels with the same rules.

use std::collections::BTreeMap;

use crate::{Label, VersionId};

pub(crate) type Labels = BTreeMap<Label, VersionId>;

/// Gives `label` to `to`. A new `current` pushes the old current version to
/// `previous` (unless it is `to` itself) and takes `pending` off `to`, since
/// a version that is in use is no longer pending.
pub(crate) fn move_label(labels: &mut Labels, label: Label, to: &VersionId) {
    if label == Label::Current {
        if let Some(old) = labels.get(&Label::Current).cloned()
            && &old != to
        {
            labels.insert(Label::Previous, old);
        }
        if labels.get(&Label::Pending) == Some(to) {
            labels.remove(&Label::Pending);
        }
    }
    labels.insert(label, to.clone());
}

/// The labels one version carries, in `Label` order.
pub(crate) fn labels_of(labels: &Labels, version: &VersionId) -> Vec<Label> {
    labels
        .iter()
        .filter(|(_, v)| *v == version)
        .map(|(l, _)| *l)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> VersionId {
        VersionId(s.into())
    }

    #[test]
    fn current_pushes_the_old_current_to_previous() {
        let mut l = Labels::new();
        move_label(&mut l, Label::Current, &v("1"));
        assert_eq!(labels_of(&l, &v("1")), [Label::Current]);
        move_label(&mut l, Label::Pending, &v("2"));
        move_label(&mut l, Label::Current, &v("2"));
        assert_eq!(labels_of(&l, &v("2")), [Label::Current]);
        assert_eq!(labels_of(&l, &v("1")), [Label::Previous]);
        move_label(&mut l, Label::Current, &v("2"));
        assert_eq!(
            labels_of(&l, &v("1")),
            [Label::Previous],
            "re-labelling current changes nothing"
        );
    }
}

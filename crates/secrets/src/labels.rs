//! How staging labels move, written once for the backends that keep labels
//! themselves (the file store, Vault's `<name>.labels` entry). AWS moves its
//! own labels with the same rules. The two rules every backend checks before
//! it touches anything are here too.

use std::collections::BTreeMap;

use crate::{Label, Result, SecretStore, StoreError, VersionId};

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

/// Refuses a new version labelled `previous`: a version becomes `previous`
/// only by having been `current`.
pub(crate) fn check_new_version_label(
    store: &(impl SecretStore + ?Sized),
    label: Label,
) -> Result<()> {
    if label == Label::Previous {
        return Err(StoreError::InvalidRequest {
            store: store.describe(),
            detail: "a new version can be labelled current or pending, not previous".into(),
        });
    }
    Ok(())
}

/// Refuses to remove `current`: a secret in use always has a current
/// version, so `current` can only be moved.
pub(crate) fn check_removable(store: &(impl SecretStore + ?Sized), label: Label) -> Result<()> {
    if label == Label::Current {
        return Err(StoreError::InvalidRequest {
            store: store.describe(),
            detail: "the current label can only be moved, not removed".into(),
        });
    }
    Ok(())
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

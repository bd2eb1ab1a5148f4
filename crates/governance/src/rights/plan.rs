//! `rights plan` / `rights apply`: the per-field changes that bring a
//! governed account's live REDCap rights within its profile.
//!
//! A profile is a ceiling (deny by default), so a plan only ever lowers:
//! a right above the profile comes down to what the profile grants, a
//! right below it stays as it is (it is not a finding, and raising rights
//! is a person's decision in REDCap, not the tool's). So `apply` can never
//! raise a right past the profile, nor raise one at all.
//!
//! The Import Users row a plan makes always carries `data_access_group`
//! (REDCap drops the DAG of a user imported without it, §4.6) and complete
//! `forms` and `forms_export` maps (an instrument missing from an imported
//! map is set to no access).

use redcap::rights::{ExportRight, FormRight, FormRightsEncoding, UserRights, wire_text};
use serde::Serialize;
use serde_json::{Map, Value};

use super::check::{
    Governed, IDENTITY, LiveProject, capabilities, exceeds, export_rank, export_right_name,
    form_right_name,
};

/// One field's change: `name: live -> wanted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The attribute (`design`), `forms <instrument>`, `forms_export
    /// <instrument>`, `data_access_group` or `role`.
    pub field: String,
    /// Its live value.
    pub live: String,
    /// The value the plan sets.
    pub wanted: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.field, self.live, self.wanted)
    }
}

/// What `apply` does to one account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountPlan {
    /// The `[[account]]` name.
    pub account: String,
    /// The REDCap username.
    pub username: String,
    /// The role to remove first (through `userRoleMapping`), if any.
    pub role: Option<String>,
    /// The changes, in the order REDCap reports the fields.
    pub changes: Vec<Change>,
    /// The Import Users row that makes them (not shown to users; no
    /// secrets in it).
    #[serde(skip)]
    pub row: Map<String, Value>,
}

impl AccountPlan {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Why an account cannot be planned for (`rights check` reports each as a
/// finding too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanBlocked {
    /// The user is not in the project.
    #[error("the REDCap user `{0}` is not a user of the project")]
    NotInProject(String),
    /// The site's DAG is gone, so there is no DAG to keep it in.
    #[error("site `{site}` is bound to DAG {dag_id}, which the project does not have")]
    SiteDagMissing {
        /// The site.
        site: String,
        /// Its `dag_id`.
        dag_id: u64,
    },
    /// Another site's account is the same REDCap user: one user has one
    /// DAG, so whichever DAG apply chose would be wrong for a site.
    #[error(
        "it is the same REDCap user as `{0}` of another site; give each site its own user in warden.toml first"
    )]
    SharedUser(String),
    /// Export Users' row could not be read.
    #[error("{0}")]
    Rights(#[from] redcap::rights::RightsError),
}

/// The greatest right within both `live` and `ceiling`.
fn form_meet(live: FormRight, ceiling: FormRight) -> FormRight {
    let (l, c) = (capabilities(live), capabilities(ceiling));
    let [view, edit, responses, delete] = [0, 1, 2, 3].map(|i| l[i] && c[i]);
    match (view, edit, responses, delete) {
        (false, ..) => FormRight::NoAccess,
        (true, false, ..) => FormRight::ReadOnly,
        (true, true, false, false) => FormRight::ViewEdit,
        (true, true, true, false) => FormRight::ViewEditResponses,
        (true, true, false, true) => FormRight::ViewEditDelete,
        (true, true, true, true) => FormRight::ViewEditResponsesDelete,
    }
}

fn export_meet(live: ExportRight, ceiling: ExportRight) -> ExportRight {
    if export_rank(live) <= export_rank(ceiling) {
        live
    } else {
        ceiling
    }
}

/// The plan for one governed account in `live`. `instruments` are the
/// project's instruments (Export Instruments), so the maps are complete;
/// `encoding` is the form-rights encoding of the project's REDCap version.
pub fn plan_account(
    governed: &Governed,
    live: &LiveProject,
    instruments: &[String],
    encoding: FormRightsEncoding,
) -> Result<AccountPlan, PlanBlocked> {
    let row = live
        .users
        .iter()
        .find(|r| {
            r.get("username")
                .and_then(wire_text)
                .is_some_and(|u| u.eq_ignore_ascii_case(&governed.username))
        })
        .ok_or_else(|| PlanBlocked::NotInProject(governed.username.clone()))?;
    let user = UserRights::from_json(row)?;
    let profile = &governed.profile;
    let mut changes = Vec::new();
    let mut import = Map::new();
    import.insert("username".into(), Value::String(user.username.clone()));

    let role = live
        .roles
        .iter()
        .find(|(u, r)| u.eq_ignore_ascii_case(&governed.username) && !r.is_empty())
        .map(|(_, r)| r.clone());
    if let Some(r) = &role {
        changes.push(Change {
            field: "role".into(),
            live: r.clone(),
            wanted: "(none)".into(),
        });
    }

    // The DAG: a site account's is its site's, looked up by id now (the
    // unique name changes on a rename); any other account keeps its own.
    let live_dag = user.data_access_group.clone().unwrap_or_default();
    let dag = match &governed.site {
        Some((site, dag_id)) => {
            let unique = live
                .dags
                .iter()
                .find(|d| d.id == *dag_id)
                .map(|d| d.unique_name.clone())
                .ok_or_else(|| PlanBlocked::SiteDagMissing {
                    site: site.clone(),
                    dag_id: *dag_id,
                })?;
            if user.data_access_group_id != Some(*dag_id) {
                changes.push(Change {
                    field: "data_access_group".into(),
                    live: if live_dag.is_empty() {
                        "(none)".into()
                    } else {
                        live_dag.clone()
                    },
                    wanted: unique.clone(),
                });
            }
            unique
        }
        None => live_dag,
    };
    import.insert("data_access_group".into(), Value::String(dag));

    for key in row.keys() {
        if IDENTITY.contains(&key.as_str()) {
            continue;
        }
        let Some(value) = user.rights.attribute(key) else {
            continue; // unknown rights: a finding, not something to import
        };
        let granted = profile.grant(key);
        if exceeds(key, value, granted) {
            // Values without an order (Data Resolution Workflow, Double
            // Data Entry) go to 0; the others down to the grant.
            let wanted = match key.as_str() {
                "data_quality_resolution" | "double_data" => 0,
                _ => granted,
            };
            changes.push(Change {
                field: key.clone(),
                live: value.to_string(),
                wanted: wanted.to_string(),
            });
            import.insert(key.clone(), Value::from(wanted));
        }
    }

    let mut forms_all: Vec<&String> = instruments
        .iter()
        .chain(user.rights.forms.keys())
        .chain(user.rights.forms_export.keys())
        .collect();
    forms_all.sort();
    forms_all.dedup();
    let mut forms = Map::new();
    let mut forms_export = Map::new();
    for form in forms_all {
        let l = user
            .rights
            .forms
            .get(form)
            .copied()
            .unwrap_or(FormRight::NoAccess);
        let w = form_meet(l, profile.form(form));
        if w != l {
            changes.push(Change {
                field: format!("forms {form}"),
                live: form_right_name(l).into(),
                wanted: form_right_name(w).into(),
            });
        }
        forms.insert(form.clone(), Value::from(w.code(encoding)));
        let l = user
            .rights
            .forms_export
            .get(form)
            .copied()
            .unwrap_or(ExportRight::NoAccess);
        let w = export_meet(l, profile.form_export(form));
        if w != l {
            changes.push(Change {
                field: format!("forms_export {form}"),
                live: export_right_name(l).into(),
                wanted: export_right_name(w).into(),
            });
        }
        forms_export.insert(form.clone(), Value::from(w.code()));
    }
    import.insert("forms".into(), Value::Object(forms));
    import.insert("forms_export".into(), Value::Object(forms_export));

    Ok(AccountPlan {
        account: governed.account.clone(),
        username: governed.username.clone(),
        role,
        changes,
        row: import,
    })
}

/// The Import Users row that gives an account being enrolled (`accounts
/// enroll`) exactly its profile: every granted attribute at its grant and
/// every other one the user holds at 0, every instrument's data viewing
/// and export right at the profile's ceiling, and its site's DAG (looked
/// up by id; `data_access_group` is always in the row). The changes are
/// against the user's live row, or against nothing when the user is not in
/// the project yet (the import adds it).
///
/// This is the one place the tool raises rights — to the profile and no
/// further — because an operator enrolling an account asks for it, with a
/// recorded reason. A user in a role must leave it first (`rights apply`'s
/// plan does that).
pub fn enrolment_row(
    governed: &Governed,
    live: &LiveProject,
    instruments: &[String],
    encoding: FormRightsEncoding,
) -> Result<AccountPlan, PlanBlocked> {
    let row = live.users.iter().find(|r| {
        r.get("username")
            .and_then(wire_text)
            .is_some_and(|u| u.eq_ignore_ascii_case(&governed.username))
    });
    let user = row.map(UserRights::from_json).transpose()?;
    let profile = &governed.profile;
    let mut changes = Vec::new();
    let mut import = Map::new();
    import.insert(
        "username".into(),
        Value::String(governed.username.to_lowercase()),
    );
    let live_dag = user
        .as_ref()
        .and_then(|u| u.data_access_group.clone())
        .unwrap_or_default();
    let dag = match &governed.site {
        Some((site, dag_id)) => live
            .dags
            .iter()
            .find(|d| d.id == *dag_id)
            .map(|d| d.unique_name.clone())
            .ok_or_else(|| PlanBlocked::SiteDagMissing {
                site: site.clone(),
                dag_id: *dag_id,
            })?,
        None => String::new(),
    };
    if user.is_none() || live_dag != dag {
        changes.push(Change {
            field: "data_access_group".into(),
            live: if live_dag.is_empty() {
                "(none)".into()
            } else {
                live_dag
            },
            wanted: if dag.is_empty() {
                "(none)".into()
            } else {
                dag.clone()
            },
        });
    }
    import.insert("data_access_group".into(), Value::String(dag));

    // Every attribute the profile grants, at its grant; every other one
    // the user holds, down to 0.
    let mut keys: Vec<String> = profile.grants.keys().cloned().collect();
    if let Some(row) = row {
        keys.extend(
            row.keys()
                .filter(|k| !IDENTITY.contains(&k.as_str()))
                .cloned(),
        );
    }
    keys.sort();
    keys.dedup();
    for key in keys {
        let held = match &user {
            None => 0,
            Some(u) => match u.rights.attribute(&key) {
                Some(v) => v,
                None if profile.grants.contains_key(&key) => 0,
                // Not a right this version knows: a finding, not something
                // to import.
                None => continue,
            },
        };
        let wanted = profile.grant(&key);
        if held != wanted {
            changes.push(Change {
                field: key.clone(),
                live: held.to_string(),
                wanted: wanted.to_string(),
            });
        }
        if held != wanted || user.is_none() {
            import.insert(key, Value::from(wanted));
        }
    }

    let mut forms = Map::new();
    let mut forms_export = Map::new();
    for form in instruments {
        let l = user
            .as_ref()
            .and_then(|u| u.rights.forms.get(form).copied())
            .unwrap_or(FormRight::NoAccess);
        let w = profile.form(form);
        if w != l {
            changes.push(Change {
                field: format!("forms {form}"),
                live: form_right_name(l).into(),
                wanted: form_right_name(w).into(),
            });
        }
        forms.insert(form.clone(), Value::from(w.code(encoding)));
        let l = user
            .as_ref()
            .and_then(|u| u.rights.forms_export.get(form).copied())
            .unwrap_or(ExportRight::NoAccess);
        let w = profile.form_export(form);
        if w != l {
            changes.push(Change {
                field: format!("forms_export {form}"),
                live: export_right_name(l).into(),
                wanted: export_right_name(w).into(),
            });
        }
        forms_export.insert(form.clone(), Value::from(w.code()));
    }
    import.insert("forms".into(), Value::Object(forms));
    import.insert("forms_export".into(), Value::Object(forms_export));

    Ok(AccountPlan {
        account: governed.account.clone(),
        username: governed.username.clone(),
        role: None,
        changes,
        row: import,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meet_of_two_form_rights_is_what_both_allow() {
        for live in FormRight::ALL {
            for ceiling in FormRight::ALL {
                let meet = form_meet(live, ceiling);
                let want: Vec<bool> = capabilities(live)
                    .iter()
                    .zip(capabilities(ceiling))
                    .map(|(l, c)| *l && c)
                    .collect();
                // Edit rights need view; read-only is view without edit.
                let want: Vec<bool> = if want[1] {
                    want
                } else {
                    vec![want[0], false, false, false]
                };
                assert_eq!(
                    capabilities(meet).to_vec(),
                    want,
                    "{live:?} within {ceiling:?} gave {meet:?}"
                );
            }
        }
        assert_eq!(
            export_meet(ExportRight::FullDataSet, ExportRight::DeIdentified),
            ExportRight::DeIdentified
        );
        assert_eq!(
            export_meet(ExportRight::NoAccess, ExportRight::FullDataSet),
            ExportRight::NoAccess
        );
    }
}

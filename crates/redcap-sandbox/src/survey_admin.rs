//! Admin endpoints for surveys (what REDCap does in its Online Designer
//! and on its survey pages):
//!
//! - `GET /sandbox/projects/{pid}/surveys`: the project's surveys;
//! - `POST /sandbox/projects/{pid}/surveys` `{"form", "title"?,
//!   "enabled"?, "save_and_return"?, "edit_completed_response"?,
//!   "queue"?}`: makes an instrument a survey (and switches surveys on for
//!   the project); `queue: true` puts it in the survey queue of every event
//!   that holds it;
//! - `POST /sandbox/projects/{pid}/surveys/{form}/responses` `{"record",
//!   "event"?, "instance"?, "completed"?, "time"?, "email"?,
//!   "identifier"?}`: a respondent's submission for an existing record
//!   (complete unless `completed` is false; `time` defaults to now).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::{AdminError, Answer, project_mut, run_db};
use crate::db::Project;
use crate::store;
use crate::surveys::{self, Submission, SurveySettings};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/sandbox/projects/{pid}/surveys",
            get(list_surveys).post(enable_survey),
        )
        .route(
            "/sandbox/projects/{pid}/surveys/{form}/responses",
            post(submit_response),
        )
}

fn sql<T>(r: rusqlite::Result<T>) -> Result<T, AdminError> {
    r.map_err(|e| {
        AdminError(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("database: {e}"),
        )
    })
}

fn survey_json(conn: &rusqlite::Connection, project: &Project) -> Result<Value, AdminError> {
    let names = project.unique_event_names();
    let mut out = Vec::new();
    for s in sql(surveys::surveys(conn, project))? {
        let queue: Vec<String> = sql(surveys::queue_events(conn, s.id))?
            .into_iter()
            .map(|e| {
                project
                    .events
                    .iter()
                    .position(|ev| ev.id == e)
                    .map(|i| names[i].clone())
                    .unwrap_or_default()
            })
            .collect();
        out.push(json!({
            "survey_id": s.id,
            "form": s.form,
            "title": s.title,
            "enabled": s.enabled,
            "save_and_return": s.save_and_return,
            "edit_completed_response": s.edit_completed_response,
            "queue": queue,
        }));
    }
    Ok(Value::Array(out))
}

/// `GET /sandbox/projects/{pid}/surveys`.
async fn list_surveys(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(pid): Path<u64>,
) -> Answer {
    run_db(app, headers, move |state, conn, _| {
        let project = project_mut(state, pid)?.clone();
        survey_json(conn, &project)
    })
    .await
}

#[derive(Deserialize)]
struct EnableSurvey {
    form: String,
    #[serde(default)]
    title: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    save_and_return: bool,
    #[serde(default)]
    edit_completed_response: bool,
    #[serde(default)]
    queue: bool,
}

fn yes() -> bool {
    true
}

/// `POST /sandbox/projects/{pid}/surveys`.
async fn enable_survey(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(pid): Path<u64>,
    Json(body): Json<EnableSurvey>,
) -> Answer {
    run_db(app, headers, move |state, conn, _| {
        let project = project_mut(state, pid)?;
        if !project.forms().contains(&body.form) {
            return Err(AdminError::bad(format!(
                "project {pid} has no instrument {:?}",
                body.form
            )));
        }
        if !project.surveys_enabled {
            project.surveys_enabled = true;
        }
        let project = project.clone();
        state.touch_project(pid);
        let title = if body.title.trim().is_empty() {
            crate::api::metadata::form_label(&project, &body.form)
        } else {
            body.title.clone()
        };
        let id = sql(surveys::enable(
            conn,
            pid,
            &SurveySettings {
                form: body.form.clone(),
                title,
                enabled: body.enabled,
                save_and_return: body.save_and_return,
                edit_completed_response: body.edit_completed_response,
            },
        ))?;
        let events: Vec<i64> = if !body.queue {
            Vec::new()
        } else if project.is_longitudinal {
            project
                .events
                .iter()
                .filter(|e| e.forms.contains(&body.form))
                .map(|e| e.id)
                .collect()
        } else {
            vec![store::CLASSIC_EVENT]
        };
        sql(surveys::set_queue(conn, id, &events))?;
        survey_json(conn, &project)
    })
    .await
}

#[derive(Deserialize)]
struct Response {
    record: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    instance: Option<i64>,
    #[serde(default = "yes")]
    completed: bool,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    identifier: Option<String>,
}

/// `POST /sandbox/projects/{pid}/surveys/{form}/responses`.
async fn submit_response(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((pid, form)): Path<(u64, String)>,
    Json(body): Json<Response>,
) -> Answer {
    run_db(app, headers, move |state, conn, now| {
        let project = project_mut(state, pid)?.clone();
        let survey = sql(surveys::survey_of(conn, &project, &form))?.ok_or_else(|| {
            AdminError::not_found(format!(
                "{form:?} is not a survey of project {pid} (POST /sandbox/projects/{pid}/surveys first)"
            ))
        })?;
        if sql(store::record_group(conn, pid, &body.record))?.is_none() {
            return Err(AdminError::not_found(format!(
                "project {pid} has no record {:?} (import it first)",
                body.record
            )));
        }
        let event_id = if project.is_longitudinal {
            let event = if body.event.is_empty() {
                project.events.first()
            } else {
                project.event_by_unique(&body.event)
            };
            let event = event.ok_or_else(|| {
                AdminError::bad(format!("project {pid} has no event {:?}", body.event))
            })?;
            if !event.forms.contains(&form) {
                return Err(AdminError::bad(format!(
                    "the event {:?} does not hold the instrument {form:?}",
                    body.event
                )));
            }
            event.id
        } else {
            store::CLASSIC_EVENT
        };
        let instance = body.instance.unwrap_or(1);
        if instance < 1 {
            return Err(AdminError::bad("instance is a number from 1"));
        }
        let time = body.time.clone().unwrap_or_else(|| now.second.clone());
        let ok = time.len() == 19
            && time.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                10 => b == b' ',
                13 | 16 => b == b':',
                _ => b.is_ascii_digit(),
            });
        if !ok {
            return Err(AdminError::bad("time is YYYY-MM-DD HH:MM:SS"));
        }
        sql(surveys::submit(
            conn,
            survey.id,
            &Submission {
                record: body.record.clone(),
                event_id,
                instance,
                time: time.clone(),
                completed: body.completed,
                email: body.email.clone(),
                identifier: body.identifier.clone(),
            },
        ))?;
        Ok(json!({
            "record": body.record,
            "form": form,
            "event_id": event_id,
            "instance": instance,
            "first_submit_time": time,
            "completed": body.completed,
        }))
    })
    .await
}

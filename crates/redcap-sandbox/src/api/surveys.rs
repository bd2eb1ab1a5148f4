//! Survey methods: `surveyLink`, `surveyQueueLink`, `surveyAccessCode`,
//! `surveyReturnCode`, `participantList` (storage in [`crate::surveys`]).
//!
//! Read in REDCap 15.7.6's `API/surveyLink/export.php`,
//! `API/surveyQueueLink/export.php`, `API/surveyAccessCode/export.php`,
//! `API/surveyReturnCode/export.php`, `API/participantList/export.php` and
//! `Classes/REDCap.php` (facts only):
//!
//! - every method needs the Manage Survey Participants right (403), after
//!   the entry gate's API Export;
//! - checks, in order: `record` (missing, then unknown — the whole project,
//!   no DAG check), `instrument` (missing, unknown, not a survey), `event`
//!   in a longitudinal project (missing, unknown; for links and access
//!   codes, an event that does not hold the instrument), then the
//!   method's own (the queue enabled; "Save & Return Later" on);
//! - `repeat_instance` counts only where the instrument or event repeats;
//! - the link, code or queue link is the plain body (PHP's default type,
//!   `text/html; charset=UTF-8`); the participant list follows `format`;
//! - each logs a Manage/Design row "Download survey link (API)" (queue
//!   link, access code, return code, participant list) with the record
//!   (the participant list puts the instrument's name there, as REDCap's
//!   call does).

use redcap::ApiError;

use super::Ctx;
use super::file_repository::natural_cmp;
use crate::db::LogKind;
use crate::format::{Format, Reply};
use crate::store::{self, CLASSIC_EVENT};
use crate::surveys::{self, Survey};

/// PHP's default answer type: the survey methods `print` their answer.
const PLAIN: &str = "text/html; charset=UTF-8";

/// Which method is checking its parameters (their texts differ a little).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Link,
    AccessCode,
    ReturnCode,
}

/// A record's survey slot, checked.
struct Slot {
    record: String,
    group: Option<u64>,
    survey: Survey,
    event_id: i64,
    instance: i64,
}

fn participants_right(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.caller.rights.manage_survey_participants {
        Ok(())
    } else {
        Err(ApiError::NoSurveyParticipantsRight)
    }
}

/// `record`, checked: missing, then unknown in the project. Link and
/// access code trim it, the others do not (REDCap's handlers differ).
fn record(ctx: &mut Ctx, trim: bool) -> Result<(String, Option<u64>), ApiError> {
    let raw = ctx.post.str("record");
    let record = if trim { raw.trim() } else { raw }.to_owned();
    if record.is_empty() {
        return Err(ApiError::SurveyParameterMissing {
            parameter: "record",
        });
    }
    let pid = ctx.pid();
    match ctx.sql(|c| store::record_group(c, pid, &record))? {
        Some(group) => Ok((record, group)),
        None => Err(ApiError::FileRecordMissing { record }),
    }
}

/// `instrument`, checked: missing, unknown, not a survey.
fn instrument(ctx: &mut Ctx, trim: bool, quoted: bool) -> Result<Survey, ApiError> {
    let raw = ctx.post.str("instrument");
    let form = if trim { raw.trim() } else { raw }.to_owned();
    if form.is_empty() {
        return Err(ApiError::SurveyParameterMissing {
            parameter: "instrument",
        });
    }
    if !ctx.project().forms().contains(&form) {
        return Err(ApiError::InvalidInstrument);
    }
    let project = ctx.project().clone();
    match ctx.sql(|c| surveys::survey_of(c, &project, &form))? {
        Some(s) => Ok(s),
        None if quoted => Err(ApiError::NotASurveyQuoted { form }),
        None => Err(ApiError::NotASurvey { form }),
    }
}

/// `event`: required in a longitudinal project (the classic project's one
/// event otherwise); `designated` also refuses an event without the
/// instrument.
fn event(ctx: &Ctx, trim: bool, form: &str, designated: bool) -> Result<i64, ApiError> {
    let project = ctx.project();
    if !project.is_longitudinal {
        return Ok(CLASSIC_EVENT);
    }
    let raw = ctx.post.str("event");
    let name = if trim { raw.trim() } else { raw };
    if name.is_empty() {
        return Err(ApiError::SurveyParameterMissing { parameter: "event" });
    }
    let event = project
        .event_by_unique(name)
        .ok_or(ApiError::InvalidEvent)?;
    if designated && !event.forms.iter().any(|f| f == form) {
        return Err(ApiError::SurveyNotInEvent {
            form: form.to_owned(),
            event: name.to_owned(),
        });
    }
    Ok(event.id)
}

/// `repeat_instance`: a number above 0 where the instrument or the event
/// repeats, else 1.
fn instance(ctx: &Ctx, event_id: i64, form: &str) -> i64 {
    let project = ctx.project();
    let repeats = project.repeats_form(event_id, form)
        || (project.is_longitudinal && project.repeats_event(event_id));
    if !repeats {
        return 1;
    }
    let raw = ctx.post.str("repeat_instance").trim();
    raw.parse::<i64>()
        .ok()
        .or_else(|| raw.parse::<f64>().ok().map(|f| f as i64))
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

fn slot(ctx: &mut Ctx, method: Method) -> Result<Slot, ApiError> {
    participants_right(ctx)?;
    let trim = method != Method::ReturnCode;
    let (record, group) = record(ctx, trim)?;
    let survey = instrument(ctx, trim, method == Method::ReturnCode)?;
    let event_id = event(ctx, trim, &survey.form, method != Method::ReturnCode)?;
    let instance = instance(ctx, event_id, &survey.form);
    Ok(Slot {
        record,
        group,
        survey,
        event_id,
        instance,
    })
}

/// The public URL's survey page (`<public URL>surveys/`).
fn survey_page(ctx: &Ctx) -> String {
    format!("{}surveys/", ctx.config.public_url())
}

fn log_download(ctx: &mut Ctx, what: &str, record: String, group: Option<u64>) {
    let details = ctx.api_label(what);
    ctx.log(
        LogKind::Manage,
        "Manage/Design ",
        details,
        Some(record),
        group,
    );
}

/// `surveyLink`: `<public URL>surveys/?s=<hash>`.
pub fn link(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let s = slot(ctx, Method::Link)?;
    let (_, hash) =
        ctx.sql(|c| surveys::participant_for(c, s.survey.id, s.event_id, &s.record, s.instance))?;
    let link = format!("{}?s={hash}", survey_page(ctx));
    log_download(ctx, "Download survey link", s.record, s.group);
    Ok(Reply::text(200, PLAIN, link))
}

/// `surveyAccessCode`: the participant's 9-character code.
pub fn access_code(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let s = slot(ctx, Method::AccessCode)?;
    let code = ctx.sql(|c| {
        let (participant, _) =
            surveys::participant_for(c, s.survey.id, s.event_id, &s.record, s.instance)?;
        surveys::access_code(c, participant)
    })?;
    log_download(ctx, "Download survey access code", s.record, s.group);
    Ok(Reply::text(200, PLAIN, code))
}

/// `surveyReturnCode`: the response's 8-character code ("Save & Return
/// Later" must be on).
pub fn return_code(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let s = slot(ctx, Method::ReturnCode)?;
    if !s.survey.save_and_return {
        return Err(ApiError::SaveAndReturnDisabled);
    }
    let code =
        ctx.sql(|c| surveys::return_code(c, s.survey.id, s.event_id, &s.record, s.instance))?;
    log_download(ctx, "Download survey return code", s.record, s.group);
    Ok(Reply::text(200, PLAIN, code))
}

/// `surveyQueueLink`: `<public URL>surveys/?sq=<hash>` (the queue must be
/// enabled).
pub fn queue_link(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    participants_right(ctx)?;
    let (record, group) = record(ctx, false)?;
    let project = ctx.project().clone();
    if !ctx.sql(|c| surveys::queue_enabled(c, &project))? {
        return Err(ApiError::SurveyQueueDisabled);
    }
    let pid = ctx.pid();
    let hash = ctx.sql(|c| surveys::queue_hash(c, pid, &record))?;
    let link = format!("{}?sq={hash}", survey_page(ctx));
    log_download(ctx, "Download survey queue link", record, group);
    Ok(Reply::text(200, PLAIN, link))
}

/// `participantList`: the survey's participants in the event, shaped and
/// ordered as REDCap's `REDCap::getParticipantList` (every record gets a
/// participant row the first time, as REDCap's list does).
pub fn participant_list(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    participants_right(ctx)?;
    let survey = instrument(ctx, false, false)?;
    let event_id = event(ctx, false, &survey.form, false)?;
    let project = ctx.project().clone();
    let list = List {
        repeating: project.repeats_form(event_id, &survey.form) || project.repeats_event(event_id),
        queue: ctx.sql(|c| surveys::queue_enabled(c, &project))?,
        page: survey_page(ctx),
        pid: ctx.pid(),
        survey,
        event_id,
    };
    list.give_every_record_a_row(ctx, &project)?;
    let participants = list.participants(ctx, &project)?;
    let rows = list.rows(ctx, &participants)?;
    let body = match ctx.format {
        Format::Json => json_list(&rows),
        Format::Csv => csv_list(&list.header(), &rows),
        Format::Xml => xml_list(&rows),
    };
    let details = ctx.api_label("Download survey participant list");
    let form = list.survey.form;
    ctx.log(LogKind::Manage, "Manage/Design ", details, Some(form), None);
    Ok(Reply::ok(ctx.format, body))
}

/// A participant list being made: the survey, its event, and what its
/// rows show.
struct List {
    survey: Survey,
    event_id: i64,
    pid: u64,
    /// The instrument or the event repeats: rows have `repeat_instance`.
    repeating: bool,
    /// The survey queue is enabled: rows have `survey_queue_link`.
    queue: bool,
    /// `<public URL>surveys/`.
    page: String,
}

/// One row of the list: (column, value) in REDCap's order.
type Row = Vec<(&'static str, Cell)>;

impl List {
    /// Every record (with several arms, those with data in the event's
    /// arm: REDCap keeps a record list per arm) gets a participant row: one
    /// per instance of the instrument with a form status where it repeats,
    /// else instance 1.
    fn give_every_record_a_row(
        &self,
        ctx: &mut Ctx,
        project: &crate::db::Project,
    ) -> Result<(), ApiError> {
        let arm_events: Option<Vec<i64>> = (project.arms.len() > 1).then(|| {
            let arm = project
                .events
                .iter()
                .find(|e| e.id == self.event_id)
                .map(|e| e.arm_num);
            project
                .events
                .iter()
                .filter(|e| Some(e.arm_num) == arm)
                .map(|e| e.id)
                .collect()
        });
        let (pid, event_id) = (self.pid, self.event_id);
        let status = format!("{}_complete", self.survey.form);
        ctx.sql(|c| {
            let mut records: Vec<String> = c
                .prepare_cached(
                    "SELECT record FROM redcap_record_list WHERE project_id = ?1 AND arm = ?2",
                )?
                .query_map(rusqlite::params![pid, store::CLASSIC_ARM], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if let Some(events) = &arm_events {
                let mut in_arm: std::collections::HashSet<String> =
                    std::collections::HashSet::new();
                for e in events {
                    let found: Vec<String> = c
                        .prepare_cached(
                            "SELECT DISTINCT record FROM redcap_data WHERE project_id = ?1
                             AND event_id = ?2",
                        )?
                        .query_map(rusqlite::params![pid, e], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?;
                    in_arm.extend(found);
                }
                records.retain(|r| in_arm.contains(r.as_str()));
            }
            records.sort_by(|a, b| natural_cmp(a, b));
            for record in records {
                let mut instances: Vec<i64> = if self.repeating {
                    c.prepare_cached(
                        "SELECT DISTINCT instance FROM redcap_data WHERE project_id = ?1
                         AND record = ?2 AND event_id = ?3 AND field_name = ?4 AND value <> ''",
                    )?
                    .query_map(rusqlite::params![pid, record, event_id, status], |r| {
                        r.get(0)
                    })?
                    .collect::<rusqlite::Result<_>>()?
                } else {
                    Vec::new()
                };
                if instances.is_empty() {
                    instances.push(1);
                }
                for i in instances {
                    surveys::participant_for(c, self.survey.id, event_id, &record, i)?;
                }
            }
            Ok(())
        })
    }

    /// The participants the caller sees, in REDCap's order: email, record,
    /// instance, participant id, in PHP's natural order. A follow-up survey
    /// lists only participants with a record; a DAG member only those of
    /// its DAG's records (and those without a record).
    fn participants(
        &self,
        ctx: &mut Ctx,
        project: &crate::db::Project,
    ) -> Result<Vec<surveys::Participant>, ApiError> {
        let mut list = ctx.sql(|c| surveys::participants(c, self.survey.id, self.event_id))?;
        let first_form = project.forms().first().cloned().unwrap_or_default();
        let followup = !(self.survey.form == first_form
            && self.event_id == surveys::first_in_arm(project, self.event_id));
        list.retain(|p| !(followup && p.record.is_empty()) && (self.repeating || p.instance <= 1));
        let key = |p: &surveys::Participant| {
            format!("{}--{}--{}--{}", p.email, p.record, p.instance, p.id)
        };
        list.sort_by(|a, b| natural_cmp(&key(a), &key(b)));
        let Some(g) = ctx.caller.group_id else {
            return Ok(list);
        };
        let mut kept = Vec::with_capacity(list.len());
        for p in list {
            let group = if p.record.is_empty() {
                Some(Some(g))
            } else {
                let pid = self.pid;
                ctx.sql(|c| store::record_group(c, pid, &p.record))?
            };
            if group == Some(Some(g)) {
                kept.push(p);
            }
        }
        Ok(kept)
    }

    /// The rows, in the columns' order (the access codes made now if new).
    fn rows(&self, ctx: &mut Ctx, list: &[surveys::Participant]) -> Result<Vec<Row>, ApiError> {
        let mut occurrences: std::collections::HashMap<String, (usize, usize)> = Default::default();
        for p in list.iter().filter(|p| !p.email.is_empty()) {
            occurrences.entry(p.email.to_lowercase()).or_default().0 += 1;
        }
        let mut rows = Vec::with_capacity(list.len());
        for p in list {
            let code = ctx.sql(|c| surveys::access_code(c, p.id))?;
            let queue_link = if self.queue && !p.record.is_empty() {
                let pid = self.pid;
                let hash = ctx.sql(|c| surveys::queue_hash(c, pid, &p.record))?;
                format!("{}?sq={hash}", self.page)
            } else {
                String::new()
            };
            let occurrence = match occurrences.get_mut(&p.email.to_lowercase()) {
                Some((total, current)) if *total > 1 => {
                    *current += 1;
                    *current
                }
                _ => 1,
            };
            // A completed response that cannot be edited has no code or link.
            let closed = p.response == 2 && !self.survey.edit_completed_response;
            let text = |s: String| Cell::Text(s);
            let mut row: Row = vec![
                ("email", text(p.email.clone())),
                ("email_occurrence", text(occurrence.to_string())),
                ("identifier", text(p.identifier.clone())),
                // REDCap shows the record only where the participant has an
                // identifier (or an email from a designated email field,
                // which the sandbox does not have).
                (
                    "record",
                    text(if p.identifier.is_empty() {
                        String::new()
                    } else {
                        p.record.clone()
                    }),
                ),
            ];
            if self.repeating {
                row.push(("repeat_instance", text(p.instance.to_string())));
            }
            row.push(("invitation_sent_status", Cell::Int(0)));
            row.push(("invitation_send_time", text(String::new())));
            row.push(("response_status", Cell::Int(i64::from(p.response))));
            row.push((
                "survey_access_code",
                text(if closed { String::new() } else { code }),
            ));
            row.push((
                "survey_link",
                text(if closed {
                    String::new()
                } else {
                    format!("{}?s={}", self.page, p.hash)
                }),
            ));
            if self.queue {
                row.push(("survey_queue_link", text(queue_link)));
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// The columns (CSV's header, also with no participant).
    fn header(&self) -> Vec<&'static str> {
        let mut header = vec!["email", "email_occurrence", "identifier", "record"];
        if self.repeating {
            header.push("repeat_instance");
        }
        header.extend([
            "invitation_sent_status",
            "invitation_send_time",
            "response_status",
            "survey_access_code",
            "survey_link",
        ]);
        if self.queue {
            header.push("survey_queue_link");
        }
        header
    }
}

/// A participant-list value: JSON writes the statuses as numbers.
enum Cell {
    Text(String),
    Int(i64),
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
        }
    }
}

fn json_list(rows: &[Row]) -> String {
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let mut m = serde_json::Map::new();
            for (k, v) in row {
                let v = match v {
                    Cell::Text(s) => serde_json::Value::String(s.clone()),
                    Cell::Int(n) => serde_json::Value::from(*n),
                };
                m.insert((*k).to_owned(), v);
            }
            serde_json::Value::Object(m)
        })
        .collect();
    crate::format::php_json(&serde_json::Value::Array(items))
}

/// PHP's `fputcsv`: a field is quoted when it holds the delimiter, a
/// quote, a line break, a tab or a space.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r', '\t', ' ', '\\']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_list(header: &[&str], rows: &[Row]) -> String {
    let mut out = String::new();
    let line = |fields: Vec<String>, out: &mut String| {
        out.push_str(&fields.join(","));
        out.push('\n');
    };
    line(header.iter().map(|h| csv_field(h)).collect(), &mut out);
    for row in rows {
        line(
            row.iter().map(|(_, v)| csv_field(&v.text())).collect(),
            &mut out,
        );
    }
    out
}

/// `<participants>` with each value in CDATA, as REDCap writes it.
fn xml_list(rows: &[Row]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<participants>\n");
    for row in rows {
        out.push_str("<participant>");
        for (k, v) in row {
            let v = v.text().replace("]]>", "]]]]><![CDATA[>");
            out.push_str(&format!("<{k}><![CDATA[{v}]]></{k}>"));
        }
        out.push_str("</participant>\n");
    }
    out.push_str("</participants>");
    out
}

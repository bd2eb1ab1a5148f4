//! The File Repository: Create Folder, List, Export, Import and Delete
//! (`content=fileRepository`, `action=createFolder|list|export|import|delete`).
//!
//! `redcap-api.md` names the methods (§1.4, §1.5, the entry gate of §1.6,
//! §7.2); their behaviour was read in REDCap 15.7.6's
//! `API/fileRepository/*.php`, `Classes/FileRepository.php` and
//! `API/index.php` (facts only, no code taken):
//!
//! - entry gate: `export` needs API Export; `import`, `createFolder` and
//!   `delete` need API Import; `list` needs neither (REDCap's gate skips it);
//! - every action then needs the File Repository right (403);
//! - a folder may be restricted to one DAG and/or one role; a user in a DAG
//!   (or role) sees only folders unrestricted or restricted to theirs, and
//!   `folder_id` of any other folder answers 400. Only the folder itself is
//!   checked, not its parents; a file's access is its folder's;
//! - `list` answers one directory: its folders, then its files, each sorted
//!   by name in natural, case-insensitive order; files in the Recycle Bin
//!   are left out;
//! - `export` and `delete` check only that `doc_id` is a stored file of the
//!   project — not the folder's DAG or role, and not that the file belongs to
//!   the repository at all: a File Upload field's file can be downloaded by
//!   its doc id. The sandbox reproduces this (`docs/sandbox.md`);
//! - `delete` moves the file to the Recycle Bin (REDCap keeps it 30 days;
//!   it can still be exported meanwhile); the sandbox purges files deleted
//!   more than 30 days ago at the next File Repository request of the
//!   project, their bytes unlinked after the commit that forgot them;
//! - `import` stores the file under its sanitised name, renamed `name (1).ext`,
//!   `name (2).ext`… when the directory already holds that name.
//!
//! Storage: `redcap_docs_folders` (REDCap's table) and `redcap_docs` (REDCap's
//! `redcap_docs`, with its `redcap_docs_to_edocs` and
//! `redcap_docs_folders_files` links folded in as the columns `doc_id` and
//! `folder_id`). The bytes are an edoc like a File Upload field's
//! (`db::State::add_doc`: written and fsynced before the commit of the row).

use std::cmp::Ordering;

use redcap::ApiError;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::Ctx;
use crate::db::{Doc, LogKind, doc_path};
use crate::format::{Format, Reply};

/// The File Repository's tables (created with the others at start).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS redcap_docs_folders (
    folder_id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    parent_folder_id INTEGER,
    dag_id INTEGER,
    role_id INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS redcap_docs_folders_parent
    ON redcap_docs_folders (project_id, parent_folder_id);
CREATE TABLE IF NOT EXISTS redcap_docs (
    docs_id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    doc_id INTEGER NOT NULL UNIQUE,
    folder_id INTEGER,
    docs_name TEXT NOT NULL,
    docs_date TEXT NOT NULL,
    docs_comment TEXT NOT NULL,
    delete_date TEXT
);
CREATE INDEX IF NOT EXISTS redcap_docs_folder ON redcap_docs (project_id, folder_id);
";

/// How long a deleted file stays in the Recycle Bin.
const RECYCLE_DAYS: i64 = 30;
/// The most characters REDCap keeps of a folder name.
const FOLDER_NAME_MAX: usize = 150;

/// The caller's DAG and role, which restrict the folders they reach
/// (`None`: not in one; administrators are never restricted).
struct Reach {
    group_id: Option<u64>,
    role_id: Option<u64>,
}

fn reach(ctx: &Ctx) -> Reach {
    if ctx.caller.admin {
        return Reach {
            group_id: None,
            role_id: None,
        };
    }
    let role_id = ctx
        .project()
        .members
        .get(&ctx.caller.username)
        .and_then(|m| m.role_id);
    Reach {
        group_id: ctx.caller.group_id,
        role_id,
    }
}

/// REDCap's `isinteger`: an optional minus sign and digits.
fn integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The File Repository right, checked first by every action.
fn check_right(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.caller.rights.file_repository {
        Ok(())
    } else {
        Err(ApiError::NoFileRepositoryRight)
    }
}

/// Whether the caller reaches a folder (`None`: the top level, always).
/// Only the folder itself is checked, as REDCap does.
fn folder_reachable(
    conn: &Connection,
    pid: u64,
    folder: Option<i64>,
    reach: &Reach,
) -> rusqlite::Result<bool> {
    let Some(folder) = folder else {
        return Ok(true);
    };
    conn.prepare_cached(
        "SELECT 1 FROM redcap_docs_folders WHERE folder_id = ?1 AND project_id = ?2
             AND (?3 IS NULL OR dag_id IS NULL OR dag_id = ?3)
             AND (?4 IS NULL OR role_id IS NULL OR role_id = ?4)",
    )?
    .query_row(params![folder, pid, reach.group_id, reach.role_id], |_| {
        Ok(())
    })
    .optional()
    .map(|r| r.is_some())
}

/// The folder named by `folder_id` (an integer, else the top level), after
/// the reach check.
fn requested_folder(ctx: &mut Ctx) -> Result<Option<i64>, ApiError> {
    let raw = ctx.post.str("folder_id").to_owned();
    let folder = integer(&raw);
    let pid = ctx.pid();
    let reach = reach(ctx);
    if ctx.sql(|c| folder_reachable(c, pid, folder, &reach))? {
        Ok(folder)
    } else {
        Err(ApiError::RepositoryFolderInaccessible { folder_id: raw })
    }
}

/// A Manage/Design row. REDCap also stores the file and folder names with
/// it (`data_values`), but Export Logging shows a Manage row's description
/// only (§7.1), so only that is kept.
fn log(ctx: &mut Ctx, description: &str) {
    ctx.log_manage(LogKind::Manage, description);
}

/// Removes, for good, the project's files deleted more than 30 days ago
/// (REDCap's cron empties its Recycle Bin so); their bytes are unlinked
/// after the commit.
fn purge_recycle_bin(ctx: &mut Ctx) -> Result<(), ApiError> {
    let cutoff = jiff::ZonedDateTime::now()
        .with_time_zone(ctx.config.timezone.clone())
        .checked_sub(jiff::Span::new().days(RECYCLE_DAYS))
        .map(|z| z.strftime("%Y-%m-%d %H:%M:%S").to_string());
    let Ok(cutoff) = cutoff else {
        return Ok(());
    };
    let pid = ctx.pid();
    let expired: Vec<u64> = ctx.sql(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT doc_id FROM redcap_docs
             WHERE project_id = ?1 AND delete_date IS NOT NULL AND delete_date < ?2",
        )?;
        let ids = stmt.query_map(params![pid, cutoff], |r| r.get(0))?;
        ids.collect()
    })?;
    for doc_id in expired {
        ctx.sql(|c| {
            c.prepare_cached("DELETE FROM redcap_docs WHERE doc_id = ?1")?
                .execute([doc_id])
                .map(|_| ())
        })?;
        ctx.state.remove_doc(doc_id);
    }
    Ok(())
}

/// What a folder restriction names.
#[derive(Clone, Copy)]
pub(crate) enum Restriction {
    Dag,
    Role,
}

/// Deleting DAGs or roles takes the folders restricted to them along, as
/// REDCap's foreign keys do (`redcap_docs_folders.dag_id` and `role_id`
/// `ON DELETE CASCADE`, RC `Resources/sql/install.sql`): their
/// sub-folders move to the top level (`parent_folder_id ON DELETE SET
/// NULL`) and their files too (the folder link is deleted with the
/// folder), where everyone with the right sees them.
pub(crate) fn drop_restricted_folders(
    ctx: &mut Ctx,
    restriction: Restriction,
    ids: &[u64],
) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Ok(());
    }
    let column = match restriction {
        Restriction::Dag => "dag_id",
        Restriction::Role => "role_id",
    };
    let pid = ctx.pid();
    let ids = serde_json::to_string(ids).unwrap_or_default();
    ctx.sql(|c| {
        let folders = format!(
            "SELECT folder_id FROM redcap_docs_folders
             WHERE project_id = ?1 AND {column} IN (SELECT value FROM json_each(?2))"
        );
        c.execute(
            &format!(
                "UPDATE redcap_docs_folders SET parent_folder_id = NULL
                 WHERE parent_folder_id IN ({folders})"
            ),
            params![pid, ids],
        )?;
        c.execute(
            &format!("UPDATE redcap_docs SET folder_id = NULL WHERE folder_id IN ({folders})"),
            params![pid, ids],
        )?;
        c.execute(
            &format!("DELETE FROM redcap_docs_folders WHERE folder_id IN ({folders})"),
            params![pid, ids],
        )?;
        Ok(())
    })
}

/// Create Folder: `name`, optional `folder_id` (parent), `dag_id`, `role_id`.
pub fn create_folder(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    check_right(ctx)?;
    let parent = requested_folder(ctx)?;
    let raw_name = ctx.post.str("name");
    if raw_name.is_empty() {
        return Err(ApiError::RepositoryFolderNameMissing);
    }
    let raw_parent = ctx.post.str("folder_id");
    if !raw_parent.is_empty() && parent.is_none() {
        return Err(ApiError::RepositoryFolderIdInvalid);
    }
    let name: String = sanitize_file_name(raw_name)
        .chars()
        .take(FOLDER_NAME_MAX)
        .collect();
    let pid = ctx.pid();
    let taken = ctx.sql(|c| {
        c.prepare_cached(
            "SELECT 1 FROM redcap_docs_folders WHERE project_id = ?1 AND name = ?2
                 AND deleted = 0 AND parent_folder_id IS ?3",
        )?
        .query_row(params![pid, name, parent], |_| Ok(()))
        .optional()
    })?;
    if taken.is_some() {
        return Err(ApiError::RepositoryFolderExists { name });
    }
    // An unknown DAG or role id is dropped silently, as REDCap does.
    let project = ctx.project();
    let dag = integer(ctx.post.str("dag_id"))
        .and_then(|id| project.dags.iter().find(|d| d.id as i64 == id))
        .map(|d| (d.id, d.name.clone()));
    let role = integer(ctx.post.str("role_id"))
        .and_then(|id| project.roles.iter().find(|r| r.id as i64 == id))
        .map(|r| (r.id, r.label.clone()));
    let (dag_id, role_id) = (dag.as_ref().map(|d| d.0), role.as_ref().map(|r| r.0));
    let folder_id = ctx.sql(|c| {
        c.prepare_cached(
            "INSERT INTO redcap_docs_folders (project_id, name, parent_folder_id, dag_id, role_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![pid, name, parent, dag_id, role_id])?;
        Ok(c.last_insert_rowid())
    })?;
    log(ctx, "Create folder in File Repository");
    let mut row = Map::new();
    row.insert("folder_id".into(), Value::from(folder_id));
    Ok(Reply::ok(ctx.format, render(ctx.format, &[row])))
}

/// One entry of a listing.
struct Entry {
    id: i64,
    name: String,
}

/// List: the folders (those the caller reaches) and the files of one
/// directory.
pub fn list(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    check_right(ctx)?;
    let folder = requested_folder(ctx)?;
    purge_recycle_bin(ctx)?;
    let pid = ctx.pid();
    let reach = reach(ctx);
    let (mut folders, mut files) = ctx.sql(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT folder_id, name FROM redcap_docs_folders
             WHERE project_id = ?1 AND parent_folder_id IS ?2 AND deleted = 0
                 AND (?3 IS NULL OR dag_id IS NULL OR dag_id = ?3)
                 AND (?4 IS NULL OR role_id IS NULL OR role_id = ?4)",
        )?;
        let folders = stmt
            .query_map(params![pid, folder, reach.group_id, reach.role_id], |r| {
                Ok(Entry {
                    id: r.get(0)?,
                    name: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<Entry>>>()?;
        let mut stmt = c.prepare_cached(
            "SELECT doc_id, docs_name FROM redcap_docs
             WHERE project_id = ?1 AND folder_id IS ?2 AND delete_date IS NULL",
        )?;
        let files = stmt
            .query_map(params![pid, folder], |r| {
                Ok(Entry {
                    id: r.get(0)?,
                    name: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<Entry>>>()?;
        Ok((folders, files))
    })?;
    folders.sort_by(|a, b| natural_cmp(&a.name, &b.name).then(a.id.cmp(&b.id)));
    files.sort_by(|a, b| natural_cmp(&a.name, &b.name).then(a.id.cmp(&b.id)));
    // CSV rows carry both id columns (one empty); JSON and XML only theirs.
    let csv = ctx.format == Format::Csv;
    let mut rows = Vec::with_capacity(folders.len() + files.len());
    let entries = folders
        .iter()
        .map(|e| (e, true))
        .chain(files.iter().map(|e| (e, false)));
    for (e, is_folder) in entries {
        let mut row = Map::new();
        let id = Value::from(e.id);
        match (csv, is_folder) {
            (true, true) => {
                row.insert("folder_id".into(), id);
                row.insert("doc_id".into(), Value::from(""));
            }
            (true, false) => {
                row.insert("folder_id".into(), Value::from(""));
                row.insert("doc_id".into(), id);
            }
            (false, true) => {
                row.insert("folder_id".into(), id);
            }
            (false, false) => {
                row.insert("doc_id".into(), id);
            }
        }
        row.insert("name".into(), Value::from(e.name.clone()));
        rows.push(row);
    }
    let body = render(ctx.format, &rows);
    log(ctx, "Export list of files/folders from File Repository");
    Ok(Reply::ok(ctx.format, body))
}

/// The stored file of the project with this `doc_id` (any edoc of the
/// project, as REDCap's check is).
fn requested_doc(ctx: &Ctx) -> Result<(u64, Doc), ApiError> {
    let doc_id = integer(ctx.post.str("doc_id"))
        .and_then(|d| u64::try_from(d).ok())
        .ok_or(ApiError::RepositoryDocInvalid)?;
    let doc = ctx
        .state
        .docs
        .get(&doc_id)
        .filter(|d| Some(d.project_id) == ctx.caller.project_id)
        .cloned()
        .ok_or(ApiError::RepositoryDocInvalid)?;
    Ok((doc_id, doc))
}

/// Export: the file's bytes, with REDCap's download headers.
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    check_right(ctx)?;
    let (doc_id, doc) = requested_doc(ctx)?;
    let path = doc_path(&ctx.config.data, doc_id);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("cannot read {}: {e}", path.display());
            return Err(ApiError::StoredFileMissing {
                path: path.display().to_string(),
                name: doc.name,
            });
        }
    };
    log(ctx, "Download file from File Repository");
    Ok(Reply {
        status: 200,
        content_type: super::files::download_content_type(&doc.mime_type, &doc.name).into(),
        body: bytes,
        headers: vec![("content-security-policy", "script-src 'none'".into())],
        stream: None,
    })
}

/// Import: the multipart part `file`, into `folder_id` or the top level.
pub fn import(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    check_right(ctx)?;
    let upload = ctx.post.file("file").ok_or(ApiError::NoFileUploaded)?;
    if upload.filename.is_empty() || upload.error != 0 {
        return Err(ApiError::FileUploadProblem);
    }
    let (filename, declared, bytes) = (
        upload.filename.clone(),
        upload.content_type.clone(),
        upload.bytes.clone(),
    );
    let folder = requested_folder(ctx)?;
    purge_recycle_bin(ctx)?;
    let original = uploaded_name(&filename);
    let pid = ctx.pid();
    let name = ctx.sql(|c| free_name(c, pid, folder, &original))?;
    let mime_type = declared
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| super::files::guess_mime(&name).to_owned());
    let doc_id = ctx.state.add_doc(
        Doc {
            project_id: pid,
            name: name.clone(),
            mime_type,
            size: bytes.len() as u64,
        },
        bytes,
    );
    let comment = format!("Uploaded by {}.", ctx.caller.username);
    let date = ctx.now.second.clone();
    ctx.sql(|c| {
        c.prepare_cached(
            "INSERT INTO redcap_docs (project_id, doc_id, folder_id, docs_name, docs_date,
                 docs_comment) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![pid, doc_id, folder, name, date, comment])
        .map(|_| ())
    })?;
    log(ctx, "Upload file to File Repository");
    Ok(Reply::ok(ctx.return_format, String::new()))
}

/// Delete: the file goes to the Recycle Bin (purged 30 days later).
pub fn delete(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    check_right(ctx)?;
    let (doc_id, _) = requested_doc(ctx)?;
    let pid = ctx.pid();
    let now = ctx.now.second.clone();
    let line = format!("Deleted by {} at {now}.", ctx.caller.username);
    // A doc id of a File Upload field's file has no row here: REDCap marks
    // the edoc deleted all the same (its cron would remove the record's file
    // 30 days later); the sandbox answers alike and keeps that file.
    ctx.sql(|c| {
        c.prepare_cached(
            "UPDATE redcap_docs SET delete_date = ?3,
                 docs_comment = trim(docs_comment || char(10) || ?4)
             WHERE doc_id = ?1 AND project_id = ?2",
        )?
        .execute(params![doc_id, pid, now, line])
        .map(|_| ())
    })?;
    log(ctx, "Delete file from File Repository");
    Ok(Reply::ok(ctx.return_format, String::new()))
}

/// The name REDCap stores for an upload: tags dropped, then
/// [`sanitize_file_name`], trimmed.
fn uploaded_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_tag = false;
    for c in name.replace('\\', "").chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    sanitize_file_name(&out).trim().to_owned()
}

/// REDCap's `Files::sanitizeFileName`: characters unsafe in file names
/// removed, `%20` and `+` made `-`, runs of line breaks, tabs and `-` made
/// one `-`, and `.`, `-`, `_` trimmed from both ends. (REDCap also
/// transliterates accented letters; the sandbox keeps them.)
pub(crate) fn sanitize_file_name(name: &str) -> String {
    const UNSAFE: &[char] = &[
        '?', '/', '\\', '<', '>', ':', '"', '*', '|', '~', '`', '!', '«', '»', '”', '“', '\0',
    ];
    let cleaned: String = name.chars().filter(|c| !UNSAFE.contains(c)).collect();
    let cleaned = cleaned.replace("%20", "-").replace('+', "-");
    let mut out = String::with_capacity(cleaned.len());
    let mut in_run = false;
    for c in cleaned.chars() {
        if matches!(c, '\r' | '\n' | '\t' | '-') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out.trim_matches(|c| matches!(c, '.' | '-' | '_'))
        .to_owned()
}

/// The first of `name`, `base (1).ext`, `base (2).ext`… that no file in
/// the directory (outside the Recycle Bin) has.
fn free_name(
    conn: &Connection,
    pid: u64,
    folder: Option<i64>,
    name: &str,
) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare_cached(
        "SELECT 1 FROM redcap_docs WHERE project_id = ?1 AND folder_id IS ?2
             AND docs_name = ?3 AND delete_date IS NULL",
    )?;
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) if !e.is_empty() => (b.trim().to_owned(), format!(".{e}")),
        _ => (name.trim().to_owned(), String::new()),
    };
    let mut candidate = name.to_owned();
    let mut n = 0;
    while stmt.exists(params![pid, folder, candidate])? {
        n += 1;
        candidate = format!("{base} ({n}){ext}");
    }
    Ok(candidate)
}

/// PHP's `natcasesort` order: digit runs compared as numbers, the rest
/// case-insensitively.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (a.peek().copied(), b.peek().copied()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let take = |it: &mut std::iter::Peekable<std::str::Chars>| {
                    let mut s = String::new();
                    while let Some(c) = it.peek().copied().filter(char::is_ascii_digit) {
                        s.push(c);
                        it.next();
                    }
                    s
                };
                let (x, y) = (take(&mut a), take(&mut b));
                let (xt, yt) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                let ord = xt.len().cmp(&yt.len()).then_with(|| xt.cmp(yt));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            (Some(x), Some(y)) => {
                let ord = x.to_lowercase().cmp(y.to_lowercase());
                if ord != Ordering::Equal {
                    return ord;
                }
                a.next();
                b.next();
            }
        }
    }
}

/// The File Repository's answers, as its handlers write them: JSON as PHP
/// encodes it; CSV as REDCap's `arrayToCsv` (header from the first row's
/// keys, fields quoted when PHP's `fputcsv` would, a tab before values that
/// start with `= - + @`, trimmed: no rows is an empty body); XML with root
/// `items`, ids bare and names in CDATA.
fn render(format: Format, rows: &[Map<String, Value>]) -> String {
    match format {
        Format::Json => crate::format::php_json(&Value::Array(
            rows.iter().cloned().map(Value::Object).collect(),
        )),
        Format::Csv => {
            let mut lines = Vec::new();
            if let Some(first) = rows.first() {
                lines.push(
                    first
                        .keys()
                        .map(|k| php_csv_field(k))
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            for r in rows {
                let cells = r.values().map(|v| match v {
                    Value::String(s) if s.starts_with(['=', '-', '+', '@']) => {
                        php_csv_field(&format!("\t{s}"))
                    }
                    Value::String(s) => php_csv_field(s),
                    other => php_csv_field(&other.to_string()),
                });
                lines.push(cells.collect::<Vec<_>>().join(","));
            }
            lines.join("\n").trim().to_owned()
        }
        Format::Xml => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<items>\n");
            for r in rows {
                out.push_str("<item>");
                for (k, v) in r {
                    match v {
                        Value::Number(n) => out.push_str(&format!("<{k}>{n}</{k}>")),
                        Value::String(s) if !s.is_empty() => {
                            out.push_str(&format!("<{k}><![CDATA[{s}]]></{k}>"))
                        }
                        _ => out.push_str(&format!("<{k}></{k}>")),
                    }
                }
                out.push_str("</item>\n");
            }
            out.push_str("</items>\n");
            out
        }
    }
}

/// One CSV field as PHP's `fputcsv` writes it (no escape character):
/// quoted when it holds a comma, quote, space, tab or line break.
fn php_csv_field(s: &str) -> String {
    if s.contains([',', '"', ' ', '\t', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised_as_redcap_does() {
        assert_eq!(sanitize_file_name("a/b:c?.txt"), "abc.txt");
        assert_eq!(
            sanitize_file_name("--my+file%20x\t\n-.pdf"),
            "my-file-x-.pdf"
        );
        assert_eq!(sanitize_file_name("._x_."), "x");
        assert_eq!(uploaded_name(" <b>bold</b> name.txt "), "bold name.txt");
    }

    #[test]
    fn natural_order_ignores_case_and_reads_numbers() {
        let mut names = vec!["file10", "File2", "file1", "b", "A"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["A", "b", "file1", "File2", "file10"]);
    }

    #[test]
    fn answers_follow_redcaps_writers() {
        let folder: Map<String, Value> =
            serde_json::from_str(r#"{"folder_id":3,"name":"New Folder"}"#).unwrap();
        let file: Map<String, Value> =
            serde_json::from_str(r#"{"doc_id":7,"name":"a/b.txt"}"#).unwrap();
        assert_eq!(
            render(Format::Json, &[folder.clone(), file.clone()]),
            r#"[{"folder_id":3,"name":"New Folder"},{"doc_id":7,"name":"a\/b.txt"}]"#
        );
        assert_eq!(
            render(Format::Xml, &[folder]),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<items>\n<item><folder_id>3</folder_id><name><![CDATA[New Folder]]></name></item>\n</items>\n"
        );
        let csv: Map<String, Value> =
            serde_json::from_str(r#"{"folder_id":"","doc_id":7,"name":"=x y"}"#).unwrap();
        assert_eq!(
            render(Format::Csv, &[csv]),
            "folder_id,doc_id,name\n,7,\"\t=x y\""
        );
        assert_eq!(render(Format::Csv, &[]), "");
    }
}

//! REDCap XML: CDISC ODM 1.3.1 with REDCap's `redcap:` extensions, the
//! file REDCap's "Export entire project (metadata & data)" writes and
//! Create Project's `odm` parameter reads (§2.5).
//!
//! [`read`] turns a file into an [`OdmProject`]: the project's settings
//! (`GlobalVariables`), its data dictionary (`FormDef` → `ItemGroupDef`
//! → `ItemDef`, with `CodeList`s and `RangeCheck`s), arms and events
//! (`StudyEventDef`, with their `FormRef`s), the repeating setup, Data
//! Access Groups, roles, reports and the records (`ClinicalData`).
//! Elements the sandbox does not keep (survey settings beyond the few of
//! [`crate::surveys::SurveySettings`], multilanguage …) are skipped.
//! [`write_metadata`] and [`write_record`] write the same
//! shape back, so a project read from a file it wrote writes that file
//! again.
//!
//! Files are read whole into an element tree (a project file, records
//! included, is read once at creation).

use std::collections::HashMap;
use std::fmt::Write as _;

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::db::{Arm, Field};

/// An element: its qualified name, attributes, text and children.
#[derive(Debug, Default)]
pub struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    /// An attribute's value (`""` if absent).
    pub fn attr(&self, name: &str) -> &str {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// The first child of that name.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The children of that name.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of a child (`""` if absent).
    fn child_text(&self, name: &str) -> &str {
        self.child(name).map(|c| c.text.as_str()).unwrap_or("")
    }
}

/// Parses a document into its root element.
pub fn parse(xml: &str) -> Result<Node, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<(Node, String)> = Vec::new();
    let mut root = None;
    let start = |e: &quick_xml::events::BytesStart| -> Result<Node, String> {
        let mut node = Node {
            name: e.name().as_ref().to_owned(),
            ..Node::default()
        };
        for a in e.attributes() {
            let a = a.map_err(|e| e.to_string())?;
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?;
            node.attrs
                .push((a.key.as_ref().to_owned(), value.into_owned()));
        }
        Ok(node)
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} at byte {}", reader.buffer_position()))?;
        let done = match event {
            Event::Start(e) => {
                if stack.len() > 32 {
                    return Err("elements are nested too deeply".into());
                }
                stack.push((start(&e)?, String::new()));
                None
            }
            Event::Empty(e) => Some(start(&e)?),
            Event::Text(t) => {
                if let Some((_, raw)) = stack.last_mut() {
                    raw.push_str(&t.into_inner());
                }
                None
            }
            Event::GeneralRef(r) => {
                if let Some((_, raw)) = stack.last_mut() {
                    raw.push('&');
                    raw.push_str(&r.into_inner());
                    raw.push(';');
                }
                None
            }
            Event::CData(c) => {
                if let Some((_, raw)) = stack.last_mut() {
                    raw.push_str(&escape(&c.into_inner()));
                }
                None
            }
            Event::End(_) => {
                let (mut node, raw) = stack.pop().ok_or("unbalanced end tag")?;
                node.text = quick_xml::escape::unescape(&raw)
                    .map_err(|e| e.to_string())?
                    .into_owned();
                Some(node)
            }
            Event::Eof => break,
            _ => None,
        };
        if let Some(node) = done {
            match stack.last_mut() {
                Some((parent, _)) => parent.children.push(node),
                None if root.is_none() => root = Some(node),
                None => return Err("more than one root element".into()),
            }
        }
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    root.ok_or_else(|| "the document has no root element".into())
}

/// XML escaping of text and attribute values (newlines kept through
/// attribute normalisation as character references).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#039;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

/// An event as a file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct OdmEvent {
    pub unique_name: String,
    pub arm_num: u32,
    pub name: String,
    pub day_offset: f64,
    pub offset_min: f64,
    pub offset_max: f64,
    pub custom_label: String,
    pub forms: Vec<String>,
}

/// A record's values: (unique event name or `""`, instance, repeating
/// instrument or `""`, export column, value).
#[derive(Debug, Default)]
pub struct OdmRecord {
    pub name: String,
    /// The unique name of its Data Access Group.
    pub dag: String,
    pub values: Vec<OdmValue>,
}

/// One value of a record.
#[derive(Debug)]
pub struct OdmValue {
    pub event: String,
    pub instance: i64,
    pub field: String,
    pub value: String,
    /// A File Upload field's file (`ItemDataBase64Binary`): its name, type
    /// and base64 content; `value` is then empty.
    pub file: Option<OdmFile>,
}

/// A file carried in a REDCap XML file.
#[derive(Debug)]
pub struct OdmFile {
    pub name: String,
    pub mime_type: String,
    pub base64: String,
}

/// What a REDCap XML file holds that the sandbox keeps.
#[derive(Debug, Default)]
pub struct OdmProject {
    pub title: String,
    pub purpose: Option<u8>,
    pub purpose_other: String,
    pub notes: String,
    pub autonumbering: Option<bool>,
    pub surveys_enabled: bool,
    pub metadata: Vec<Field>,
    /// Instrument labels (`FormDef/@Name`), by instrument.
    pub form_labels: Vec<(String, String)>,
    pub arms: Vec<Arm>,
    pub events: Vec<OdmEvent>,
    /// (unique event name or `""`, instrument or `""`, custom label).
    pub repeating: Vec<(String, String, String)>,
    /// DAG labels.
    pub dags: Vec<String>,
    /// User roles as Import User Roles rows (`role_label`, rights by their
    /// API names, `forms`/`forms_export` objects).
    pub roles: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Reports (`redcap:Reports`: title, fields, filter logic).
    pub reports: Vec<crate::api::reports::NewReport>,
    pub records: Vec<OdmRecord>,
    /// Surveys (`redcap:SurveysGroup`): their settings.
    pub surveys: Vec<crate::surveys::SurveySettings>,
    /// The survey queue (`redcap:SurveysQueueGroup`): (instrument, unique
    /// event name, active).
    pub survey_queue: Vec<(String, String, bool)>,
}

/// A role's rights: the attribute of `redcap:UserRoles` (REDCap's column
/// name) and the API's name, where they differ; the others are the same.
const ROLE_ATTRIBUTES: &[(&str, &str)] = &[
    ("data_logging", "logging"),
    ("graphical", "stats_and_charts"),
    ("participants", "manage_survey_participants"),
    ("data_quality_design", "data_quality_create"),
    ("lock_record_customize", "lock_records_customization"),
    ("lock_record", "lock_records"),
    ("lock_record_multiform", "lock_records_all_forms"),
];

/// Role rights carried under the same name in the file and the API.
const ROLE_SAME: &[&str] = &[
    "design",
    "alerts",
    "user_rights",
    "data_access_groups",
    "reports",
    "calendar",
    "data_import_tool",
    "data_comparison_tool",
    "email_logging",
    "file_repository",
    "data_quality_execute",
    "api_export",
    "api_import",
    "api_modules",
    "mobile_app",
    "mobile_app_download_data",
    "record_create",
    "record_rename",
    "record_delete",
];

/// `[form_1,2][form_2,1]` → `{"form_1": "2", "form_2": "1"}`.
fn form_rights(list: &str) -> serde_json::Map<String, serde_json::Value> {
    list.split(['[', ']'])
        .filter_map(|p| p.split_once(','))
        .map(|(f, v)| (f.trim().to_owned(), v.trim().to_owned().into()))
        .collect()
}

/// A `redcap:UserRoles` element as an Import User Roles row.
fn role_row(node: &Node) -> serde_json::Map<String, serde_json::Value> {
    let mut row = serde_json::Map::new();
    row.insert("role_label".into(), node.attr("role_name").into());
    for (file, api) in ROLE_ATTRIBUTES {
        if node.attrs.iter().any(|(k, _)| k == file) {
            row.insert((*api).into(), node.attr(file).into());
        }
    }
    for name in ROLE_SAME {
        if node.attrs.iter().any(|(k, _)| k == name) {
            row.insert((*name).into(), node.attr(name).into());
        }
    }
    row.insert("forms".into(), form_rights(node.attr("data_entry")).into());
    row.insert(
        "forms_export".into(),
        form_rights(node.attr("data_export_instruments")).into(),
    );
    row
}

/// A role as `redcap:UserRoles` attributes, from its Export User Roles row.
pub fn role_attributes(row: &serde_json::Map<String, serde_json::Value>) -> String {
    let text = |k: &str| match row.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let forms = |k: &str| match row.get(k) {
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(f, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                format!("[{f},{v}]")
            })
            .collect::<String>(),
        _ => String::new(),
    };
    let mut out = format!(
        "role_name=\"{}\" unique_role_name=\"{}\"",
        escape(&text("role_label")),
        escape(&text("unique_role_name"))
    );
    for (file, api) in ROLE_ATTRIBUTES {
        let _ = write!(out, " {file}=\"{}\"", escape(&text(api)));
    }
    for name in ROLE_SAME {
        let _ = write!(out, " {name}=\"{}\"", escape(&text(name)));
    }
    let _ = write!(
        out,
        " data_entry=\"{}\" data_export_instruments=\"{}\"",
        escape(&forms("forms")),
        escape(&forms("forms_export"))
    );
    out
}

/// Items of a file that are no fields of the dictionary.
const PSEUDO_ITEMS: &[&str] = &["redcap_data_access_group", "redcap_survey_identifier"];

/// The item that carries a record's Data Access Group (its unique name).
pub const DAG_ITEM: &str = "redcap_data_access_group";

/// Field types of the file and of the data dictionary where they differ.
const TYPES: &[(&str, &str)] = &[("textarea", "notes"), ("select", "dropdown")];
/// Validation types likewise (REDCap's files use the legacy names).
const VALIDATIONS: &[(&str, &str)] = &[("int", "integer"), ("float", "number")];

fn to_dictionary<'a>(table: &[(&str, &'a str)], v: &'a str) -> &'a str {
    table
        .iter()
        .find(|(file, _)| *file == v)
        .map(|(_, dict)| *dict)
        .unwrap_or(v)
}

fn to_file<'a>(table: &[(&'a str, &str)], v: &'a str) -> &'a str {
    table
        .iter()
        .find(|(_, dict)| *dict == v)
        .map(|(file, _)| *file)
        .unwrap_or(v)
}

/// `a, A|b, B` or `a, A | b, B` → `a, A | b, B` (the dictionary's form).
fn choices(list: &str) -> String {
    list.split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Reads a REDCap XML file.
pub fn read(xml: &str) -> Result<OdmProject, String> {
    let root = parse(xml)?;
    if root.name != "ODM" {
        return Err(format!("the root element is <{}>, not <ODM>", root.name));
    }
    let study = root.child("Study").ok_or("there is no <Study> element")?;
    let globals = study.child("GlobalVariables");
    let mut p = OdmProject::default();
    if let Some(g) = globals {
        p.title = g.child_text("StudyName").to_owned();
        p.purpose = g.child_text("redcap:Purpose").trim().parse().ok();
        p.purpose_other = g.child_text("redcap:PurposeOther").to_owned();
        p.notes = g.child_text("redcap:ProjectNotes").to_owned();
        p.autonumbering = match g.child_text("redcap:RecordAutonumberingEnabled").trim() {
            "" => None,
            v => Some(v == "1"),
        };
        p.surveys_enabled = g.child_text("redcap:SurveysEnabled").trim() == "1";
        if let Some(r) = g.child("redcap:RepeatingInstrumentsAndEvents") {
            for group in &r.children {
                for item in group.children.iter().chain(std::iter::once(group)) {
                    match item.name.as_str() {
                        "redcap:RepeatingInstrument" => p.repeating.push((
                            item.attr("redcap:UniqueEventName").to_owned(),
                            item.attr("redcap:RepeatInstrument").to_owned(),
                            item.attr("redcap:CustomLabel").to_owned(),
                        )),
                        "redcap:RepeatingEvent" => p.repeating.push((
                            item.attr("redcap:UniqueEventName").to_owned(),
                            String::new(),
                            String::new(),
                        )),
                        _ => {}
                    }
                }
            }
        }
        if let Some(d) = g.child("redcap:DataAccessGroupsGroup") {
            for dag in d.all("redcap:DataAccessGroups") {
                p.dags.push(dag.attr("group_name").to_owned());
            }
        }
        if let Some(r) = g.child("redcap:UserRolesGroup") {
            p.roles = r.all("redcap:UserRoles").map(role_row).collect();
        }
        if let Some(r) = g.child("redcap:ReportsGroup") {
            p.reports = r
                .all("redcap:Reports")
                .map(|e| crate::api::reports::from_odm(|name| e.attr(name)))
                .collect();
        }
        if let Some(s) = g.child("redcap:SurveysGroup") {
            p.surveys = s
                .all("redcap:Surveys")
                .map(|s| crate::surveys::SurveySettings {
                    form: s.attr("form_name").to_owned(),
                    title: s.attr("title").to_owned(),
                    enabled: s.attr("survey_enabled") != "0",
                    save_and_return: s.attr("save_and_return") == "1",
                    edit_completed_response: s.attr("edit_completed_response") == "1",
                })
                .collect();
        }
        if let Some(q) = g.child("redcap:SurveysQueueGroup") {
            p.survey_queue = q
                .all("redcap:SurveysQueue")
                .map(|q| {
                    (
                        q.attr("survey_id").to_owned(),
                        q.attr("event_id").to_owned(),
                        q.attr("active") != "0",
                    )
                })
                .collect();
        }
    }
    let mdv = study
        .child("MetaDataVersion")
        .ok_or("there is no <MetaDataVersion> element")?;
    read_structure(mdv, &mut p);
    read_dictionary(mdv, &mut p)?;
    if let Some(clinical) = root.child("ClinicalData") {
        read_records(clinical, &p.form_labels, &mut p.records);
    }
    Ok(p)
}

fn number(s: &str) -> f64 {
    s.trim().parse().unwrap_or(0.0)
}

/// Arms and events (`StudyEventDef`, in the `Protocol`'s order).
fn read_structure(mdv: &Node, p: &mut OdmProject) {
    for e in mdv.all("StudyEventDef") {
        let arm_num: u32 = e.attr("redcap:ArmNum").trim().parse().unwrap_or(1);
        if !p.arms.iter().any(|a| a.num == arm_num) {
            p.arms.push(Arm {
                num: arm_num,
                name: e.attr("redcap:ArmName").to_owned(),
            });
        }
        let name = match e.attr("redcap:EventName") {
            "" => e.attr("Name"),
            n => n,
        };
        p.events.push(OdmEvent {
            unique_name: e.attr("redcap:UniqueEventName").to_owned(),
            arm_num,
            name: name.to_owned(),
            day_offset: number(e.attr("redcap:DayOffset")),
            offset_min: number(e.attr("redcap:OffsetMin")),
            offset_max: number(e.attr("redcap:OffsetMax")),
            custom_label: e.attr("redcap:CustomEventLabel").to_owned(),
            forms: e
                .all("FormRef")
                .map(|f| match f.attr("redcap:FormName") {
                    "" => f.attr("FormOID").trim_start_matches("Form.").to_owned(),
                    n => n.to_owned(),
                })
                .collect(),
        });
    }
    p.arms.sort_by_key(|a| a.num);
    // Events grouped by arm, in file order within each.
    p.events.sort_by_key(|e| e.arm_num);
}

/// The data dictionary: fields in `FormDef` → `ItemGroupRef` →
/// `ItemGroupDef` → `ItemRef` order; form status, survey identifier and
/// survey timestamp items are not fields.
fn read_dictionary(mdv: &Node, p: &mut OdmProject) -> Result<(), String> {
    let groups: HashMap<&str, &Node> = mdv
        .all("ItemGroupDef")
        .map(|g| (g.attr("OID"), g))
        .collect();
    let items: HashMap<&str, &Node> = mdv.all("ItemDef").map(|i| (i.attr("OID"), i)).collect();
    let codes: HashMap<&str, &Node> = mdv.all("CodeList").map(|c| (c.attr("OID"), c)).collect();
    for form in mdv.all("FormDef") {
        let form_name = match form.attr("redcap:FormName") {
            "" => form.attr("OID").trim_start_matches("Form.").to_owned(),
            n => n.to_owned(),
        };
        p.form_labels
            .push((form_name.clone(), form.attr("Name").to_owned()));
        for group_ref in form.all("ItemGroupRef") {
            let Some(group) = groups.get(group_ref.attr("ItemGroupOID")) else {
                continue;
            };
            for item_ref in group.all("ItemRef") {
                let Some(item) = items.get(item_ref.attr("ItemOID")) else {
                    return Err(format!(
                        "the item \"{}\" has no <ItemDef>",
                        item_ref.attr("ItemOID")
                    ));
                };
                let name = match item.attr("redcap:Variable") {
                    "" => item.attr("Name"),
                    n => n,
                };
                // Items without a field type are REDCap's pseudo-fields (the
                // record's DAG, survey identifier and timestamps).
                if item.attr("redcap:FieldType").is_empty()
                    || name == format!("{form_name}_complete")
                    || name == format!("{form_name}_timestamp")
                    || PSEUDO_ITEMS.contains(&name)
                    || p.metadata.iter().any(|f| f.field_name == name)
                {
                    continue;
                }
                p.metadata
                    .push(field_of(item, item_ref, name, &form_name, &codes));
            }
        }
    }
    if p.metadata.is_empty() {
        return Err("the file defines no fields".into());
    }
    Ok(())
}

fn field_of(
    item: &Node,
    item_ref: &Node,
    name: &str,
    form: &str,
    codes: &HashMap<&str, &Node>,
) -> Field {
    let field_type = to_dictionary(TYPES, item.attr("redcap:FieldType")).to_owned();
    let code_list = item
        .child("CodeListRef")
        .and_then(|r| codes.get(r.attr("CodeListOID")));
    let select = match field_type.as_str() {
        "checkbox" => code_list
            .map(|c| choices(c.attr("redcap:CheckboxChoices")))
            .unwrap_or_default(),
        "radio" | "dropdown" => code_list
            .map(|c| {
                c.all("CodeListItem")
                    .map(|i| {
                        let label = i
                            .child("Decode")
                            .map(|d| d.child_text("TranslatedText"))
                            .unwrap_or("");
                        format!("{}, {label}", i.attr("CodedValue"))
                    })
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .unwrap_or_default(),
        "calc" => item.attr("redcap:Calculation").to_owned(),
        "slider" => item.attr("redcap:SliderLabels").to_owned(),
        _ => String::new(),
    };
    let mut min = String::new();
    let mut max = String::new();
    for range in item.all("RangeCheck") {
        let value = range.child_text("CheckValue").to_owned();
        match range.attr("Comparator") {
            "GE" => min = value,
            "LE" => max = value,
            _ => {}
        }
    }
    Field {
        field_name: name.to_owned(),
        form_name: form.to_owned(),
        section_header: item.attr("redcap:SectionHeader").to_owned(),
        field_type,
        field_label: item
            .child("Question")
            .map(|q| q.child_text("TranslatedText"))
            .unwrap_or("")
            .to_owned(),
        select_choices_or_calculations: select,
        field_note: item.attr("redcap:FieldNote").to_owned(),
        text_validation_type_or_show_slider_number: to_dictionary(
            VALIDATIONS,
            item.attr("redcap:TextValidationType"),
        )
        .to_owned(),
        text_validation_min: min,
        text_validation_max: max,
        identifier: item.attr("redcap:Identifier").to_owned(),
        branching_logic: item.attr("redcap:BranchingLogic").to_owned(),
        required_field: if item_ref.attr("Mandatory") == "Yes" {
            "y".into()
        } else {
            String::new()
        },
        custom_alignment: item.attr("redcap:CustomAlignment").to_owned(),
        question_number: item.attr("redcap:QuestionNumber").to_owned(),
        matrix_group_name: item.attr("redcap:MatrixGroupName").to_owned(),
        matrix_ranking: item.attr("redcap:MatrixRanking").to_owned(),
        field_annotation: item.attr("redcap:FieldAnnotation").to_owned(),
    }
}

/// The records: `SubjectData` → (`StudyEventData` →) `FormData` →
/// `ItemGroupData` → `ItemData`. A repeating event's instance is its
/// `StudyEventRepeatKey`, a repeating instrument's its `FormRepeatKey`.
fn read_records(clinical: &Node, forms: &[(String, String)], out: &mut Vec<OdmRecord>) {
    for subject in clinical.all("SubjectData") {
        let mut record = OdmRecord {
            name: subject.attr("SubjectKey").to_owned(),
            dag: String::new(),
            values: Vec::new(),
        };
        let mut read_forms = |parent: &Node, event: &str, event_key: i64| {
            for form in parent.all("FormData") {
                let form_key: i64 = form.attr("FormRepeatKey").trim().parse().unwrap_or(1);
                let instance = event_key.max(form_key);
                for group in form.all("ItemGroupData") {
                    for item in group.all("ItemData") {
                        let field = item.attr("ItemOID");
                        if field == DAG_ITEM {
                            record.dag = item.attr("Value").to_owned();
                            continue;
                        }
                        if field == "redcap_survey_identifier"
                            || forms.iter().any(|(f, _)| field == format!("{f}_timestamp"))
                        {
                            continue;
                        }
                        record.values.push(OdmValue {
                            event: event.to_owned(),
                            instance,
                            field: field.to_owned(),
                            value: item.attr("Value").to_owned(),
                            file: None,
                        });
                    }
                    for item in group.all("ItemDataBase64Binary") {
                        record.values.push(OdmValue {
                            event: event.to_owned(),
                            instance,
                            field: item.attr("ItemOID").to_owned(),
                            value: String::new(),
                            file: Some(OdmFile {
                                name: item.attr("redcap:DocName").to_owned(),
                                mime_type: item.attr("redcap:MimeType").to_owned(),
                                base64: item.text.split_whitespace().collect(),
                            }),
                        });
                    }
                }
            }
        };
        read_forms(subject, "", 1);
        for event in subject.all("StudyEventData") {
            let key: i64 = event
                .attr("StudyEventRepeatKey")
                .trim()
                .parse()
                .unwrap_or(1);
            read_forms(event, event.attr("redcap:UniqueEventName"), key);
        }
        out.push(record);
    }
}

/// What [`write_metadata`] needs of a project.
pub struct Metadata<'a> {
    pub title: &'a str,
    pub version: &'a str,
    pub now: &'a str,
    pub purpose: u8,
    pub purpose_other: &'a str,
    pub notes: &'a str,
    pub autonumbering: bool,
    pub surveys_enabled: bool,
    pub metadata: &'a [Field],
    pub forms: &'a [(String, String)],
    pub arms: &'a [Arm],
    /// Events with their unique names.
    pub events: Vec<(&'a crate::db::Event, String)>,
    /// (unique event name or `""`, instrument or `""`, custom label).
    pub repeating: Vec<(String, String, String)>,
    pub dags: Vec<String>,
    /// Roles as `redcap:UserRoles` attributes ([`role_attributes`]).
    pub roles: Vec<String>,
    /// Reports as `redcap:Reports` attributes.
    pub reports: Vec<String>,
    /// Surveys and survey queue entries as `redcap:Surveys` and
    /// `redcap:SurveysQueue` attributes ([`crate::surveys::odm_attributes`]).
    pub surveys: Vec<String>,
    pub survey_queue: Vec<String>,
}

/// The study's OID (`Project.<title letters>`).
pub fn study_oid(title: &str) -> String {
    let letters: String = title.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("Project.{letters}")
}

/// The item groups of an instrument as REDCap writes them: a new group at
/// each section header (named after it), the form status last. Answers
/// (group OID, name, fields' indexes).
fn item_groups<'a>(
    form: &str,
    label: &'a str,
    metadata: &'a [Field],
) -> Vec<(String, &'a str, Vec<usize>)> {
    let mut groups: Vec<(String, &str, Vec<usize>)> = Vec::new();
    for (i, f) in metadata.iter().enumerate() {
        if f.form_name != form {
            continue;
        }
        if groups.is_empty() || !f.section_header.is_empty() {
            let name = if f.section_header.is_empty() {
                label
            } else {
                f.section_header.as_str()
            };
            groups.push((format!("{form}.{}", f.field_name), name, Vec::new()));
        }
        if let Some(g) = groups.last_mut() {
            g.2.push(i);
        }
    }
    groups
}

/// The export columns (ItemDef OIDs) of a field.
fn item_oids(f: &Field) -> Vec<String> {
    if f.field_type == "checkbox" {
        f.choice_codes()
            .iter()
            .map(|c| format!("{}___{}", f.field_name, c.to_lowercase()))
            .collect()
    } else {
        vec![f.field_name.clone()]
    }
}

fn data_type(f: &Field) -> &'static str {
    let v = f.text_validation_type_or_show_slider_number.as_str();
    match f.field_type.as_str() {
        "yesno" | "truefalse" | "checkbox" => "boolean",
        "calc" => "float",
        "text" if v == "integer" => "integer",
        "text" if v.starts_with("number") => "float",
        "text" if v.starts_with("date_") => "date",
        "text" if v.starts_with("datetime") => "datetime",
        "text" if v.starts_with("time") => "time",
        _ => "text",
    }
}

/// The `MetaDataVersion`'s OID (`Metadata.<title letters>_<date>`).
pub fn metadata_oid(title: &str, now: &str) -> String {
    let oid = study_oid(title);
    let day = now.get(..10).unwrap_or(now);
    format!("Metadata.{}_{day}", &oid["Project.".len()..])
}

/// The file up to the end of `</Study>`: settings, structure, dictionary.
pub fn write_metadata(m: &Metadata) -> String {
    let oid = study_oid(m.title);
    let mdv_oid = metadata_oid(m.title, m.now);
    let t = escape(m.title);
    let mut s = String::new();
    let _ = writeln!(s, "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>");
    let _ = writeln!(
        s,
        "<ODM xmlns=\"http://www.cdisc.org/ns/odm/v1.3\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:redcap=\"https://projectredcap.org\" xsi:schemaLocation=\"http://www.cdisc.org/ns/odm/v1.3 schema/odm/ODM1-3-1.xsd\" ODMVersion=\"1.3.1\" FileOID=\"000-00-0000\" FileType=\"Snapshot\" Description=\"{t}\" AsOfDateTime=\"{now}\" CreationDateTime=\"{now}\" SourceSystem=\"REDCap\" SourceSystemVersion=\"{v}\">",
        now = m.now.replace(' ', "T"),
        v = escape(m.version)
    );
    let _ = writeln!(s, "<Study OID=\"{}\">", escape(&oid));
    let _ = writeln!(s, "<GlobalVariables>");
    let _ = writeln!(s, "\t<StudyName>{t}</StudyName>");
    let _ = writeln!(
        s,
        "\t<StudyDescription>This file contains the metadata, events, and data for REDCap project \"{t}\".</StudyDescription>"
    );
    let _ = writeln!(s, "\t<ProtocolName>{t}</ProtocolName>");
    let b = |v: bool| u8::from(v);
    let _ = writeln!(
        s,
        "\t<redcap:RecordAutonumberingEnabled>{}</redcap:RecordAutonumberingEnabled>",
        b(m.autonumbering)
    );
    let _ = writeln!(s, "\t<redcap:CustomRecordLabel></redcap:CustomRecordLabel>");
    let _ = writeln!(
        s,
        "\t<redcap:SecondaryUniqueField></redcap:SecondaryUniqueField>"
    );
    let _ = writeln!(
        s,
        "\t<redcap:SchedulingEnabled>0</redcap:SchedulingEnabled>"
    );
    let _ = writeln!(
        s,
        "\t<redcap:SurveysEnabled>{}</redcap:SurveysEnabled>",
        b(m.surveys_enabled)
    );
    let _ = writeln!(s, "\t<redcap:Purpose>{}</redcap:Purpose>", m.purpose);
    let _ = writeln!(
        s,
        "\t<redcap:PurposeOther>{}</redcap:PurposeOther>",
        escape(m.purpose_other)
    );
    let _ = writeln!(
        s,
        "\t<redcap:ProjectNotes>{}</redcap:ProjectNotes>",
        escape(m.notes)
    );
    if !m.repeating.is_empty() {
        let _ = writeln!(s, "\t<redcap:RepeatingInstrumentsAndEvents>");
        let instruments: Vec<_> = m.repeating.iter().filter(|r| !r.1.is_empty()).collect();
        if !instruments.is_empty() {
            let _ = writeln!(s, "\t\t<redcap:RepeatingInstruments>");
            for (event, form, label) in instruments {
                let _ = writeln!(
                    s,
                    "\t\t\t<redcap:RepeatingInstrument redcap:UniqueEventName=\"{}\" redcap:RepeatInstrument=\"{}\" redcap:CustomLabel=\"{}\"/>",
                    escape(event),
                    escape(form),
                    escape(label)
                );
            }
            let _ = writeln!(s, "\t\t</redcap:RepeatingInstruments>");
        }
        // Repeating events stand directly in the group, as REDCap writes
        // them (its repeating instruments have a wrapper of their own).
        for (event, _, _) in m.repeating.iter().filter(|r| r.1.is_empty()) {
            let _ = writeln!(
                s,
                "\t\t<redcap:RepeatingEvent redcap:UniqueEventName=\"{}\"/>",
                escape(event)
            );
        }
        let _ = writeln!(s, "\t</redcap:RepeatingInstrumentsAndEvents>");
    }
    if !m.dags.is_empty() {
        let _ = writeln!(s, "\t<redcap:DataAccessGroupsGroup>");
        for d in &m.dags {
            let _ = writeln!(
                s,
                "\t\t<redcap:DataAccessGroups group_name=\"{}\"/>",
                escape(d)
            );
        }
        let _ = writeln!(s, "\t</redcap:DataAccessGroupsGroup>");
    }
    for (group, item, list) in [
        ("SurveysGroup", "Surveys", &m.surveys),
        ("SurveysQueueGroup", "SurveysQueue", &m.survey_queue),
    ] {
        if !list.is_empty() {
            let _ = writeln!(s, "\t<redcap:{group}>");
            for attributes in list {
                let _ = writeln!(s, "\t\t<redcap:{item} {attributes}/>");
            }
            let _ = writeln!(s, "\t</redcap:{group}>");
        }
    }
    if !m.roles.is_empty() {
        let _ = writeln!(s, "\t<redcap:UserRolesGroup>");
        for r in &m.roles {
            let _ = writeln!(s, "\t\t<redcap:UserRoles {r}/>");
        }
        let _ = writeln!(s, "\t</redcap:UserRolesGroup>");
    }
    if !m.reports.is_empty() {
        let _ = writeln!(s, "\t<redcap:ReportsGroup>");
        for r in &m.reports {
            let _ = writeln!(s, "\t\t<redcap:Reports {r}/>");
        }
        let _ = writeln!(s, "\t</redcap:ReportsGroup>");
    }
    let _ = writeln!(s, "</GlobalVariables>");
    let rid = m
        .metadata
        .first()
        .map(|f| f.field_name.as_str())
        .unwrap_or("");
    let _ = writeln!(
        s,
        "<MetaDataVersion OID=\"{}\" Name=\"{t}\" redcap:RecordIdField=\"{}\">",
        escape(&mdv_oid),
        escape(rid)
    );
    if !m.events.is_empty() {
        let _ = writeln!(s, "\t<Protocol>");
        for (i, (_, unique)) in m.events.iter().enumerate() {
            let _ = writeln!(
                s,
                "\t\t<StudyEventRef StudyEventOID=\"Event.{}\" OrderNumber=\"{}\" Mandatory=\"No\"/>",
                escape(unique),
                i + 1
            );
        }
        let _ = writeln!(s, "\t</Protocol>");
        for (e, unique) in &m.events {
            let arm = m
                .arms
                .iter()
                .find(|a| a.num == e.arm_num)
                .map(|a| a.name.as_str())
                .unwrap_or("");
            let repeats = m.repeating.iter().any(|r| &r.0 == unique && r.1.is_empty());
            let _ = writeln!(
                s,
                "\t<StudyEventDef OID=\"Event.{u}\" Name=\"{n} (Arm {a}: {an})\" Type=\"Common\" Repeating=\"{r}\" redcap:EventName=\"{n}\" redcap:CustomEventLabel=\"{c}\" redcap:UniqueEventName=\"{u}\" redcap:ArmNum=\"{a}\" redcap:ArmName=\"{an}\" redcap:DayOffset=\"{d}\" redcap:OffsetMin=\"{mi}\" redcap:OffsetMax=\"{ma}\">",
                u = escape(unique),
                n = escape(&e.name),
                a = e.arm_num,
                an = escape(arm),
                r = if repeats { "Yes" } else { "No" },
                c = escape(&e.custom_label),
                d = e.day_offset,
                mi = e.offset_min,
                ma = e.offset_max
            );
            for (i, f) in e.forms.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "\t\t<FormRef FormOID=\"Form.{f}\" OrderNumber=\"{}\" Mandatory=\"No\" redcap:FormName=\"{f}\"/>",
                    i + 1,
                    f = escape(f)
                );
            }
            let _ = writeln!(s, "\t</StudyEventDef>");
        }
    }
    for (form, label) in m.forms {
        let repeats = m.repeating.iter().any(|r| &r.1 == form);
        let _ = writeln!(
            s,
            "\t<FormDef OID=\"Form.{f}\" Name=\"{}\" Repeating=\"{}\" redcap:FormName=\"{f}\">",
            escape(label),
            if repeats { "Yes" } else { "No" },
            f = escape(form)
        );
        for (oid, _, _) in item_groups(form, label, m.metadata) {
            let _ = writeln!(
                s,
                "\t\t<ItemGroupRef ItemGroupOID=\"{}\" Mandatory=\"No\"/>",
                escape(&oid)
            );
        }
        let _ = writeln!(
            s,
            "\t\t<ItemGroupRef ItemGroupOID=\"{f}.{f}_complete\" Mandatory=\"No\"/>",
            f = escape(form)
        );
        let _ = writeln!(s, "\t</FormDef>");
    }
    for (form, label) in m.forms {
        for (oid, name, fields) in item_groups(form, label, m.metadata) {
            let _ = writeln!(
                s,
                "\t<ItemGroupDef OID=\"{}\" Name=\"{}\" Repeating=\"No\">",
                escape(&oid),
                escape(name)
            );
            for i in fields {
                let f = &m.metadata[i];
                if f.is_descriptive() {
                    continue;
                }
                let mandatory = if f.required_field == "y" { "Yes" } else { "No" };
                for item in item_oids(f) {
                    let _ = writeln!(
                        s,
                        "\t\t<ItemRef ItemOID=\"{o}\" Mandatory=\"{mandatory}\" redcap:Variable=\"{v}\"/>",
                        o = escape(&item),
                        v = escape(&f.field_name)
                    );
                }
                if i == 0 && !m.dags.is_empty() {
                    let _ = writeln!(
                        s,
                        "\t\t<ItemRef ItemOID=\"{DAG_ITEM}\" Mandatory=\"No\" redcap:Variable=\"{DAG_ITEM}\"/>"
                    );
                }
            }
            let _ = writeln!(s, "\t</ItemGroupDef>");
        }
        let _ = writeln!(
            s,
            "\t<ItemGroupDef OID=\"{f}.{f}_complete\" Name=\"Form Status\" Repeating=\"No\">\n\t\t<ItemRef ItemOID=\"{f}_complete\" Mandatory=\"No\" redcap:Variable=\"{f}_complete\"/>\n\t</ItemGroupDef>",
            f = escape(form)
        );
    }
    for (form, _) in m.forms {
        for f in m.metadata.iter().filter(|f| &f.form_name == form) {
            write_item_defs(&mut s, f);
            if f.field_name == rid && !m.dags.is_empty() {
                let _ = writeln!(
                    s,
                    "\t<ItemDef OID=\"{DAG_ITEM}\" Name=\"{DAG_ITEM}\" DataType=\"text\" Length=\"999\" redcap:Variable=\"{DAG_ITEM}\">\n\t\t<Question><TranslatedText>Data Access Group</TranslatedText></Question>\n\t</ItemDef>"
                );
            }
        }
        let _ = writeln!(
            s,
            "\t<ItemDef OID=\"{f}_complete\" Name=\"{f}_complete\" DataType=\"text\" Length=\"1\" redcap:Variable=\"{f}_complete\" redcap:FieldType=\"select\" redcap:SectionHeader=\"Form Status\">\n\t\t<Question><TranslatedText>Complete?</TranslatedText></Question>\n\t\t<CodeListRef CodeListOID=\"{f}_complete.choices\"/>\n\t</ItemDef>",
            f = escape(form)
        );
    }
    for (form, _) in m.forms {
        for f in m.metadata.iter().filter(|f| &f.form_name == form) {
            write_code_lists(&mut s, f);
        }
        let _ = writeln!(
            s,
            "\t<CodeList OID=\"{f}_complete.choices\" Name=\"{f}_complete\" DataType=\"text\" redcap:Variable=\"{f}_complete\">\n\t\t<CodeListItem CodedValue=\"0\"><Decode><TranslatedText>Incomplete</TranslatedText></Decode></CodeListItem>\n\t\t<CodeListItem CodedValue=\"1\"><Decode><TranslatedText>Unverified</TranslatedText></Decode></CodeListItem>\n\t\t<CodeListItem CodedValue=\"2\"><Decode><TranslatedText>Complete</TranslatedText></Decode></CodeListItem>\n\t</CodeList>",
            f = escape(form)
        );
    }
    let _ = writeln!(s, "</MetaDataVersion>");
    let _ = writeln!(s, "</Study>");
    s
}

/// A field's `ItemDef`s (one per checkbox choice).
fn write_item_defs(s: &mut String, f: &Field) {
    if f.is_descriptive() {
        return;
    }
    let mut attrs = String::new();
    let mut add = |k: &str, v: &str| {
        if !v.is_empty() {
            let _ = write!(attrs, " redcap:{k}=\"{}\"", escape(v));
        }
    };
    add("FieldType", to_file(TYPES, &f.field_type));
    add(
        "TextValidationType",
        to_file(VALIDATIONS, &f.text_validation_type_or_show_slider_number),
    );
    add("FieldNote", &f.field_note);
    add("SectionHeader", &f.section_header);
    match f.field_type.as_str() {
        "calc" => add("Calculation", &f.select_choices_or_calculations),
        "slider" => add("SliderLabels", &f.select_choices_or_calculations),
        _ => {}
    }
    add("Identifier", &f.identifier);
    add("BranchingLogic", &f.branching_logic);
    add("CustomAlignment", &f.custom_alignment);
    add("QuestionNumber", &f.question_number);
    add("MatrixGroupName", &f.matrix_group_name);
    add("MatrixRanking", &f.matrix_ranking);
    add("FieldAnnotation", &f.field_annotation);
    let has_codes = matches!(
        f.field_type.as_str(),
        "checkbox" | "radio" | "dropdown" | "yesno" | "truefalse"
    );
    let length = if data_type(f) == "boolean" {
        "1"
    } else {
        "999"
    };
    for oid in item_oids(f) {
        let _ = writeln!(
            s,
            "\t<ItemDef OID=\"{o}\" Name=\"{o}\" DataType=\"{}\" Length=\"{length}\" redcap:Variable=\"{}\"{attrs}>",
            data_type(f),
            escape(&f.field_name),
            o = escape(&oid)
        );
        let _ = writeln!(
            s,
            "\t\t<Question><TranslatedText>{}</TranslatedText></Question>",
            escape(&f.field_label)
        );
        for (comparator, value) in [
            ("GE", &f.text_validation_min),
            ("LE", &f.text_validation_max),
        ] {
            if !value.is_empty() {
                let _ = writeln!(
                    s,
                    "\t\t<RangeCheck Comparator=\"{comparator}\" SoftHard=\"Soft\">\n\t\t\t<CheckValue>{}</CheckValue>\n\t\t</RangeCheck>",
                    escape(value)
                );
            }
        }
        if has_codes {
            let _ = writeln!(
                s,
                "\t\t<CodeListRef CodeListOID=\"{}.choices\"/>",
                escape(&oid)
            );
        }
        let _ = writeln!(s, "\t</ItemDef>");
    }
}

/// The labels of a radio/dropdown field's codes.
fn coded(f: &Field) -> Vec<(String, String)> {
    match f.field_type.as_str() {
        "yesno" => vec![("1".into(), "Yes".into()), ("0".into(), "No".into())],
        "truefalse" => vec![("1".into(), "True".into()), ("0".into(), "False".into())],
        _ => f
            .select_choices_or_calculations
            .split('|')
            .filter_map(|c| c.split_once(','))
            .map(|(k, l)| (k.trim().to_owned(), l.trim().to_owned()))
            .collect(),
    }
}

/// A field's `CodeList`s.
fn write_code_lists(s: &mut String, f: &Field) {
    let item = |s: &mut String, code: &str, label: &str| {
        let _ = writeln!(
            s,
            "\t\t<CodeListItem CodedValue=\"{}\"><Decode><TranslatedText>{}</TranslatedText></Decode></CodeListItem>",
            escape(code),
            escape(label)
        );
    };
    match f.field_type.as_str() {
        "checkbox" => {
            let compact = f
                .select_choices_or_calculations
                .split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
                .join("|");
            for oid in item_oids(f) {
                let _ = writeln!(
                    s,
                    "\t<CodeList OID=\"{o}.choices\" Name=\"{o}\" DataType=\"boolean\" redcap:Variable=\"{}\" redcap:CheckboxChoices=\"{}\">",
                    escape(&f.field_name),
                    escape(&compact),
                    o = escape(&oid)
                );
                item(s, "1", "Checked");
                item(s, "0", "Unchecked");
                let _ = writeln!(s, "\t</CodeList>");
            }
        }
        "radio" | "dropdown" | "yesno" | "truefalse" => {
            let _ = writeln!(
                s,
                "\t<CodeList OID=\"{n}.choices\" Name=\"{n}\" DataType=\"{}\" redcap:Variable=\"{n}\">",
                if data_type(f) == "boolean" {
                    "boolean"
                } else {
                    "text"
                },
                n = escape(&f.field_name)
            );
            for (code, label) in coded(f) {
                item(s, &code, &label);
            }
            let _ = writeln!(s, "\t</CodeList>");
        }
        _ => {}
    }
}

/// A record's values in one slot.
type SlotValues = (crate::store::Slot, Vec<String>);

/// How an event's values are written.
pub struct EventLayout {
    pub id: i64,
    /// Its unique name (empty: a classic project's implicit event).
    pub unique_name: String,
    /// The whole event repeats.
    pub repeats: bool,
    /// Its repeating instruments.
    pub repeating_forms: Vec<String>,
}

/// One record's `SubjectData`: its slots' values grouped by event, then
/// instrument (with its instance), then item group.
pub struct RecordWriter<'a> {
    /// File Upload fields' columns.
    pub file_fields: std::collections::HashSet<String>,
    /// Where a File Upload field's file is written from (`exportFiles`):
    /// answers its name, type and bytes; `None` leaves the fields out.
    #[allow(clippy::type_complexity)]
    pub files: Option<Box<dyn Fn(&str) -> Option<(String, String, Vec<u8>)> + Send + 'a>>,
    pub forms: &'a [(String, String)],
    pub rid: &'a str,
    /// The events, in order (a classic project: its implicit one).
    pub events: Vec<EventLayout>,
    /// Export column → (form, item group OID).
    pub groups: HashMap<String, (String, String)>,
}

impl<'a> RecordWriter<'a> {
    /// Builds the lookup of item groups.
    pub fn new(
        metadata: &'a [Field],
        forms: &'a [(String, String)],
        events: Vec<EventLayout>,
    ) -> RecordWriter<'a> {
        let mut groups = HashMap::new();
        for (form, label) in forms {
            for (oid, _, fields) in item_groups(form, label, metadata) {
                for i in fields {
                    for item in item_oids(&metadata[i]) {
                        groups.insert(item, (form.clone(), oid.clone()));
                    }
                }
            }
            groups.insert(
                format!("{form}_complete"),
                (form.clone(), format!("{form}.{form}_complete")),
            );
        }
        RecordWriter {
            file_fields: metadata
                .iter()
                .filter(|f| f.field_type == "file")
                .map(|f| f.field_name.clone())
                .collect(),
            files: None,
            forms,
            rid: metadata
                .first()
                .map(|f| f.field_name.as_str())
                .unwrap_or(""),
            events,
            groups,
        }
    }

    /// Writes one record. `columns` names the values of each slot.
    pub fn write(
        &self,
        out: &mut String,
        record: &crate::store::RecordRow,
        columns: &[&str],
        dag: Option<&str>,
    ) {
        let _ = write!(
            out,
            "\t<SubjectData SubjectKey=\"{}\" redcap:RecordIdField=\"{}\"",
            escape(&record.name),
            escape(self.rid)
        );
        out.push_str(">\n");
        // The record's DAG goes beside its first record ID value.
        let mut dag = dag.filter(|d| !d.is_empty());
        for EventLayout {
            id: event_id,
            unique_name: unique,
            repeats,
            repeating_forms,
        } in &self.events
        {
            let mut slots: Vec<&SlotValues> = record
                .slots
                .iter()
                .filter(|(s, _)| s.event == *event_id)
                .collect();
            slots.sort_by_key(|(s, _)| s.instance);
            if slots.is_empty() {
                continue;
            }
            // A repeating event: one StudyEventData per instance; else one.
            let passes: Vec<(i64, Vec<&SlotValues>)> = if *repeats {
                slots.iter().map(|s| (s.0.instance, vec![*s])).collect()
            } else {
                vec![(1, slots)]
            };
            for (event_key, slots) in passes {
                let indent = if unique.is_empty() { "\t\t" } else { "\t\t\t" };
                if !unique.is_empty() {
                    let _ = writeln!(
                        out,
                        "\t\t<StudyEventData StudyEventOID=\"Event.{u}\" StudyEventRepeatKey=\"{event_key}\" redcap:UniqueEventName=\"{u}\">",
                        u = escape(unique)
                    );
                }
                for (form, _) in self.forms {
                    let form_repeats = repeating_forms.contains(form);
                    for (slot, values) in &slots {
                        if !form_repeats && !*repeats && slot.instance != 1 {
                            continue;
                        }
                        self.write_form(
                            out,
                            indent,
                            form,
                            slot.instance,
                            values,
                            columns,
                            form_repeats,
                            &mut dag,
                        );
                    }
                }
                if !unique.is_empty() {
                    out.push_str("\t\t</StudyEventData>\n");
                }
            }
        }
        out.push_str("\t</SubjectData>\n");
    }

    #[allow(clippy::too_many_arguments)]
    fn write_form(
        &self,
        out: &mut String,
        indent: &str,
        form: &str,
        instance: i64,
        values: &[String],
        columns: &[&str],
        form_repeats: bool,
        dag: &mut Option<&str>,
    ) {
        // The form's values in dictionary order, grouped.
        let mut groups: Vec<(&str, Vec<(&str, &str)>)> = Vec::new();
        for (c, v) in columns.iter().zip(values) {
            if v.is_empty() {
                continue;
            }
            let Some((f, group)) = self.groups.get(*c) else {
                continue;
            };
            if f != form || (*c == self.rid && form_repeats) {
                continue;
            }
            let mut item = vec![(*c, v.as_str())];
            if *c == self.rid
                && let Some(d) = dag.take()
            {
                item.push((DAG_ITEM, d));
            }
            match groups.iter_mut().find(|(g, _)| g == group) {
                Some((_, items)) => items.extend(item),
                None => groups.push((group.as_str(), item)),
            }
        }
        if groups.is_empty() {
            return;
        }
        let key = if form_repeats { instance } else { 1 };
        let _ = writeln!(
            out,
            "{indent}<FormData FormOID=\"Form.{}\" FormRepeatKey=\"{key}\">",
            escape(form)
        );
        for (group, items) in groups {
            let _ = writeln!(
                out,
                "{indent}\t<ItemGroupData ItemGroupOID=\"{}\" ItemGroupRepeatKey=\"1\">",
                escape(group)
            );
            for (item, value) in items {
                if self.file_fields.contains(item) {
                    // A file travels whole (`exportFiles`) or not at all.
                    if let Some((name, mime, bytes)) = self.files.as_ref().and_then(|f| f(value)) {
                        use base64::Engine as _;
                        let _ = writeln!(
                            out,
                            "{indent}\t\t<ItemDataBase64Binary ItemOID=\"{}\" redcap:DocName=\"{}\" redcap:MimeType=\"{}\"><![CDATA[{}]]></ItemDataBase64Binary>",
                            escape(item),
                            escape(&name),
                            escape(&mime),
                            base64::engine::general_purpose::STANDARD.encode(bytes)
                        );
                    }
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{indent}\t\t<ItemData ItemOID=\"{}\" Value=\"{}\"/>",
                    escape(item),
                    escape(value)
                );
            }
            let _ = writeln!(out, "{indent}\t</ItemGroupData>");
        }
        let _ = writeln!(out, "{indent}</FormData>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_attributes_text_and_entities() {
        let n = parse(
            "<?xml version=\"1.0\"?><a x=\"1 &amp; 2&#10;3\"><b>t &lt;i&gt; &#039;q&#039;</b><c/></a>",
        )
        .unwrap();
        assert_eq!(n.attr("x"), "1 & 2\n3");
        assert_eq!(n.child_text("b"), "t <i> 'q'");
        assert!(n.child("c").is_some());
        assert_eq!(escape("a\"b'<c>\n"), "a&quot;b&#039;&lt;c&gt;&#10;");
        for bad in ["", "<a>", "<a></b>", "<a/><b/>"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(read("<x/>").is_err());
        assert!(read("<ODM/>").is_err());
    }
}

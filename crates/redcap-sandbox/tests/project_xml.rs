//! Projects as REDCap XML (CDISC ODM): Create Project with `odm` (§2.5)
//! from a file shaped as REDCap writes them, and `content=project_xml`
//! back — metadata only or with records, DAGs named or not — with a round
//! trip that is stable: a project created from an export exports the
//! same file.

mod common;

use common::{SUPER, Sandbox};
use serde_json::json;

/// A classic project's file as REDCap writes it (legacy `int` validation,
/// `select` and `textarea` types, checkbox choices, a soft range, a
/// required field, a repeating instrument, a DAG and a record in it —
/// the `redcap_data_access_group` item —, survey identifier and timestamp
/// items, instrument labels of their own).
const CLASSIC: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" xmlns:redcap="https://projectredcap.org" ODMVersion="1.3.1" FileType="Snapshot" SourceSystem="REDCap">
<Study OID="Project.Clinic">
<GlobalVariables>
	<StudyName>Clinic</StudyName>
	<redcap:RecordAutonumberingEnabled>0</redcap:RecordAutonumberingEnabled>
	<redcap:SurveysEnabled>1</redcap:SurveysEnabled>
	<redcap:Purpose>2</redcap:Purpose>
	<redcap:ProjectNotes>Notes &amp; more</redcap:ProjectNotes>
	<redcap:RepeatingInstrumentsAndEvents>
		<redcap:RepeatingInstruments>
			<redcap:RepeatingInstrument redcap:UniqueEventName="event_1_arm_1" redcap:RepeatInstrument="visits" redcap:CustomLabel="[seen]"/>
		</redcap:RepeatingInstruments>
	</redcap:RepeatingInstrumentsAndEvents>
	<redcap:DataAccessGroupsGroup>
		<redcap:DataAccessGroups group_name="North Site"/>
	</redcap:DataAccessGroupsGroup>
	<redcap:UserRolesGroup>
		<redcap:UserRoles role_name="Monitor" unique_role_name="U-942MC93HH8" lock_record="0" data_logging="1" graphical="1" design="0" user_rights="0" api_export="1" record_create="0" data_entry="[intake,2][visits,1]" data_export_instruments="[intake,0][visits,1]" external_module_config=""/>
	</redcap:UserRolesGroup>
	<redcap:SurveysGroup>
		<redcap:Surveys form_name="intake" title="Intake"/>
	</redcap:SurveysGroup>
</GlobalVariables>
<MetaDataVersion OID="Metadata.Clinic_2026-01-01_1200" Name="Clinic" redcap:RecordIdField="pid">
	<FormDef OID="Form.intake" Name="Intake Form" Repeating="No" redcap:FormName="intake">
		<ItemGroupRef ItemGroupOID="intake.pid" Mandatory="No"/>
		<ItemGroupRef ItemGroupOID="intake.intake_complete" Mandatory="No"/>
	</FormDef>
	<FormDef OID="Form.visits" Name="Visits" Repeating="Yes" redcap:FormName="visits">
		<ItemGroupRef ItemGroupOID="visits.seen" Mandatory="No"/>
		<ItemGroupRef ItemGroupOID="visits.visits_complete" Mandatory="No"/>
	</FormDef>
	<ItemGroupDef OID="intake.pid" Name="Intake Form" Repeating="No">
		<ItemRef ItemOID="pid" Mandatory="No" redcap:Variable="pid"/>
		<ItemRef ItemOID="redcap_data_access_group" Mandatory="No" redcap:Variable="redcap_data_access_group"/>
		<ItemRef ItemOID="redcap_survey_identifier" Mandatory="No" redcap:Variable="redcap_survey_identifier"/>
		<ItemRef ItemOID="intake_timestamp" Mandatory="No" redcap:Variable="intake_timestamp"/>
		<ItemRef ItemOID="age" Mandatory="Yes" redcap:Variable="age"/>
		<ItemRef ItemOID="sex" Mandatory="No" redcap:Variable="sex"/>
		<ItemRef ItemOID="diet___1" Mandatory="No" redcap:Variable="diet"/>
		<ItemRef ItemOID="diet___2" Mandatory="No" redcap:Variable="diet"/>
		<ItemRef ItemOID="history" Mandatory="No" redcap:Variable="history"/>
		<ItemRef ItemOID="consent" Mandatory="No" redcap:Variable="consent"/>
	</ItemGroupDef>
	<ItemGroupDef OID="intake.intake_complete" Name="Form Status" Repeating="No">
		<ItemRef ItemOID="intake_complete" Mandatory="No" redcap:Variable="intake_complete"/>
	</ItemGroupDef>
	<ItemGroupDef OID="visits.seen" Name="Visits" Repeating="No">
		<ItemRef ItemOID="seen" Mandatory="No" redcap:Variable="seen"/>
	</ItemGroupDef>
	<ItemGroupDef OID="visits.visits_complete" Name="Form Status" Repeating="No">
		<ItemRef ItemOID="visits_complete" Mandatory="No" redcap:Variable="visits_complete"/>
	</ItemGroupDef>
	<ItemDef OID="pid" Name="pid" DataType="text" Length="999" redcap:Variable="pid" redcap:FieldType="text">
		<Question><TranslatedText>Participant ID</TranslatedText></Question>
	</ItemDef>
	<ItemDef OID="redcap_data_access_group" Name="redcap_data_access_group" DataType="text" Length="999" redcap:Variable="redcap_data_access_group">
		<Question><TranslatedText>Data Access Group</TranslatedText></Question>
	</ItemDef>
	<ItemDef OID="redcap_survey_identifier" Name="redcap_survey_identifier" DataType="text" Length="999" redcap:Variable="redcap_survey_identifier">
		<Question><TranslatedText>Survey Identifier</TranslatedText></Question>
	</ItemDef>
	<ItemDef OID="intake_timestamp" Name="intake_timestamp" DataType="partialDatetime" Length="999" redcap:Variable="intake_timestamp">
		<Question><TranslatedText>Survey Timestamp</TranslatedText></Question>
	</ItemDef>
	<ItemDef OID="age" Name="age" DataType="integer" Length="999" redcap:Variable="age" redcap:FieldType="text" redcap:TextValidationType="int" redcap:FieldNote="years" redcap:SectionHeader="About &lt;b&gt;you&lt;/b&gt;">
		<Question><TranslatedText>Age &amp; more</TranslatedText></Question>
		<RangeCheck Comparator="GE" SoftHard="Soft"><CheckValue>0</CheckValue></RangeCheck>
		<RangeCheck Comparator="LE" SoftHard="Soft"><CheckValue>120</CheckValue></RangeCheck>
	</ItemDef>
	<ItemDef OID="sex" Name="sex" DataType="text" Length="1" redcap:Variable="sex" redcap:FieldType="select" redcap:Identifier="y">
		<Question><TranslatedText>Sex</TranslatedText></Question>
		<CodeListRef CodeListOID="sex.choices"/>
	</ItemDef>
	<ItemDef OID="diet___1" Name="diet___1" DataType="boolean" Length="1" redcap:Variable="diet" redcap:FieldType="checkbox">
		<Question><TranslatedText>Diet</TranslatedText></Question>
		<CodeListRef CodeListOID="diet___1.choices"/>
	</ItemDef>
	<ItemDef OID="diet___2" Name="diet___2" DataType="boolean" Length="1" redcap:Variable="diet" redcap:FieldType="checkbox">
		<Question><TranslatedText>Diet</TranslatedText></Question>
		<CodeListRef CodeListOID="diet___2.choices"/>
	</ItemDef>
	<ItemDef OID="history" Name="history" DataType="text" Length="999" redcap:Variable="history" redcap:FieldType="textarea" redcap:BranchingLogic="[age] &gt; 18">
		<Question><TranslatedText>History</TranslatedText></Question>
	</ItemDef>
	<ItemDef OID="consent" Name="consent" DataType="text" Length="999" redcap:Variable="consent" redcap:FieldType="file">
		<Question><TranslatedText>Consent form</TranslatedText></Question>
	</ItemDef>
	<ItemDef OID="intake_complete" Name="intake_complete" DataType="text" Length="1" redcap:Variable="intake_complete" redcap:FieldType="select" redcap:SectionHeader="Form Status">
		<Question><TranslatedText>Complete?</TranslatedText></Question>
		<CodeListRef CodeListOID="intake_complete.choices"/>
	</ItemDef>
	<ItemDef OID="seen" Name="seen" DataType="date" Length="999" redcap:Variable="seen" redcap:FieldType="text" redcap:TextValidationType="date_ymd">
		<Question><TranslatedText>Seen on</TranslatedText></Question>
	</ItemDef>
	<ItemDef OID="visits_complete" Name="visits_complete" DataType="text" Length="1" redcap:Variable="visits_complete" redcap:FieldType="select" redcap:SectionHeader="Form Status">
		<Question><TranslatedText>Complete?</TranslatedText></Question>
		<CodeListRef CodeListOID="visits_complete.choices"/>
	</ItemDef>
	<CodeList OID="sex.choices" Name="sex" DataType="text" redcap:Variable="sex">
		<CodeListItem CodedValue="0"><Decode><TranslatedText>Female</TranslatedText></Decode></CodeListItem>
		<CodeListItem CodedValue="1"><Decode><TranslatedText>Male</TranslatedText></Decode></CodeListItem>
	</CodeList>
	<CodeList OID="diet___1.choices" Name="diet___1" DataType="boolean" redcap:Variable="diet" redcap:CheckboxChoices="1, Vegan|2, Other">
		<CodeListItem CodedValue="1"><Decode><TranslatedText>Checked</TranslatedText></Decode></CodeListItem>
		<CodeListItem CodedValue="0"><Decode><TranslatedText>Unchecked</TranslatedText></Decode></CodeListItem>
	</CodeList>
	<CodeList OID="diet___2.choices" Name="diet___2" DataType="boolean" redcap:Variable="diet" redcap:CheckboxChoices="1, Vegan|2, Other">
		<CodeListItem CodedValue="1"><Decode><TranslatedText>Checked</TranslatedText></Decode></CodeListItem>
		<CodeListItem CodedValue="0"><Decode><TranslatedText>Unchecked</TranslatedText></Decode></CodeListItem>
	</CodeList>
</MetaDataVersion>
</Study>
<ClinicalData StudyOID="Project.Clinic" MetaDataVersionOID="Metadata.Clinic_2026-01-01_1200">
	<SubjectData SubjectKey="1" redcap:RecordIdField="pid">
			<FormData FormOID="Form.intake" FormRepeatKey="1">
				<ItemGroupData ItemGroupOID="intake.pid" ItemGroupRepeatKey="1">
					<ItemData ItemOID="pid" Value="1"/>
					<ItemData ItemOID="redcap_data_access_group" Value="north_site"/>
					<ItemData ItemOID="redcap_survey_identifier" Value=""/>
					<ItemData ItemOID="intake_timestamp" Value="[not completed]"/>
					<ItemData ItemOID="age" Value="44"/>
					<ItemData ItemOID="sex" Value="0"/>
					<ItemData ItemOID="diet___1" Value="1"/>
					<ItemData ItemOID="diet___2" Value="0"/>
					<ItemDataBase64Binary ItemOID="consent" redcap:DocName="consent.txt" redcap:MimeType="text/plain"><![CDATA[c2lnbmVkIGJ5IEFubg==]]></ItemDataBase64Binary>
				</ItemGroupData>
				<ItemGroupData ItemGroupOID="intake.intake_complete" ItemGroupRepeatKey="1">
					<ItemData ItemOID="intake_complete" Value="2"/>
				</ItemGroupData>
			</FormData>
			<FormData FormOID="Form.visits" FormRepeatKey="1">
				<ItemGroupData ItemGroupOID="visits.seen" ItemGroupRepeatKey="1">
					<ItemData ItemOID="seen" Value="2026-01-02"/>
				</ItemGroupData>
			</FormData>
			<FormData FormOID="Form.visits" FormRepeatKey="2">
				<ItemGroupData ItemGroupOID="visits.seen" ItemGroupRepeatKey="1">
					<ItemData ItemOID="seen" Value="2026-02-03"/>
				</ItemGroupData>
			</FormData>
	</SubjectData>
	<SubjectData SubjectKey="2" redcap:RecordIdField="pid">
			<FormData FormOID="Form.intake" FormRepeatKey="1">
				<ItemGroupData ItemGroupOID="intake.pid" ItemGroupRepeatKey="1">
					<ItemData ItemOID="pid" Value="2"/>
					<ItemData ItemOID="history" Value="line one
line &quot;two&quot;"/>
				</ItemGroupData>
			</FormData>
	</SubjectData>
</ClinicalData>
</ODM>
"#;

/// Create Project with `odm` (and the project row in XML `data`, as
/// PyCap's fixture sends it: its title and purpose win over the file's);
/// answers the token.
async fn create_from(sb: &Sandbox, title: &str, odm: &str) -> String {
    let data = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><item><project_title>{title}</project_title><purpose>0</purpose></item>"
    );
    let a = sb
        .post(&[
            ("token", SUPER),
            ("content", "project"),
            ("format", "xml"),
            ("data", &data),
            ("odm", odm),
        ])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body.len(), 32, "{}", a.body);
    a.body
}

async fn project_xml(sb: &Sandbox, token: &str, extra: &[(&str, &str)]) -> String {
    let mut params = vec![("token", token), ("content", "project_xml")];
    params.extend_from_slice(extra);
    let a = sb.post(&params).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.content_type.starts_with("text/xml"), "{}", a.content_type);
    a.body
}

/// The file without its moment of export (`AsOfDateTime`,
/// `CreationDateTime`, the metadata version's date) and its roles' unique
/// names (new for each project, as REDCap makes them).
fn timeless(xml: &str) -> String {
    xml.lines()
        .map(|l| {
            let mut l = l.to_owned();
            for attr in [
                "AsOfDateTime=\"",
                "CreationDateTime=\"",
                "unique_role_name=\"",
            ] {
                if let Some(i) = l.find(attr) {
                    let start = i + attr.len();
                    let end = start + l[start..].find('"').unwrap();
                    l.replace_range(start..end, "T");
                }
            }
            if let Some(i) = l.find("Metadata.") {
                let end = i + l[i..].find('"').unwrap();
                l.replace_range(i..end, "Metadata");
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_project_from_a_redcap_file() {
    let sb = Sandbox::start().await;
    let token = create_from(&sb, "From a file", CLASSIC).await;
    let info = sb.call(&token, "project", &[]).await.json();
    assert_eq!(info["project_title"], "From a file");
    assert_eq!(info["is_longitudinal"], 0);
    assert_eq!(info["has_repeating_instruments_or_events"], 1);
    assert_eq!(info["surveys_enabled"], 1);
    assert_eq!(info["record_autonumbering_enabled"], 0);
    let md = sb.call(&token, "metadata", &[]).await.json();
    let names: Vec<&str> = md
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["pid", "age", "sex", "diet", "history", "consent", "seen"]
    );
    // The file's file is the record's.
    let file = sb
        .post_bytes(&[
            ("token", &token),
            ("content", "file"),
            ("action", "export"),
            ("record", "1"),
            ("field", "consent"),
        ])
        .await;
    assert_eq!(file.status, 200);
    assert_eq!(file.bytes, b"signed by Ann");
    assert!(file.header("content-type").contains("name=\"consent.txt\""));
    let age = &md[1];
    assert_eq!(age["text_validation_type_or_show_slider_number"], "integer");
    assert_eq!(age["text_validation_min"], "0");
    assert_eq!(age["text_validation_max"], "120");
    assert_eq!(age["required_field"], "y");
    assert_eq!(age["field_label"], "Age & more");
    assert_eq!(age["section_header"], "About <b>you</b>");
    assert_eq!(md[2]["field_type"], "dropdown");
    assert_eq!(
        md[2]["select_choices_or_calculations"],
        "0, Female | 1, Male"
    );
    assert_eq!(md[2]["identifier"], "y");
    assert_eq!(
        md[3]["select_choices_or_calculations"],
        "1, Vegan | 2, Other"
    );
    assert_eq!(md[4]["field_type"], "notes");
    assert_eq!(md[4]["branching_logic"], "[age] > 18");
    assert_eq!(
        sb.call(&token, "instrument", &[]).await.json(),
        json!([
            {"instrument_name": "intake", "instrument_label": "Intake Form"},
            {"instrument_name": "visits", "instrument_label": "Visits"}
        ])
    );
    assert_eq!(
        sb.call(&token, "repeatingFormsEvents", &[]).await.json(),
        json!([{"form_name": "visits", "custom_form_label": "[seen]"}])
    );
    assert_eq!(
        sb.call(&token, "dag", &[]).await.json(),
        json!([{"data_access_group_name": "North Site", "unique_group_name": "north_site", "data_access_group_id": sb.call(&token, "dag", &[]).await.json()[0]["data_access_group_id"]}])
    );
    // The role, under a unique name of its own, as new roles get.
    let roles = sb.call(&token, "userRole", &[]).await.json();
    let role = &roles[0];
    assert_eq!(role["role_label"], "Monitor");
    assert_ne!(role["unique_role_name"], "U-942MC93HH8");
    assert_eq!(role["logging"], "1");
    assert_eq!(role["stats_and_charts"], "1");
    assert_eq!(role["api_export"], "1");
    assert_eq!(role["record_create"], "0");
    // Legacy codes in the file (2 read-only, 1 view & edit), exported in
    // the played version's encoding (15.7.6: the bitmask).
    assert_eq!(
        role["forms"],
        json!({"intake": 129, "visits": 130}),
        "{role}"
    );
    assert_eq!(
        role["forms_export"],
        json!({"intake": 0, "visits": 1}),
        "{role}"
    );
    let rows = sb
        .call(&token, "record", &[("exportDataAccessGroups", "true")])
        .await
        .json();
    assert_eq!(
        rows,
        json!([
            {"pid": "1", "redcap_repeat_instrument": "", "redcap_repeat_instance": "",
             "redcap_data_access_group": "north_site", "age": "44", "sex": "0",
             "diet___1": "1", "diet___2": "0", "consent": "consent.txt", "history": "", "intake_complete": "2",
             "seen": "", "visits_complete": ""},
            {"pid": "1", "redcap_repeat_instrument": "visits", "redcap_repeat_instance": 1,
             "redcap_data_access_group": "north_site", "age": "", "sex": "",
             "diet___1": "", "diet___2": "", "consent": "", "history": "", "intake_complete": "",
             "seen": "2026-01-02", "visits_complete": "0"},
            {"pid": "1", "redcap_repeat_instrument": "visits", "redcap_repeat_instance": 2,
             "redcap_data_access_group": "north_site", "age": "", "sex": "",
             "diet___1": "", "diet___2": "", "consent": "", "history": "", "intake_complete": "",
             "seen": "2026-02-03", "visits_complete": "0"},
            {"pid": "2", "redcap_repeat_instrument": "", "redcap_repeat_instance": "",
             "redcap_data_access_group": "", "age": "", "sex": "",
             "diet___1": "0", "diet___2": "0", "consent": "", "history": "line one line \"two\"",
             "intake_complete": "0", "seen": "", "visits_complete": ""}
        ])
    );
    // The log says how the project came.
    let log = sb.call(&token, "log", &[]).await.json();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["details"] == "Create project using REDCap XML file (API)"),
        "{log}"
    );

    // Round trip: the export read back exports the same file.
    let with_all = [("exportDataAccessGroups", "true"), ("exportFiles", "true")];
    let first = project_xml(&sb, &token, &with_all).await;
    assert!(
        first.contains("<ItemDataBase64Binary ItemOID=\"consent\" redcap:DocName=\"consent.txt\" redcap:MimeType=\"text/plain\"><![CDATA[c2lnbmVkIGJ5IEFubg==]]></ItemDataBase64Binary>"),
        "{first}"
    );
    assert!(
        first.replace('\t', "").contains(
            "<ItemData ItemOID=\"pid\" Value=\"1\"/>\n<ItemData ItemOID=\"redcap_data_access_group\" Value=\"north_site\"/>"
        ),
        "{first}"
    );
    assert!(
        first.contains("<FormData FormOID=\"Form.visits\" FormRepeatKey=\"2\">"),
        "{first}"
    );
    let second_token = create_from(&sb, "From a file", &first).await;
    let second = project_xml(&sb, &second_token, &with_all).await;
    assert_eq!(timeless(&first), timeless(&second));
    assert_eq!(
        sb.call(&second_token, "record", &[]).await.json(),
        sb.call(&token, "record", &[]).await.json()
    );

    // Metadata only: no ClinicalData; without exportDataAccessGroups no
    // DAG on the records.
    let bare = project_xml(&sb, &token, &[("returnMetadataOnly", "true")]).await;
    assert!(!bare.contains("ClinicalData"), "{bare}");
    assert!(bare.trim_end().ends_with("</ODM>"));
    assert!(bare.contains("<redcap:DataAccessGroups group_name=\"North Site\"/>"));
    let plain = project_xml(&sb, &token, &[]).await;
    // Without exportFiles a File Upload field is left out.
    assert!(
        !plain.contains("<ItemData ItemOID=\"consent\"") && !plain.contains("ItemDataBase64Binary"),
        "{plain}"
    );
    assert!(
        !plain.contains("<ItemData ItemOID=\"redcap_data_access_group\""),
        "{plain}"
    );
    let one = project_xml(&sb, &token, &[("records[0]", "2")]).await;
    assert!(!one.contains("SubjectKey=\"1\""), "{one}");
    assert!(one.contains("SubjectKey=\"2\""), "{one}");
}

/// A longitudinal project with two arms, mappings, a repeating instrument
/// and a repeating event, DAGs and records: created from its own export,
/// twice, it exports the same file each time.
#[tokio::test]
async fn a_longitudinal_round_trip_is_stable() {
    let sb = Sandbox::start().await;
    let a = sb
        .import(
            SUPER,
            "project",
            json!([{"project_title": "Cohort", "purpose": 0, "is_longitudinal": 1}]),
            &[],
        )
        .await;
    let token = a.body;
    sb.standard_metadata(&token).await;
    for (content, data, extra) in [
        (
            "arm",
            json!([{"arm_num": 1, "name": "Drug A"}, {"arm_num": 2, "name": "Drug B"}]),
            vec![("action", "import")],
        ),
        (
            "event",
            json!([
                {"event_name": "Screening", "arm_num": 1, "unique_event_name": "event_1_arm_1", "day_offset": 0},
                {"event_name": "Visit", "arm_num": 1, "day_offset": 7, "offset_min": 1, "offset_max": 2},
                {"event_name": "Follow up", "arm_num": 1, "custom_event_label": "[age]"},
                {"event_name": "Screening", "arm_num": 2}
            ]),
            vec![("action", "import")],
        ),
        (
            "formEventMapping",
            json!([
                {"arm_num": 1, "unique_event_name": "screening_arm_1", "form": "demographics"},
                {"arm_num": 1, "unique_event_name": "visit_arm_1", "form": "visit"},
                {"arm_num": 1, "unique_event_name": "follow_up_arm_1", "form": "visit"},
                {"arm_num": 2, "unique_event_name": "screening_arm_2", "form": "demographics"}
            ]),
            vec![],
        ),
        (
            "repeatingFormsEvents",
            json!([
                {"event_name": "visit_arm_1", "form_name": "visit", "custom_form_label": ""},
                {"event_name": "follow_up_arm_1", "form_name": "", "custom_form_label": ""}
            ]),
            vec![],
        ),
        (
            "dag",
            json!([{"data_access_group_name": "Site A", "unique_group_name": ""}]),
            vec![("action", "import")],
        ),
        (
            "record",
            json!([
                {"record_id": "1", "redcap_event_name": "screening_arm_1", "name": "Ann <&> \"A\"", "age": "40", "redcap_data_access_group": "site_a"},
                {"record_id": "1", "redcap_event_name": "visit_arm_1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": "1", "arm": "a", "symptoms___1": "1"},
                {"record_id": "1", "redcap_event_name": "visit_arm_1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": "2", "arm": "b"},
                {"record_id": "1", "redcap_event_name": "follow_up_arm_1", "redcap_repeat_instance": "1", "symptoms___2": "1"},
                {"record_id": "1", "redcap_event_name": "follow_up_arm_1", "redcap_repeat_instance": "3", "arm": "a"},
                {"record_id": "2", "redcap_event_name": "screening_arm_2", "name": "Bo\nline"}
            ]),
            vec![],
        ),
    ] {
        let a = sb.import(&token, content, data, &extra).await;
        assert_eq!(a.status, 200, "{content}: {}", a.body);
    }
    let opts = [("exportDataAccessGroups", "true")];
    let first = project_xml(&sb, &token, &opts).await;
    for expected in [
        "<StudyEventDef OID=\"Event.visit_arm_1\" Name=\"Visit (Arm 1: Drug A)\" Type=\"Common\" Repeating=\"No\" redcap:EventName=\"Visit\" redcap:CustomEventLabel=\"\" redcap:UniqueEventName=\"visit_arm_1\" redcap:ArmNum=\"1\" redcap:ArmName=\"Drug A\" redcap:DayOffset=\"7\" redcap:OffsetMin=\"1\" redcap:OffsetMax=\"2\">",
        "<redcap:RepeatingInstrument redcap:UniqueEventName=\"visit_arm_1\" redcap:RepeatInstrument=\"visit\" redcap:CustomLabel=\"\"/>",
        "\t\t</redcap:RepeatingInstruments>\n\t\t<redcap:RepeatingEvent redcap:UniqueEventName=\"follow_up_arm_1\"/>\n\t</redcap:RepeatingInstrumentsAndEvents>",
        "<StudyEventData StudyEventOID=\"Event.follow_up_arm_1\" StudyEventRepeatKey=\"3\" redcap:UniqueEventName=\"follow_up_arm_1\">",
        "<ItemData ItemOID=\"name\" Value=\"Ann &lt;&amp;&gt; &quot;A&quot;\"/>",
        "<ItemData ItemOID=\"name\" Value=\"Bo&#10;line\"/>",
    ] {
        assert!(first.contains(expected), "{expected}\n{first}");
    }
    let second_token = create_from(&sb, "Cohort", &first).await;
    let second = project_xml(&sb, &second_token, &opts).await;
    let third_token = create_from(&sb, "Cohort", &second).await;
    let third = project_xml(&sb, &third_token, &opts).await;
    assert_eq!(timeless(&first), timeless(&second));
    assert_eq!(timeless(&second), timeless(&third));
    // The records, events and setup are the same through the API too.
    for (content, extra) in [
        ("record", vec![("exportDataAccessGroups", "true")]),
        ("arm", vec![]),
        ("formEventMapping", vec![]),
        ("repeatingFormsEvents", vec![]),
        ("metadata", vec![]),
    ] {
        assert_eq!(
            sb.call(&third_token, content, &extra).await.json(),
            sb.call(&token, content, &extra).await.json(),
            "{content}"
        );
    }
}

#[tokio::test]
async fn bad_files_are_refused_and_create_nothing() {
    let sb = Sandbox::start().await;
    for (odm, says) in [
        ("<ODM><Study>", "the document ends inside an element"),
        ("<Project/>", "not <ODM>"),
        ("<ODM><Study/></ODM>", "no <MetaDataVersion>"),
        (
            "<ODM><Study><MetaDataVersion><FormDef OID=\"Form.f\" Name=\"F\"><ItemGroupRef ItemGroupOID=\"f.x\"/></FormDef><ItemGroupDef OID=\"f.x\"><ItemRef ItemOID=\"x\"/></ItemGroupDef></MetaDataVersion></Study></ODM>",
            "the item \\\"x\\\" has no <ItemDef>",
        ),
        (
            "<ODM><Study><MetaDataVersion><FormDef OID=\"Form.f\" Name=\"F\"><ItemGroupRef ItemGroupOID=\"f.x\"/></FormDef><ItemGroupDef OID=\"f.x\"><ItemRef ItemOID=\"x\"/></ItemGroupDef><ItemDef OID=\"x\" redcap:Variable=\"x\" redcap:FieldType=\"text\"/></MetaDataVersion></Study><ClinicalData><SubjectData SubjectKey=\"1\"><FormData FormOID=\"Form.f\"><ItemGroupData><ItemData ItemOID=\"x\" Value=\"1\"/><ItemData ItemOID=\"redcap_data_access_group\" Value=\"nowhere\"/></ItemGroupData></FormData></SubjectData></ClinicalData></ODM>",
            "the record \\\"1\\\" is in the unknown Data Access Group \\\"nowhere\\\"",
        ),
    ] {
        let a = sb
            .post(&[
                ("token", SUPER),
                ("content", "project"),
                ("format", "json"),
                ("data", r#"[{"project_title": "X", "purpose": 0}]"#),
                ("odm", odm),
            ])
            .await;
        assert_eq!(a.status, 400, "{}", a.body);
        assert!(
            a.body
                .contains("The REDCap XML file (odm) cannot be used: ")
                && a.body.contains(says),
            "{says}: {}",
            a.body
        );
    }
    let (_, projects) = sb
        .admin(reqwest::Method::GET, "/sandbox/projects", None)
        .await;
    assert_eq!(projects.as_array().map(Vec::len), Some(0), "{projects}");
}

"""PyCap's survey methods and export_pdf against a running sandbox (run by tests/pycap.rs).

Usage: python pycap_surveys.py API_URL SUPER_TOKEN
The admin endpoint's secret comes in the environment (SANDBOX_ADMIN_SECRET).
The project is made from REDCap XML the way PyCap's fixtures make theirs: a
longitudinal project whose first instrument, form_1, is a survey with "Save &
Return Later" and a survey queue entry in event_1_arm_1. Checks the answers'
shapes as PyCap's doctests and integration tests show them from REDCap
(`'https://…/surveys/?s=…'`, a 9-character access code, an 8-character return
code, the participant list's rows, `(b'%PDF-1.3\\n3 0 obj\\n…', {…})`), and
the survey columns of export_records(export_survey_fields=True). Each step
prints one line, so a failure shows how far the session got.
"""
import csv
import io
import json
import os
import sys

import requests
from redcap import Project, RedcapError

API, SUPER = sys.argv[1], sys.argv[2]
BASE = API[: -len("api/")]
ADMIN = {"Authorization": "Bearer " + os.environ["SANDBOX_ADMIN_SECRET"]}
HASH_CHARS = set("abcdefghijkmnopqrstuvwxyzABCDEFGHIJKLMNPQRSTUVWXYZ23456789")
CODE_CHARS = set("34789ACDEFHJKLMNPRTWXY")

ODM = """<?xml version="1.0" encoding="UTF-8" ?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" xmlns:redcap="https://projectredcap.org" ODMVersion="1.3.1">
<Study OID="Project.PyCapSurveys">
<GlobalVariables>
\t<StudyName>PyCap surveys</StudyName>
\t<redcap:SurveysEnabled>1</redcap:SurveysEnabled>
\t<redcap:SurveysGroup>
\t\t<redcap:Surveys form_name="form_1" title="Form 1" survey_enabled="1" save_and_return="1" edit_completed_response="0"/>
\t</redcap:SurveysGroup>
\t<redcap:SurveysQueueGroup>
\t\t<redcap:SurveysQueue active="1" auto_start="0" condition_andor="AND" condition_logic="" event_id="event_1_arm_1" survey_id="form_1"/>
\t</redcap:SurveysQueueGroup>
</GlobalVariables>
<MetaDataVersion OID="Metadata.PyCapSurveys" Name="PyCap surveys" redcap:RecordIdField="record_id">
\t<Protocol>
\t<StudyEventRef StudyEventOID="Event.event_1_arm_1" OrderNumber="1" Mandatory="No"/>
\t<StudyEventRef StudyEventOID="Event.event_2_arm_1" OrderNumber="2" Mandatory="No"/>
\t</Protocol>
\t<StudyEventDef OID="Event.event_1_arm_1" Name="Event 1" Type="Common" Repeating="No" redcap:EventName="Event 1" redcap:CustomEventLabel="" redcap:UniqueEventName="event_1_arm_1" redcap:ArmNum="1" redcap:ArmName="Arm 1" redcap:DayOffset="1" redcap:OffsetMin="0" redcap:OffsetMax="0">
\t\t<FormRef FormOID="Form.form_1" OrderNumber="1" Mandatory="No" redcap:FormName="form_1"/>
\t</StudyEventDef>
\t<StudyEventDef OID="Event.event_2_arm_1" Name="Event 2" Type="Common" Repeating="No" redcap:EventName="Event 2" redcap:CustomEventLabel="" redcap:UniqueEventName="event_2_arm_1" redcap:ArmNum="1" redcap:ArmName="Arm 1" redcap:DayOffset="2" redcap:OffsetMin="0" redcap:OffsetMax="0">
\t\t<FormRef FormOID="Form.form_1" OrderNumber="1" Mandatory="No" redcap:FormName="form_1"/>
\t</StudyEventDef>
\t<FormDef OID="Form.form_1" Name="Form 1" Repeating="No" redcap:FormName="form_1">
\t\t<ItemGroupRef ItemGroupOID="form_1.record_id" Mandatory="No"/>
\t\t<ItemGroupRef ItemGroupOID="form_1.form_1_complete" Mandatory="No"/>
\t</FormDef>
\t<ItemGroupDef OID="form_1.record_id" Name="Form 1" Repeating="No">
\t\t<ItemRef ItemOID="record_id" Mandatory="No" redcap:Variable="record_id"/>
\t\t<ItemRef ItemOID="field_1" Mandatory="No" redcap:Variable="field_1"/>
\t\t<ItemRef ItemOID="color" Mandatory="No" redcap:Variable="color"/>
\t</ItemGroupDef>
\t<ItemGroupDef OID="form_1.form_1_complete" Name="Form Status" Repeating="No">
\t\t<ItemRef ItemOID="form_1_complete" Mandatory="No" redcap:Variable="form_1_complete"/>
\t</ItemGroupDef>
\t<ItemDef OID="record_id" Name="record_id" DataType="text" Length="999" redcap:Variable="record_id" redcap:FieldType="text">
\t\t<Question><TranslatedText>Record ID</TranslatedText></Question>
\t</ItemDef>
\t<ItemDef OID="field_1" Name="field_1" DataType="text" Length="999" redcap:Variable="field_1" redcap:FieldType="text">
\t\t<Question><TranslatedText>Your name</TranslatedText></Question>
\t</ItemDef>
\t<ItemDef OID="color" Name="color" DataType="text" Length="1" redcap:Variable="color" redcap:FieldType="radio">
\t\t<Question><TranslatedText>Favourite colour</TranslatedText></Question>
\t\t<CodeListRef CodeListOID="color.choices"/>
\t</ItemDef>
\t<ItemDef OID="form_1_complete" Name="form_1_complete" DataType="text" Length="1" redcap:Variable="form_1_complete" redcap:FieldType="select" redcap:SectionHeader="Form Status">
\t\t<Question><TranslatedText>Complete?</TranslatedText></Question>
\t\t<CodeListRef CodeListOID="form_1_complete.choices"/>
\t</ItemDef>
\t<CodeList OID="color.choices" Name="color" DataType="text" redcap:Variable="color">
\t\t<CodeListItem CodedValue="1"><Decode><TranslatedText>Red</TranslatedText></Decode></CodeListItem>
\t\t<CodeListItem CodedValue="2"><Decode><TranslatedText>Blue</TranslatedText></Decode></CodeListItem>
\t</CodeList>
\t<CodeList OID="form_1_complete.choices" Name="form_1_complete" DataType="text" redcap:Variable="form_1_complete">
\t\t<CodeListItem CodedValue="0"><Decode><TranslatedText>Incomplete</TranslatedText></Decode></CodeListItem>
\t\t<CodeListItem CodedValue="1"><Decode><TranslatedText>Unverified</TranslatedText></Decode></CodeListItem>
\t\t<CodeListItem CodedValue="2"><Decode><TranslatedText>Complete</TranslatedText></Decode></CodeListItem>
\t</CodeList>
</MetaDataVersion>
</Study>
<ClinicalData StudyOID="Project.PyCapSurveys" MetaDataVersionOID="Metadata.PyCapSurveys">
\t<SubjectData SubjectKey="1" redcap:RecordIdField="record_id">
\t\t<StudyEventData StudyEventOID="Event.event_1_arm_1" StudyEventRepeatKey="1" redcap:UniqueEventName="event_1_arm_1">
\t\t\t<FormData FormOID="Form.form_1" FormRepeatKey="1">
\t\t\t\t<ItemGroupData ItemGroupOID="form_1.record_id" ItemGroupRepeatKey="1">
\t\t\t\t\t<ItemData ItemOID="record_id" Value="1"/>
\t\t\t\t\t<ItemData ItemOID="field_1" Value="Ada"/>
\t\t\t\t\t<ItemData ItemOID="color" Value="2"/>
\t\t\t\t</ItemGroupData>
\t\t\t</FormData>
\t\t</StudyEventData>
\t</SubjectData>
\t<SubjectData SubjectKey="2" redcap:RecordIdField="record_id">
\t\t<StudyEventData StudyEventOID="Event.event_1_arm_1" StudyEventRepeatKey="1" redcap:UniqueEventName="event_1_arm_1">
\t\t\t<FormData FormOID="Form.form_1" FormRepeatKey="1">
\t\t\t\t<ItemGroupData ItemGroupOID="form_1.record_id" ItemGroupRepeatKey="1">
\t\t\t\t\t<ItemData ItemOID="record_id" Value="2"/>
\t\t\t\t\t<ItemData ItemOID="field_1" Value="Grace"/>
\t\t\t\t</ItemGroupData>
\t\t\t</FormData>
\t\t</StudyEventData>
\t</SubjectData>
</ClinicalData>
</ODM>
"""


def step(name):
    print("step:", name, flush=True)


def message(err):
    body = err.args[0]
    return body["error"] if isinstance(body, dict) else str(body)


def refused(call, text):
    try:
        call()
    except RedcapError as e:
        assert text in message(e), (text, message(e))
        return
    raise AssertionError("not refused: " + text)


step("a project from REDCap XML with a survey and a survey queue")
info = '<?xml version="1.0" encoding="UTF-8" ?><item><project_title>PyCap surveys</project_title><purpose>0</purpose></item>'
r = requests.post(API, data={"token": SUPER, "content": "project", "format": "xml",
                             "data": info, "odm": ODM})
assert r.status_code == 200 and len(r.text) == 32, r.text
p = Project(API, r.text)
assert p.is_longitudinal
assert p.export_project_info()["surveys_enabled"] == 1

step("export_survey_link")
link = p.export_survey_link(record="1", instrument="form_1", event="event_1_arm_1")
assert link.startswith(BASE + "surveys/?s="), link
hash_ = link[len(BASE + "surveys/?s="):]
assert len(hash_) == 16 and set(hash_) <= HASH_CHARS, hash_
assert p.export_survey_link(record="1", instrument="form_1", event="event_1_arm_1") == link
assert p.export_survey_link(record="2", instrument="form_1", event="event_1_arm_1") != link
assert p.export_survey_link(record="1", instrument="form_1", event="event_2_arm_1") != link
refused(lambda: p.export_survey_link(record="1", instrument="form_1"),
        "The parameter 'event' is missing")
refused(lambda: p.export_survey_link(record="99", instrument="form_1", event="event_1_arm_1"),
        'The record "99" does not exist')
refused(lambda: p.export_survey_link(record="1", instrument="nope", event="event_1_arm_1"),
        "Invalid instrument")
refused(lambda: p.export_survey_link(record="1", instrument="form_1", event="nope"),
        "Invalid event")

step("export_survey_queue_link")
queue = p.export_survey_queue_link(record="1")
assert queue.startswith(BASE + "surveys/?sq="), queue
assert len(queue) == len(BASE + "surveys/?sq=") + 10, queue
assert p.export_survey_queue_link(record="1") == queue

step("export_survey_access_code")
code = p.export_survey_access_code(record="1", instrument="form_1", event="event_1_arm_1")
assert len(code) == 9 and set(code) <= CODE_CHARS, code
assert p.export_survey_access_code(record="1", instrument="form_1", event="event_1_arm_1") == code

step("export_survey_return_code")
ret = p.export_survey_return_code(record="1", instrument="form_1", event="event_1_arm_1")
assert len(ret) == 8 and set(ret) <= CODE_CHARS, ret
assert p.export_survey_return_code(record="1", instrument="form_1", event="event_1_arm_1") == ret

step("export_survey_participant_list")
rows = p.export_survey_participant_list(instrument="form_1", event="event_1_arm_1")
assert isinstance(rows, list) and len(rows) == 2, rows
assert list(rows[0]) == ["email", "email_occurrence", "identifier", "record",
                         "invitation_sent_status", "invitation_send_time", "response_status",
                         "survey_access_code", "survey_link", "survey_queue_link"], rows[0]
for row in rows:
    assert row["email"] == "" and row["record"] == "" and row["response_status"] == 0, row
    assert row["invitation_sent_status"] == 0, row
    assert len(row["survey_access_code"]) == 9, row
    assert row["survey_link"].startswith(BASE + "surveys/?s="), row
    assert row["survey_queue_link"].startswith(BASE + "surveys/?sq="), row
assert link in [row["survey_link"] for row in rows], rows
assert code in [row["survey_access_code"] for row in rows], rows
assert queue in [row["survey_queue_link"] for row in rows], rows
text = p.export_survey_participant_list(instrument="form_1", event="event_1_arm_1", format_type="csv")
table = list(csv.DictReader(io.StringIO(text)))
assert len(table) == 2 and table[0]["response_status"] == "0", text
xml = p.export_survey_participant_list(instrument="form_1", event="event_1_arm_1", format_type="xml")
assert xml.startswith('<?xml version="1.0" encoding="UTF-8" ?>\n<participants>\n<participant>'), xml

step("a response, then the survey fields of export_records")
r = requests.post(BASE + "sandbox/projects/1/surveys/form_1/responses", headers=ADMIN,
                  json={"record": "1", "event": "event_1_arm_1", "time": "2026-03-04 05:06:07",
                        "identifier": "ID-1", "email": "ada@example.org"})
assert r.status_code == 200, r.text
records = p.export_records(export_survey_fields=True)
assert list(records[0])[:5] == ["record_id", "redcap_event_name", "redcap_survey_identifier",
                                "form_1_timestamp", "field_1"], records[0]
first = [x for x in records if x["record_id"] == "1" and x["redcap_event_name"] == "event_1_arm_1"][0]
assert first["form_1_timestamp"] == "2026-03-04 05:06:07" and first["redcap_survey_identifier"] == "ID-1", first
second = [x for x in records if x["record_id"] == "2"][0]
assert second["form_1_timestamp"] == "" and second["redcap_survey_identifier"] == "", second
assert "form_1_timestamp" not in p.export_records()[0]
rows = p.export_survey_participant_list(instrument="form_1", event="event_1_arm_1")
done = [row for row in rows if row["email"] == "ada@example.org"]
assert len(done) == 1, rows
assert done[0]["record"] == "1" and done[0]["identifier"] == "ID-1", done
assert done[0]["response_status"] == 2 and done[0]["survey_link"] == "", done

step("export_pdf")
content, meta = p.export_pdf()
assert isinstance(content, bytes) and content.startswith(b"%PDF-1.3\n3 0 obj\n"), content[:40]
assert content.rstrip().endswith(b"%%EOF"), content[-20:]
assert meta == {}, meta
assert b"(Form 1) Tj" in content and b"(Your name) Tj" in content and b"(Ada) Tj" not in content
content, _ = p.export_pdf(record="1", event="event_1_arm_1", instrument="form_1")
assert b"(Ada) Tj" in content and b"(\\(X\\) Blue) Tj" in content, content
assert b"(Grace) Tj" not in content
content, _ = p.export_pdf(all_records=True)
assert b"(Ada) Tj" in content and b"(Grace) Tj" in content
content, _ = p.export_pdf(record="2", instrument="form_1", event="event_1_arm_1", compact_display=True)
assert b"(Grace) Tj" in content and b"Favourite colour" not in content, content
content, _ = p.export_pdf(record="1", event="event_1_arm_1", instrument="form_1", repeat_instance=1)
assert b"(Ada) Tj" in content
r = requests.post(API, data={"token": p.token, "content": "pdf", "instrument": "form_1"})
assert r.headers["Content-Type"] == "application/pdf", r.headers
assert r.headers["Content-Disposition"] == 'attachment; filename="Form1_PyCapSurveys.pdf"', r.headers

print("PyCap surveys OK")

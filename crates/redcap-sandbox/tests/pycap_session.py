"""A PyCap session against a running sandbox (run by tests/pycap.rs).

Usage: python pycap_session.py API_URL SUPER_TOKEN
Fails (non-zero exit) on the first answer that is not what REDCap gives.
Each step prints one line, so a failure shows how far the session got.
"""
import csv
import io
import json
import sys
import xml.etree.ElementTree as ET

import requests
from redcap import Project, RedcapError

API, SUPER = sys.argv[1], sys.argv[2]


def step(name):
    print("step:", name, flush=True)


def csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def xml_rows(text, root):
    tree = ET.fromstring(text.strip())
    assert tree.tag == root, (tree.tag, root)
    return [{c.tag: (c.text or "") for c in item} for item in tree]


def message(err):
    """REDCap's message inside a RedcapError (PyCap passes the decoded body)."""
    body = err.args[0]
    return body["error"] if isinstance(body, dict) else str(body)


def strings(rows):
    return [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows]


# --- Create Project with the super token (PyCap has no method for it) -----
step("create project")
r = requests.post(API, data={"token": SUPER, "content": "project", "format": "json",
    "data": json.dumps([{"project_title": "PyCap", "purpose": 0}])})
assert r.status_code == 200, r.text
token = r.text
assert len(token) == 32 and token.isalnum() and token.upper() == token, token
r = requests.post(API, data={"token": SUPER, "content": "project", "format": "xml",
    "data": "<?xml version=\"1.0\"?><item><project_title>XML</project_title><purpose>2</purpose></item>"})
assert r.status_code == 200 and len(r.text) == 32, r.text
r = requests.post(API, data={"token": token, "content": "project", "format": "json",
    "data": json.dumps([{"project_title": "x", "purpose": 0}])})
assert r.status_code == 403 and "Super API Token" in r.json()["error"], r.text

p = Project(API, token)
step("version and project info")
assert str(p.export_version()) == "15.7.6"
info = p.export_project_info()
assert info["project_title"] == "PyCap" and info["purpose"] == 0, info
assert p.export_project_info(format_type="csv").startswith("project_id,project_title,")
assert next(ET.fromstring(p.export_project_info(format_type="xml")).iter("project_title")).text == "PyCap"

# --- Metadata ---------------------------------------------------------------
step("metadata")
md = [
 {"field_name": "record_id", "form_name": "demographics", "field_type": "text", "field_label": "Record ID"},
 {"field_name": "name", "form_name": "demographics", "field_type": "text", "field_label": "Name", "identifier": "y"},
 {"field_name": "age", "form_name": "demographics", "field_type": "text", "field_label": "Age",
  "text_validation_type_or_show_slider_number": "integer"},
 {"field_name": "symptoms", "form_name": "visit", "field_type": "checkbox", "field_label": "S",
  "select_choices_or_calculations": "1, Fever | 2, Cough"},
 {"field_name": "arm", "form_name": "visit", "field_type": "radio", "field_label": "Arm",
  "select_choices_or_calculations": "a, A | b, B"},
]
assert p.import_metadata(md) == 5
exported = p.export_metadata()
assert [f["field_name"] for f in exported] == ["record_id", "name", "age", "symptoms", "arm"]
assert exported[1]["identifier"] == "y"
assert [f["field_name"] for f in csv_rows(p.export_metadata(format_type="csv"))] == \
    ["record_id", "name", "age", "symptoms", "arm"]
assert [f["field_name"] for f in xml_rows(p.export_metadata(format_type="xml"), "records")] == \
    ["record_id", "name", "age", "symptoms", "arm"]
assert [f["field_name"] for f in p.export_metadata(forms=["visit"])] == ["symptoms", "arm"]
assert [f["export_field_name"] for f in p.export_field_names(field="symptoms")] == \
    ["symptoms___1", "symptoms___2"]
assert [i["instrument_name"] for i in p.export_instruments()] == ["demographics", "visit"]

# --- Records: imports in each format ---------------------------------------
step("import records json/csv/xml")
assert p.import_records([{"record_id": "1", "name": "Ann", "age": "40", "symptoms___1": "1", "arm": "a"},
                         {"record_id": "2", "name": "Bob, \"B\"", "arm": "b"}]) == {"count": 2}
assert p.import_records("record_id,name,age\n3,Cy,33\n", import_format="csv") == {"count": 1}
assert p.import_records("<?xml version=\"1.0\" encoding=\"UTF-8\" ?><records><item><record_id>4</record_id>"
                        "<name>Di &amp; Co</name></item></records>", import_format="xml") == {"count": 1}
assert p.import_records([{"record_id": "5", "name": "Eve"}], return_content="ids") == ["5"]
assert str(p.import_records([{"record_id": "6", "name": "Fay"}], return_format_type="csv")).strip() == "1"
xml_count = p.import_records([{"record_id": "6", "name": "Fay"}], return_format_type="xml")
assert "<count>1</count>" in xml_count, xml_count
# normal ignores blanks, overwrite erases
p.import_records([{"record_id": "6", "name": ""}])
assert p.export_records(records=["6"])[0]["name"] == "Fay"
p.import_records([{"record_id": "6", "name": ""}], overwrite="overwrite")
assert p.export_records(records=["6"])[0]["name"] == ""
# validation error: REDCap's message reaches PyCap
try:
    p.import_records([{"record_id": "7", "nope": "1"}])
    raise AssertionError("an unknown field was accepted")
except RedcapError as e:
    assert message(e).startswith('"7","nope","1",'), e

# --- Records: exports in each format, flat and EAV ------------------------
step("export records flat json/csv/xml")
flat = p.export_records()
assert [r["record_id"] for r in flat] == ["1", "2", "3", "4", "5", "6"]
assert flat[1]["name"] == "Bob, \"B\"" and flat[3]["name"] == "Di & Co"
assert strings(csv_rows(p.export_records(format_type="csv"))) == strings(flat)
assert strings(xml_rows(p.export_records(format_type="xml"), "records")) == strings(flat)
step("export records eav json/csv/xml")
eav = p.export_records(record_type="eav")
assert {"record": "1", "field_name": "symptoms", "value": "1"} in eav, eav
assert {"record": "2", "field_name": "name", "value": "Bob, \"B\""} in eav
assert strings(csv_rows(p.export_records(format_type="csv", record_type="eav"))) == strings(eav)
assert strings(xml_rows(p.export_records(format_type="xml", record_type="eav"), "records")) == strings(eav)
step("export records filters and labels")
assert p.export_records(records=["1"], fields=["record_id", "arm"], raw_or_label="label") == \
    [{"record_id": "1", "arm": "A"}]
visit = p.export_records(records=["1"], forms=["visit"])
assert "symptoms___1" in visit[0] and "name" not in visit[0], visit
step("export records filter_logic and options")
# PyCap backfills the record ID field when `fields` is given.
assert [r["record_id"] for r in p.export_records(filter_logic="[age] > 35 or [name] = 'Eve'")] == ["1", "5"]
assert [r["record_id"] for r in p.export_records(filter_logic="[symptoms(1)] = '1' AND [arm] <> ''")] == ["1"]
assert [r["record_id"] for r in p.export_records(fields=["age"], filter_logic="[name] = ''")] == ["6"]
try:
    p.export_records(filter_logic="[age] >")
    raise AssertionError("bad filter logic was accepted")
except RedcapError as e:
    assert message(e).startswith('The parameter "filterLogic" is not valid logic'), e
from datetime import datetime
assert len(p.export_records(date_begin=datetime(2000, 1, 1))) == 6
assert p.export_records(date_end=datetime(2000, 1, 1)) == []
labelled = p.export_records(format_type="csv", fields=["record_id", "arm"], raw_or_label_headers="label")
# PHP's fputcsv quotes a cell holding a space.
assert labelled.splitlines()[0] == '"Record ID",Arm', labelled
assert p.export_field_names()[-1] == \
    {"original_field_name": "visit_complete", "choice_value": "", "export_field_name": "visit_complete"}
checkbox = p.export_records(records=["1"], fields=["symptoms"], export_checkbox_labels=True, raw_or_label="label")
assert checkbox[0]["symptoms___1"] == "Fever", checkbox
try:
    p.export_records(fields=["nope"])
    raise AssertionError("an unknown field was accepted")
except RedcapError as e:
    assert message(e) == "The following values in the parameter \"fields\" are not valid: 'nope'", e

# --- Users and rights ------------------------------------------------------
step("users")
users = p.export_users()
assert [u["username"] for u in users] == ["site_admin"]
assert users[0]["api_export"] == 1 and users[0]["user_rights"] == 1
assert p.import_users([{"username": "bob", "api_export": 1, "forms": {"demographics": 2, "visit": 0}}]) == 1
assert p.import_users("username,api_import,forms\ncarol,1,\"demographics:1,visit:1\"\n", import_format="csv") == 1
assert p.import_users("<?xml version=\"1.0\"?><users><item><username>dan</username><logging>1</logging>"
                      "</item></users>", import_format="xml") == 1
by_name = {u["username"]: u for u in p.export_users()}
assert set(by_name) == {"site_admin", "bob", "carol", "dan"}
assert by_name["bob"]["api_export"] == 1 and by_name["bob"]["api_import"] == 0
assert by_name["carol"]["api_import"] == 1 and by_name["dan"]["logging"] == 1
bob_forms = by_name["bob"]["forms"]
assert bob_forms["demographics"] in (2, 129), bob_forms
users_csv = csv_rows(p.export_users(format_type="csv"))
assert sorted(u["username"] for u in users_csv) == ["bob", "carol", "dan", "site_admin"]
users_xml = ET.fromstring(p.export_users(format_type="xml").strip())
assert sorted(i.find("username").text for i in users_xml) == ["bob", "carol", "dan", "site_admin"]

# --- Roles ----------------------------------------------------------------
step("roles")
assert p.import_user_roles([{"role_label": "Monitor", "api_export": "1"}]) == 1
roles = p.export_user_roles()
assert [r["role_label"] for r in roles] == ["Monitor"]
role = roles[0]["unique_role_name"]
assert role.startswith("U-"), role
assert csv_rows(p.export_user_roles(format_type="csv"))[0]["role_label"] == "Monitor"
assert p.import_user_role_assignment([{"username": "dan", "unique_role_name": role}]) == 1
mapping = {m["username"]: m["unique_role_name"] for m in p.export_user_role_assignment()}
assert mapping["dan"] == role and mapping["bob"] == "", mapping
assert {m["username"]: m["unique_role_name"] for m in
        csv_rows(p.export_user_role_assignment(format_type="csv"))}["dan"] == role

# --- DAGs and user-DAG mapping --------------------------------------------
step("dags")
assert p.import_dags([{"data_access_group_name": "Site A", "unique_group_name": ""}]) == 1
assert p.import_dags("data_access_group_name,unique_group_name\nSite B,\n", import_format="csv") == 1
dags = p.export_dags()
assert [d["unique_group_name"] for d in dags] == ["site_a", "site_b"], dags
assert [d["unique_group_name"] for d in csv_rows(p.export_dags(format_type="csv"))] == ["site_a", "site_b"]
assert [d["unique_group_name"] for d in xml_rows(p.export_dags(format_type="xml"), "dags")] == ["site_a", "site_b"]
# switch_dag: REDCap answers a switch it does not allow with HTTP 200 and an
# "ERROR: ..." body (§10.3); PyCap asks for CSV and raises on it.
for dag, text in [("site_a", "ERROR: User/DAG assignment not permitted"), ("nowhere", "ERROR: Invalid DAG")]:
    try:
        p.switch_dag(dag)
        raise AssertionError("switch_dag succeeded without a DAG Switcher")
    except RedcapError as e:
        assert str(e) == text, e
step("user-dag mapping")
assert p.import_user_dag_assignment([{"username": "bob", "redcap_data_access_group": "site_a"}]) == 1
assert p.import_user_dag_assignment("username,redcap_data_access_group\ncarol,site_b\n", import_format="csv") == 1
udm = {m["username"]: m["redcap_data_access_group"] for m in p.export_user_dag_assignment()}
assert udm["bob"] == "site_a" and udm["carol"] == "site_b" and udm["site_admin"] == "", udm
assert {m["username"]: m["redcap_data_access_group"] for m in
        csv_rows(p.export_user_dag_assignment(format_type="csv"))} == udm
# Importing rights without data_access_group drops the DAG (§4.6).
assert p.import_users([{"username": "bob", "api_export": 1}]) == 1
assert {u["username"]: u["data_access_group"] for u in p.export_users()}["bob"] == ""
# Records into DAGs, exported with the DAG column.
assert p.import_records([{"record_id": "1", "redcap_data_access_group": "site_a"}]) == {"count": 1}
with_dag = p.export_records(records=["1"], export_data_access_groups=True)
assert with_dag[0]["redcap_data_access_group"] == "site_a", with_dag

# --- Logging ---------------------------------------------------------------
step("logging")
log = p.export_logging()
assert log[0]["timestamp"] and len(log[0]["timestamp"]) == 16, log[0]
actions = [e["action"] for e in log]
assert "Create record (API) 1" in actions and "Update record (API) 6" in actions, actions
assert all(e["record"] == "2" for e in p.export_logging(log_type="record", record="2"))
assert p.export_logging(user="nobody") == []
site_a = [d for d in dags if d["unique_group_name"] == "site_a"][0]["data_access_group_id"]
dag_log = p.export_logging(log_type="record", dag=str(site_a))
assert dag_log and all(e["record"] == "1" for e in dag_log), dag_log
user_log = p.export_logging(log_type="user")
assert any("bob" in e["action"] for e in user_log), user_log
log_csv = p.export_logging(format_type="csv")
assert log_csv.startswith("timestamp,username,action,details,record"), log_csv[:80]
assert ET.fromstring(p.export_logging(format_type="xml").strip()).tag == "logs"

# --- Deletes -----------------------------------------------------------------
step("deletes")
assert p.generate_next_record_name() == "7"
assert p.delete_records(["2", "3"]) == 2
try:
    p.delete_records(["404"])
    raise AssertionError("deleting a missing record succeeded")
except RedcapError as e:
    assert message(e).endswith("The following records do not exist: 404"), e
assert p.export_logging()[0]["action"] == "Delete record (API) 3"
assert p.delete_user_roles([role]) == 1
assert p.delete_dags(["site_b"]) == 1
assert p.delete_users(["carol"]) == 1
assert sorted(u["username"] for u in p.export_users()) == ["bob", "dan", "site_admin"]

# --- Files in a File Upload field -------------------------------------------
step("files")
assert p.import_metadata(md + [{"field_name": "consent", "form_name": "demographics",
    "field_type": "file", "field_label": "Consent"}]) == len(md) + 1
p = Project(API, token)  # PyCap caches the metadata; a new handle sees the file field
content = b"signed consent\n\x00\xff\xfe"
assert p.import_file("1", "consent", "consent.txt", io.BytesIO(content)) == [{}]
data, headers = p.export_file("1", "consent")
assert data == content, data
assert headers == {"name": "consent.txt", "charset": "UTF-8"}, headers
# (PyCap adds the record ID field to `fields`.) A flat export shows the
# file's name (PyCap's doctest: 'upload_field': 'test_upload.txt'), an EAV
# one the stored doc id.
assert p.export_records(records=["1"], fields=["consent"]) == \
    [{"record_id": "1", "consent": "consent.txt"}]
eav = p.export_records(records=["1"], fields=["consent"], record_type="eav")
assert [(r["field_name"], r["value"].isdigit()) for r in eav] == \
    [("record_id", False), ("consent", True)] or \
    [(r["field_name"], r["value"].isdigit()) for r in eav] == \
    [("record_id", True), ("consent", True)], eav
try:
    p.export_file("404", "consent")
    raise AssertionError("exporting a file of a missing record succeeded")
except RedcapError as e:
    assert 'The record "404" does not exist' in message(e), e
assert p.delete_file("1", "consent") == [{}]
try:
    p.export_file("1", "consent")
    raise AssertionError("exporting a deleted file succeeded")
except RedcapError as e:
    assert "There is no file to download for this record" in message(e), e
actions = [e["action"] for e in p.export_logging(log_type="record", record="1")]
assert actions[:2] == ["Delete uploaded document (API) 1", "Upload document (API) 1"], actions
print("PyCap session OK")

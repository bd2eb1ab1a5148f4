"""PyCap's export_report against a running sandbox (run by tests/pycap.rs).

Usage: python pycap_reports.py API_URL SUPER_TOKEN
The admin endpoint's secret comes in the environment (SANDBOX_ADMIN_SECRET):
reports are defined through it (REDCap defines them in its web UI). Checks
the shapes PyCap's docstring shows (`[{'record_id': '1', ...}]` rows of the
report's fields), json, csv and xml (`df` needs pandas, which the pinned
venv does not hold), labels,
checkbox labels, the CSV delimiter, and REDCap's refusal of a report_id of
another project. Each step prints one line, so a failure shows how far the
session got.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET

import requests
from redcap import Project, RedcapError

API, SUPER = sys.argv[1], sys.argv[2]
BASE = API[: -len("api/")]
ADMIN = {"Authorization": "Bearer " + os.environ["SANDBOX_ADMIN_SECRET"]}


def step(name):
    print("step:", name, flush=True)


def create(title):
    r = requests.post(API, data={"token": SUPER, "content": "project", "format": "json",
        "data": json.dumps([{"project_title": title, "purpose": 0}])})
    assert r.status_code == 200 and len(r.text) == 32, r.text
    return Project(API, r.text)


def define(pid, report):
    r = requests.post(f"{BASE}sandbox/projects/{pid}/reports", json=report, headers=ADMIN)
    assert r.status_code == 200, r.text
    return str(r.json()["report_id"])


step("project, metadata, records")
p = create("PyCap reports")
pid = p.export_project_info()["project_id"]
metadata = [
    {"field_name": "record_id", "form_name": "form_1", "field_type": "text", "field_label": "Record ID"},
    {"field_name": "age", "form_name": "form_1", "field_type": "text", "field_label": "Age",
     "text_validation_type_or_show_slider_number": "integer"},
    {"field_name": "checkbox_field", "form_name": "form_1", "field_type": "checkbox",
     "field_label": "Checkbox", "select_choices_or_calculations": "1, Choice 1 | 2, Choice 2"},
]
assert p.import_metadata(metadata) == 3
assert p.import_records([
    {"record_id": "1", "age": "30", "checkbox_field___2": "1"},
    {"record_id": "2", "age": "50", "checkbox_field___1": "1"},
    {"record_id": "3", "age": "70"},
]) == {"count": 3}
older = define(pid, {"title": "Older", "fields": ["record_id", "checkbox_field"],
                     "filter_logic": "[age] > 40"})

step("export_report json")
rows = p.export_report(report_id=older)
assert rows == [
    {"record_id": "2", "checkbox_field___1": "1", "checkbox_field___2": "0"},
    {"record_id": "3", "checkbox_field___1": "0", "checkbox_field___2": "0"},
], rows

step("export_report labels and checkbox labels")
rows = p.export_report(report_id=older, raw_or_label="label")
assert rows[0]["checkbox_field___1"] == "Checked", rows
assert rows[0]["checkbox_field___2"] == "Unchecked", rows
rows = p.export_report(report_id=older, raw_or_label="label", export_checkbox_labels=True)
assert rows[0]["checkbox_field___1"] == "Choice 1", rows
assert rows[0]["checkbox_field___2"] == "", rows

step("export_report csv and xml")
text = p.export_report(report_id=older, format_type="csv", csv_delimiter=";")
assert text == "record_id;checkbox_field___1;checkbox_field___2\n2;1;0\n3;0;0\n", repr(text)
text = p.export_report(report_id=older, format_type="xml")
root = ET.fromstring(text)
assert root.tag == "records", text
assert [item.find("record_id").text for item in root] == ["2", "3"], text

step("a report of another project is refused")
other = create("PyCap other")
try:
    other.export_report(report_id=older)
    raise AssertionError("another project's report was exported")
except RedcapError as e:
    assert f"report_id={older} does not belong to this project" in str(e), e

print("PyCap reports OK")

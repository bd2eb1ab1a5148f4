"""A PyCap session against a running sandbox (run by tests/pycap.rs).

Usage: python pycap_session.py API_URL SUPER_TOKEN
Fails (non-zero exit) on the first answer that is not what REDCap gives.
"""
import json
import sys

import requests
from redcap import Project

API, SUPER = sys.argv[1], sys.argv[2]
r = requests.post(API, data={"token": SUPER, "content": "project", "format": "json",
    "data": json.dumps([{"project_title": "PyCap", "purpose": 0}])})
token = r.text[-32:]
p = Project(API, token)
assert str(p.export_version()) == "15.7.6"
assert p.export_project_info()["project_title"] == "PyCap"
md = [
 {"field_name": "record_id", "form_name": "demographics", "field_type": "text", "field_label": "Record ID"},
 {"field_name": "name", "form_name": "demographics", "field_type": "text", "field_label": "Name"},
 {"field_name": "symptoms", "form_name": "visit", "field_type": "checkbox", "field_label": "S", "select_choices_or_calculations": "1, Fever | 2, Cough"},
]
assert p.import_metadata(md) == 3
assert p.import_records([{"record_id": "1", "name": "Ann"}, {"record_id": "2", "symptoms___1": "1"}]) == {"count": 2}
assert [r["record_id"] for r in p.export_records()] == ["1", "2"]
print("export csv", p.export_records(format_type="csv"))
print("export xml", p.export_records(format_type="xml")[:120])
assert {"record": "2", "field_name": "symptoms", "value": "1"} in p.export_records(record_type="eav")
print("fields filter", p.export_records(fields=["name"]))
assert [u["username"] for u in p.export_users()] == ["site_admin"]
assert p.import_users([{"username": "bob", "api_export": 1}]) == 1
print("dags", p.import_dags([{"data_access_group_name": "Site A", "unique_group_name": ""}]))
assert p.export_dags()[0]["unique_group_name"] == "site_a"
print("udm", p.import_user_dag_assignment([{"username": "bob", "redcap_data_access_group": "site_a"}]))
print("export udm", p.export_user_dag_assignment())
print("roles", p.import_user_roles([{"role_label": "Monitor"}]))
print("export roles", [r["role_label"] for r in p.export_user_roles()])
print("role map", p.export_user_role_assignment())
print("field names", p.export_field_names()[:2])
print("instruments", p.export_instruments())
print("next", p.generate_next_record_name())
assert p.delete_records(["2"]) == 1
assert p.export_logging()[0]["action"] == "Delete record (API) 2"
assert p.delete_dags(["site_a"]) == 1
assert p.delete_users(["bob"]) == 1
print("PyCap session OK")

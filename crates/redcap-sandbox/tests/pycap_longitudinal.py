"""PyCap's longitudinal and repeating methods against a running sandbox (run by tests/pycap.rs).

Usage: python pycap_longitudinal.py API_URL SUPER_TOKEN
Checks each answer's shape as PyCap's doctests show it from REDCap
(`[{'arm_num': 1, 'name': 'Arm 1'}]`, events with integer `arm_num` and
`event_id`, counts for imports and deletes), not only that the calls return;
then a project made from REDCap XML the way PyCap's integration fixture makes
one (XML `data` plus `odm`). Each step prints one line, so a failure shows how
far the session got.
"""
import json
import sys

import requests
from redcap import Project, RedcapError

API, SUPER = sys.argv[1], sys.argv[2]


def step(name):
    print("step:", name, flush=True)


def create(longitudinal):
    r = requests.post(API, data={"token": SUPER, "content": "project", "format": "json",
        "data": json.dumps([{"project_title": "PyCap longitudinal", "purpose": 0,
                             "is_longitudinal": int(longitudinal)}])})
    assert r.status_code == 200 and len(r.text) == 32, r.text
    return Project(API, r.text)


step("create a longitudinal and a classic project")
p = create(True)
classic = create(False)
assert p.is_longitudinal is True
assert classic.is_longitudinal is False
info = p.export_project_info()
assert info["is_longitudinal"] == 1 and info["has_repeating_instruments_or_events"] == 0, info
metadata = [
    {"field_name": "record_id", "form_name": "form_1", "field_type": "text", "field_label": "Record ID"},
    {"field_name": "field_1", "form_name": "form_1", "field_type": "text", "field_label": "Field 1"},
    {"field_name": "visit_date", "form_name": "visit", "field_type": "text", "field_label": "Date",
     "text_validation_type_or_show_slider_number": "date_ymd"},
]
assert p.import_metadata(metadata) == 3

step("arms")
assert p.export_arms() == [{"arm_num": 1, "name": "Arm 1"}], p.export_arms()
assert p.import_arms([{"arm_num": 2, "name": "Arm 2"}]) == 1
assert p.export_arms(arms=[2]) == [{"arm_num": 2, "name": "Arm 2"}]
assert p.delete_arms([2]) == 1
assert p.export_arms() == [{"arm_num": 1, "name": "Arm 1"}]
try:
    classic.export_arms()
    raise AssertionError("a classic project exported arms")
except RedcapError as e:
    assert "You cannot export arms for classic projects" in str(e), e

step("events")
events = p.export_events()
assert len(events) == 1, events
e = events[0]
assert set(e) == {"event_name", "arm_num", "unique_event_name", "custom_event_label", "event_id"}, e
assert (e["event_name"], e["arm_num"], e["unique_event_name"], e["custom_event_label"]) == \
    ("Event 1", 1, "event_1_arm_1", ""), e
assert isinstance(e["event_id"], int), e
assert p.import_events([{"event_name": "Event 2", "arm_num": "1"}]) == 1
assert [x["unique_event_name"] for x in p.export_events()] == ["event_1_arm_1", "event_2_arm_1"]
assert p.delete_events(["event_2_arm_1"]) == 1
assert p.import_events([{"event_name": "Event 2", "arm_num": "1"}]) == 1

step("instrument-event mappings")
# The dictionary's instruments went to the project's one event.
fem = p.export_instrument_event_mappings()
assert fem == [{"arm_num": 1, "unique_event_name": "event_1_arm_1", "form": "form_1"},
               {"arm_num": 1, "unique_event_name": "event_1_arm_1", "form": "visit"}], fem
mappings = [
    {"arm_num": "1", "unique_event_name": "event_1_arm_1", "form": "form_1"},
    {"arm_num": "1", "unique_event_name": "event_2_arm_1", "form": "visit"},
]
assert p.import_instrument_event_mappings(mappings) == 2
csv = p.export_instrument_event_mappings(format_type="csv")
assert csv.splitlines() == ["arm_num,unique_event_name,form", "1,event_1_arm_1,form_1",
                            "1,event_2_arm_1,visit"], csv

step("repeating instruments and events")
assert p.export_repeating_instruments_events() == []
assert p.import_repeating_instruments_events(
    [{"event_name": "event_2_arm_1", "form_name": "visit", "custom_form_label": ""}]) == 1
rep = p.export_repeating_instruments_events()
assert rep == [{"event_name": "event_2_arm_1", "form_name": "visit", "custom_form_label": ""}], rep
# PyCap's doctest: the CSV export imports back as it is.
rep_csv = p.export_repeating_instruments_events(format_type="csv")
assert p.import_repeating_instruments_events(rep_csv, import_format="csv") == 1
assert p.export_project_info()["has_repeating_instruments_or_events"] == 1

step("records by event and instance")
rows = [
    {"record_id": "1", "redcap_event_name": "event_1_arm_1", "redcap_repeat_instrument": "",
     "redcap_repeat_instance": "", "field_1": "a"},
    {"record_id": "1", "redcap_event_name": "event_2_arm_1", "redcap_repeat_instrument": "visit",
     "redcap_repeat_instance": 1, "visit_date": "2026-01-01"},
    {"record_id": "1", "redcap_event_name": "event_2_arm_1", "redcap_repeat_instrument": "visit",
     "redcap_repeat_instance": 2, "visit_date": "2026-02-01"},
]
assert p.import_records(rows) == {"count": 1}
out = p.export_records()
assert [(r["redcap_event_name"], r["redcap_repeat_instrument"], r["redcap_repeat_instance"])
        for r in out] == [("event_1_arm_1", "", ""), ("event_2_arm_1", "", ""),
                          ("event_2_arm_1", "visit", 1), ("event_2_arm_1", "visit", 2)], out
assert list(out[0])[:4] == ["record_id", "redcap_event_name", "redcap_repeat_instrument",
                            "redcap_repeat_instance"], out[0]
# Labels: a one-arm project's event is its name, quoted as PHP's fputcsv
# quotes a cell with a space (PyCap's doctest shows '1,"Event 1",,1,Yes').
labelled = p.export_records(format_type="csv", raw_or_label="label", fields=["field_1"])
assert labelled.splitlines()[:2] == [
    "record_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance,field_1",
    '1,"Event 1",,,a'], labelled
only = p.export_records(events=["event_1_arm_1"])
assert [r["redcap_event_name"] for r in only] == ["event_1_arm_1"], only
eav = p.export_records(record_type="eav")
assert {"record": "1", "redcap_event_name": "event_2_arm_1", "redcap_repeat_instrument": "visit",
        "redcap_repeat_instance": 2, "field_name": "visit_date", "value": "2026-02-01"} in eav, eav
assert p.delete_records(["1"], event="event_2_arm_1", instrument="visit", repeat_instance=2) == 1
assert [r["redcap_repeat_instance"] for r in p.export_records()] == ["", "", 1]

step("project from REDCap XML, as PyCap's integration fixture creates it")
xml = requests.post(API, data={"token": p.token, "content": "project_xml",
                               "returnMetadataOnly": "false"}).text
assert xml.startswith('<?xml version="1.0" encoding="UTF-8" ?>') and "<ClinicalData" in xml, xml[:200]
info_xml = """<?xml version="1.0" encoding="UTF-8" ?>
    <item>
    <project_title>PyCap from XML</project_title>
    <purpose>0</purpose>
    </item>"""
r = requests.post(API, data={"token": SUPER, "content": "project", "format": "xml",
                             "data": info_xml, "odm": xml})
assert r.status_code == 200, r.text
copy = Project(API, r.text[-32:])
assert copy.is_longitudinal is True
strip = lambda evs: [{k: v for k, v in e.items() if k != "event_id"} for e in evs]
assert strip(copy.export_events()) == strip(p.export_events())
assert copy.export_instrument_event_mappings() == p.export_instrument_event_mappings()
assert copy.export_repeating_instruments_events() == p.export_repeating_instruments_events()
assert copy.export_records() == p.export_records()
assert copy.export_project_info()["project_title"] == "PyCap from XML"

print("PyCap longitudinal OK")

"""PyCap's File Repository methods against a running sandbox (run by tests/pycap.rs).

Usage: python pycap_file_repository.py API_URL SUPER_TOKEN
The admin endpoint's secret comes in the environment (SANDBOX_ADMIN_SECRET).
Checks each answer's shape as PyCap's own doctests and integration fixtures
expect it from REDCap, not only that the calls return. Each step prints one
line, so a failure shows how far the session got.
"""
import csv
import io
import json
import os
import sys
import tempfile
import xml.etree.ElementTree as ET

import requests
from redcap import Project, RedcapError

API, SUPER = sys.argv[1], sys.argv[2]
BASE = API[: -len("api/")]
ADMIN = {"Authorization": "Bearer " + os.environ["SANDBOX_ADMIN_SECRET"]}


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


def user_token(pid, row):
    r = requests.post(f"{BASE}sandbox/projects/{pid}/users", json=row, headers=ADMIN)
    assert r.status_code == 200, r.text
    r = requests.post(f"{BASE}sandbox/projects/{pid}/users/{row['username']}/token", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["token"]


step("create project")
r = requests.post(API, data={"token": SUPER, "content": "project", "format": "json",
    "data": json.dumps([{"project_title": "PyCap File Repository", "purpose": 0}])})
assert r.status_code == 200 and len(r.text) == 32, r.text
p = Project(API, r.text)
pid = p.export_project_info()["project_id"]

# --- Create folders: [{'folder_id': <int>}] in JSON; CSV and XML as REDCap writes them
step("create_folder_in_repository")
created = p.create_folder_in_repository(name="New Folder")
assert isinstance(created, list) and len(created) == 1 and list(created[0]) == ["folder_id"], created
new_folder = created[0]["folder_id"]
assert isinstance(new_folder, int), created
test_folder = p.create_folder_in_repository(name="test")[0]["folder_id"]
sub = p.create_folder_in_repository(name="sub", folder_id=test_folder)[0]["folder_id"]
as_csv = p.create_folder_in_repository(name="csv folder", format_type="csv", return_format_type="csv")
rows = list(csv.DictReader(io.StringIO(as_csv)))
assert list(rows[0]) == ["folder_id"] and rows[0]["folder_id"].isdigit(), as_csv
as_xml = ET.fromstring(p.create_folder_in_repository(name="xml folder", format_type="xml", return_format_type="xml").strip())
assert as_xml.tag == "items" and as_xml[0][0].tag == "folder_id" and as_xml[0][0].text.isdigit()
refused(lambda: p.create_folder_in_repository(name="New Folder"),
        'The folder name "New Folder" could not be created because a folder with that same name already exists')
refused(lambda: p.create_folder_in_repository(name="x", folder_id=4040),
        "The File Repository folder folder_id=4040 does not exist")

# --- PyCap's own doctest fixture (tests/integration/conftest.py,
# add_files_to_repository), as it runs it: the second upload reuses the file
# object already read to its end, so it sends an empty file.
step("PyCap's add_files_to_repository fixture")
fixture = Project(API, requests.post(API, data={"token": SUPER, "content": "project", "format": "json",
    "data": json.dumps([{"project_title": "PyCap doctest", "purpose": 0}])}).text)
fixture_folder = fixture.create_folder_in_repository("test").pop()
tmp_file = tempfile.NamedTemporaryFile()
with open(tmp_file.name, mode="w", encoding="utf-8") as tmp:
    tmp.write("hello")
assert fixture.import_file_into_repository(file_name="test.txt", file_object=tmp_file) == [{}]
assert fixture.import_file_into_repository(file_name="test_in_folder.txt", file_object=tmp_file,
                                           folder_id=fixture_folder["folder_id"]) == [{}]
fx_dir = fixture.export_file_repository()
fx_text = [file for file in fx_dir if file["name"] == "test.txt"].pop()
assert fixture.export_file_from_repository(doc_id=fx_text["doc_id"]) == \
    (b"hello", {"name": "test.txt", "charset": "UTF-8"})
fx_folder = [folder for folder in fx_dir if folder["name"] == "test"].pop()
fx_subdir = fixture.export_file_repository(folder_id=fx_folder["folder_id"])
fx_file = [file for file in fx_subdir if file["name"] == "test_in_folder.txt"].pop()
assert fixture.export_file_from_repository(doc_id=fx_file["doc_id"]) == \
    (b"", {"name": "test_in_folder.txt", "charset": "UTF-8"})
assert fixture.delete_file_from_repository(doc_id=fx_file["doc_id"]) == [{}]
assert fixture.export_file_repository(folder_id=fx_folder["folder_id"]) == []

# --- Import files: PyCap answers [{}] (REDCap's empty 200) ----------------------
step("import_file_into_repository")
assert p.import_file_into_repository(file_name="test.txt", file_object=io.BytesIO(b"hello")) == [{}]
assert p.import_file_into_repository(file_name="test_in_folder.txt", file_object=io.BytesIO(b"in folder"),
                                     folder_id=test_folder) == [{}]
assert p.import_file_into_repository(file_name="test.txt", file_object=io.BytesIO(b"again")) == [{}]

# --- List: folders then files, {'folder_id'|'doc_id': <int>, 'name': <str>} ----
step("export_file_repository")
file_dir = p.export_file_repository()
assert [e["name"] for e in file_dir] == \
    ["csv folder", "New Folder", "test", "xml folder", "test (1).txt", "test.txt"], file_dir
assert file_dir[1] == {"folder_id": new_folder, "name": "New Folder"}, file_dir
for e in file_dir:
    assert set(e) in ({"folder_id", "name"}, {"doc_id", "name"}), e
    assert isinstance(e.get("folder_id", e.get("doc_id")), int), e
test_dir = p.export_file_repository(folder_id=test_folder)
assert [(sorted(e), e["name"]) for e in test_dir] == \
    [(["folder_id", "name"], "sub"), (["doc_id", "name"], "test_in_folder.txt")], test_dir
assert p.export_file_repository(folder_id=sub) == []
listing_csv = p.export_file_repository(folder_id=test_folder, format_type="csv", return_format_type="csv")
rows = list(csv.DictReader(io.StringIO(listing_csv)))
assert [list(r) for r in rows] == [["folder_id", "doc_id", "name"]] * 2, listing_csv
assert rows[0]["doc_id"] == "" and rows[1]["folder_id"] == "", listing_csv
listing_xml = ET.fromstring(p.export_file_repository(folder_id=test_folder, format_type="xml", return_format_type="xml").strip())
assert [[c.tag for c in item] for item in listing_xml] == [["folder_id", "name"], ["doc_id", "name"]]

# --- Export: (bytes, {'name': ..., 'charset': 'UTF-8'}) as PyCap's doctest shows --
step("export_file_from_repository")
text_file = [f for f in file_dir if f["name"] == "test.txt"].pop()
assert p.export_file_from_repository(doc_id=text_file["doc_id"]) == \
    (b"hello", {"name": "test.txt", "charset": "UTF-8"})
renamed = [f for f in file_dir if f["name"] == "test (1).txt"].pop()
assert p.export_file_from_repository(doc_id=renamed["doc_id"]) == \
    (b"again", {"name": "test (1).txt", "charset": "UTF-8"})
# PyCap asks for JSON errors here and cannot tell them from a file: it hands
# back REDCap's error body with the answer's content-type parameters.
assert p.export_file_from_repository(doc_id=999999) == \
    (b'{"error":"Invalid doc_id or missing doc_id"}', {"charset": "utf-8"})

# --- Delete: [{}]; the file leaves the listing --------------------------------
step("delete_file_from_repository")
test_file = [f for f in test_dir if f["name"] == "test_in_folder.txt"].pop()
assert p.delete_file_from_repository(doc_id=test_file["doc_id"]) == [{}]
assert [e["name"] for e in p.export_file_repository(folder_id=test_folder)] == ["sub"]
# PyCap answers [{}] whatever REDCap says; the wire shows the refusal.
r = requests.post(API, data={"token": p.token, "content": "fileRepository", "action": "delete",
                             "doc_id": "999999", "returnFormat": "json"})
assert (r.status_code, r.json()) == (400, {"error": "Invalid doc_id or missing doc_id"}), r.text

# --- DAG- and role-restricted folders ----------------------------------------
step("restricted folders")
assert p.import_dags([{"data_access_group_name": "Site A", "unique_group_name": ""},
                      {"data_access_group_name": "Site B", "unique_group_name": ""}]) == 2
dag_ids = {d["unique_group_name"]: d["data_access_group_id"] for d in p.export_dags()}
a_only = p.create_folder_in_repository(name="A only", dag_id=dag_ids["site_a"])[0]["folder_id"]
rights = {"file_repository": 1, "api_export": 1, "api_import": 1}
a = Project(API, user_token(pid, dict(rights, username="ann", data_access_group="site_a")))
b = Project(API, user_token(pid, dict(rights, username="ben", data_access_group="site_b")))
assert "A only" in [e["name"] for e in a.export_file_repository()]
assert "A only" not in [e["name"] for e in b.export_file_repository()]
assert a.import_file_into_repository(file_name="a.txt", file_object=io.BytesIO(b"a"), folder_id=a_only) == [{}]
assert [e["name"] for e in a.export_file_repository(folder_id=a_only)] == ["a.txt"]
refused(lambda: b.export_file_repository(folder_id=a_only),
        f"The File Repository folder folder_id={a_only} does not exist or else you do not have "
        "permission to that folder because it is DAG-restricted or Role-restricted.")
# PyCap's import answers [{}] whatever REDCap says; the wire shows the refusal.
assert b.import_file_into_repository(file_name="b.txt", file_object=io.BytesIO(b"b"), folder_id=a_only) == [{}]
r = requests.post(API, data={"token": b.token, "content": "fileRepository", "action": "import",
                             "folder_id": str(a_only), "returnFormat": "json"},
                  files={"file": ("b.txt", io.BytesIO(b"b"))})
assert r.status_code == 400 and "DAG-restricted or Role-restricted" in r.json()["error"], r.text
assert [e["name"] for e in a.export_file_repository(folder_id=a_only)] == ["a.txt"]
refused(lambda: b.create_folder_in_repository(name="b", folder_id=a_only), "DAG-restricted or Role-restricted")

# --- Rights ----------------------------------------------------------------
step("rights")
no_right = Project(API, user_token(pid, {"username": "nora", "api_export": 1, "api_import": 1}))
refused(lambda: no_right.export_file_repository(),
        'you do not have "File Repository" rights, which are required for this operation.')
refused(lambda: no_right.create_folder_in_repository(name="n"), '"File Repository" rights')
# Listing passes REDCap's entry gate without API rights; creating needs API Import.
lister = Project(API, user_token(pid, {"username": "lis", "file_repository": 1}))
assert [e["name"] for e in lister.export_file_repository()][:2] == ["A only", "csv folder"]
refused(lambda: lister.create_folder_in_repository(name="n"), "You do not have API Import/Update privileges")

# --- Logging ---------------------------------------------------------------
step("logging")
details = [e["details"] for e in p.export_logging(log_type="manage")]
for d in ["Create folder in File Repository (API)", "Upload file to File Repository (API)",
          "Export list of files/folders from File Repository (API)",
          "Download file from File Repository (API)", "Delete file from File Repository (API)"]:
    assert d in details, (d, details)

print("PyCap File Repository OK")

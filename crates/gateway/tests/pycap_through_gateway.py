"""PyCap, unchanged, talking to REDCap through the gateway with client keys.

argv: gateway API URL, etl key, site key, reader key. Prints "OK" at the end;
any failed expectation raises.
"""
import sys

from redcap import Project
from redcap.request import RedcapError

url, etl_key, site_key, reader_key = sys.argv[1:5]

# A study-wide client exports everything, in JSON and CSV.
etl = Project(url, etl_key)
records = etl.export_records()
assert {r["record_id"] for r in records} == {"1", "2", "3"}, records
csv = etl.export_records(format_type="csv")
assert csv.splitlines()[0].startswith("record_id"), csv
assert etl.export_records(records=["2"])[0]["age"] == "51"

# A site client sees its site only, and imports; the gateway learns the ids.
site = Project(url, site_key)
mine = site.export_records()
assert [r["record_id"] for r in mine] == ["3"], mine
assert site.import_records([{"record_id": "30", "age": "70"}]) == {"count": 1}
assert site.import_records([{"record_id": "31", "age": "71"}], return_content="ids") == ["31"]

# A client without import rights gets REDCap's own refusal shape.
reader = Project(url, reader_key)
try:
    reader.import_records([{"record_id": "99", "age": "1"}])
except RedcapError as e:
    assert "does not allow client" in str(e), e
else:
    raise AssertionError("the reader could import")

# An unknown key is refused as REDCap refuses an unknown token.
try:
    Project(url, "0123456789ABCDEF0123456789ABCDEF").export_records()
except RedcapError as e:
    assert "You do not have permissions to use the API" in str(e), e
else:
    raise AssertionError("an unknown key was accepted")

print("OK")

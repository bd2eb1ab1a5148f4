"""A pytest plugin that runs PyCap 2.7.0's own test suites, unchanged,
against a redcap-sandbox (crates/redcap-sandbox/tests/pycap.rs loads it with
`-p pycap_suite_plugin`).

PyCap's integration fixtures and doctests talk to the demo server whose API
URL is written into them (`tests/integration/conftest.py`,
`redcap/project.py`). This plugin changes none of their files: it sends
every `requests` call to that URL to the sandbox instead
(`SANDBOX_API_URL`), and the sandbox is started with that server's public
URL, so the survey links it answers start as PyCap's tests expect.

Before the tests run it checks that what runs is PyCap 2.7.0 as published:
the installed `redcap` package is version 2.7.0, and each file taken
from the PyCap checkout named by `PYCAP_SOURCE` (its tests and data at
the tag 2.7.0, commit ceda5de9449581359e1b65f7e278cec675a9d873) has the
git blob hash it has there.
"""

import hashlib
import importlib.metadata
import os
import pathlib

import requests.sessions

DEMO = "https://redcapdemo.vumc.org/api/"
VERSION = "2.7.0"

# `git ls-tree -r 2.7.0` of PyCap, for the files the suites use.
BLOBS = {
    "LICENSE": "c3414314f6782233f019ab024d5693118b5d5e75",
    "pytest.ini": "064e25f920515232db2da068c065b654b9b52197",
    "tests/__init__.py": "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391",
    "tests/data/doctest_project.xml": "495236a245c31e15537b6b3b794e58b89e4bf794",
    "tests/data/test_long_project.xml": "45fb5d7536aa305d40d5c8b46c67e5a8d20363b8",
    "tests/data/test_simple_project.xml": "1cb8f527686cbe211deb1763d10b54719e0a1d4f",
    "tests/integration/__init__.py": "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391",
    "tests/integration/conftest.py": "e9b82cf8084a6a6fa9bc5cc100a6115a8f5a9539",
    "tests/integration/test_long_project.py": "e23cb390095a6671fa3167d3c889e3701cf5244c",
    "tests/integration/test_simple_project.py": "4c660a36752d1e1ac597037210d3acfd98ae7e73",
}


def _git_blob(path: pathlib.Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _check_unchanged(root: pathlib.Path) -> None:
    installed = importlib.metadata.version("pycap")
    if installed != VERSION:
        raise RuntimeError(f"PyCap {installed} is installed; these suites are {VERSION}'s")
    for name, blob in BLOBS.items():
        got = _git_blob(root / name)
        if got != blob:
            raise RuntimeError(
                f"{name} differs from PyCap {VERSION}'s (git blob {got}, not {blob}): "
                "the suites must run unchanged"
            )


_request = requests.sessions.Session.request


def _to_sandbox(self, method, url, *args, **kwargs):
    if isinstance(url, str) and url.startswith(DEMO):
        url = os.environ["SANDBOX_API_URL"] + url[len(DEMO):]
    return _request(self, method, url, *args, **kwargs)


def pytest_configure(config):
    _check_unchanged(pathlib.Path(os.environ["PYCAP_SUITE_DIR"]))
    if not os.environ.get("SANDBOX_API_URL", "").endswith("/api/"):
        raise RuntimeError("SANDBOX_API_URL must be the sandbox's API URL (…/api/)")
    requests.sessions.Session.request = _to_sandbox

"""The published API documents validate with independent validators: each service's OpenAPI with
openapi-spec-validator, and each committed AsyncAPI document with the AsyncAPI project's own
parser (@asyncapi/parser from npm, run by node)."""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from demo.pipeline import REPO, SERVICES

TOOL = REPO / "tools" / "asyncapi-validate"
ASYNCAPI = REPO / "shared" / "schemas" / "asyncapi"


@pytest.mark.parametrize("service", SERVICES)
def test_openapi_document_is_valid(service: str) -> None:
    runtime = importlib.import_module(f"services.{service}.app").build()
    document = runtime.api.openapi()
    validate(document)  # raises with the path of the first violation
    assert any(path.startswith("/v1/") for path in document["paths"]), "no /v1 endpoints documented"


def _node_tool() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are needed to run the AsyncAPI parser (apt-get install -y nodejs npm)")
    if not (TOOL / "node_modules" / "@asyncapi" / "parser").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=TOOL, check=True, capture_output=True)
    return Path(node)


def test_asyncapi_documents_are_valid() -> None:
    node = _node_tool()
    documents = sorted(ASYNCAPI.glob("*.json"))
    assert {d.stem for d in documents} == set(SERVICES)
    result = subprocess.run(
        [str(node), "validate.mjs", *map(str, documents)], cwd=TOOL, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("0 error(s)") == len(documents), result.stdout


def test_the_asyncapi_validator_rejects_a_broken_document(tmp_path: Path) -> None:
    node = _node_tool()
    broken = tmp_path / "broken.json"
    broken.write_text('{"asyncapi": "3.0.0", "info": {"title": "x"}, "channels": {"c": {"address": 7}}}')
    result = subprocess.run(
        [str(node), "validate.mjs", str(broken)], cwd=TOOL, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout

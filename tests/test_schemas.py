"""The JSON Schemas shipped in docs/ are the ones the code generates (`edgesim schema scenario|profile`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profilers.schema import profile_json_schema
from simulator.scenario import scenario_json_schema

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("name,generate", [("scenario", scenario_json_schema), ("profile", profile_json_schema)])
def test_shipped_schema_is_the_generated_one(name, generate):
    shipped = json.loads((DOCS / f"{name}.schema.json").read_text())
    assert shipped == json.loads(json.dumps(generate())), (
        f"docs/{name}.schema.json is stale: run `edgesim schema {name} --out docs/{name}.schema.json`")

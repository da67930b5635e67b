"""The published JSON Schema of ``memos export`` matches the code and real exports."""

from __future__ import annotations

import json
from dataclasses import fields
from importlib import resources

import jsonschema
import pytest

from memos_cli.core.memory import KINDS, SOURCES, STATUSES, TIERS, Memory, Version
from memos_cli.core.transfer import EXPORT_VERSION


def schema() -> dict:
    return json.loads((resources.files("memos_cli.data") / "export.schema.json").read_text("utf-8"))


def validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema())
    return jsonschema.Draft202012Validator(schema())


def test_export_schema_lists_exactly_the_fields_and_values_memos_writes():
    defs = schema()["$defs"]
    assert list(defs["memory"]["properties"]) == [f.name for f in fields(Memory)]
    assert defs["memory"]["required"] == [f.name for f in fields(Memory)]
    assert list(defs["version"]["properties"]) == [f.name for f in fields(Version)]
    assert defs["memory"]["properties"]["kind"]["enum"] == list(KINDS)
    assert defs["memory"]["properties"]["source"]["enum"] == list(SOURCES)
    assert defs["memory"]["properties"]["status"]["enum"] == list(STATUSES)
    assert defs["memory"]["properties"]["tier"]["enum"] == list(TIERS)
    assert max(defs["header"]["properties"]["memos_export"]["enum"]) == EXPORT_VERSION


def test_real_jsonl_and_json_exports_validate(cli, tmp_path):
    stamp = "2026-01-02T03:04:05Z"
    client = {"id": "00112233445566aa", "text": "Prefers tea to coffee", "kind": "preference",
              "source": "mcp", "source_ref": "claude-ai", "created_at": stamp, "updated_at": stamp}
    (tmp_path / "in.jsonl").write_text(json.dumps(client) + "\n", "utf-8")
    assert cli("import", str(tmp_path / "in.jsonl")).code == 0
    made = json.loads(cli("remember", "My passport expires in May", "--tag", "travel",
                          "--at", "2025-05-01", "--json").out)
    assert cli("update", made["id"], "My passport expires in June").code == 0
    lines = cli("export", "--format", "jsonl").out.splitlines()
    check = validator()
    for line in lines:
        check.validate(json.loads(line))
    assert json.loads(lines[0]) == {"memos_export": 2}
    assert len(lines) == 3
    document = json.loads(cli("export", "--format", "json").out)
    check.validate(document)
    assert any(m["history"] for m in document["memories"])


@pytest.mark.parametrize("change", [{"kind": "command"}, {"extra": 1}, {"importance": 2},
                                    {"id": "XYZ"}, {"text": " "}])
def test_export_schema_rejects_what_memos_would_not_write(change):
    stamp = "2026-01-02T03:04:05Z"
    record = Memory(id="0123456789abcdef", text="ok", created_at=stamp, updated_at=stamp).to_dict()
    validator().validate(record)
    with pytest.raises(jsonschema.ValidationError):
        validator().validate({**record, **change})

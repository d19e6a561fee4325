"""Render the config reference (docs/config-reference.md) from the pydantic JSON schema."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

HEADER = """# Config reference

Generated from the schema by `make docs` (`lmtune config reference`); a test fails when this file is
stale. Every key below can be set in YAML or overridden on the command line as `section.key=value`.
"""


def _type_of(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "const" in prop:
        return json.dumps(prop["const"])
    if "enum" in prop:
        return " \\| ".join(json.dumps(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " \\| ".join(_type_of(p, defs) for p in prop["anyOf"])
    if "oneOf" in prop:
        return " \\| ".join(_type_of(p, defs) for p in prop["oneOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list[{_type_of(prop.get('items', {}), defs)}]"
    if kind == "object" and "additionalProperties" in prop:
        return f"dict[str, {_type_of(prop['additionalProperties'], defs)}]"
    return str(kind)


def _default(prop: dict[str, Any], required: bool) -> str:
    if "default" not in prop:
        return "required" if required else "(defaults)"
    value = prop["default"]
    if isinstance(value, dict) and value:
        return "see section"
    return f"`{json.dumps(value)}`"


def _section(title: str, schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    lines = [f"## {title}", ""]
    if schema.get("description"):
        lines += [" ".join(schema["description"].split()), ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        ref = defs.get(prop.get("$ref", "").rsplit("/", 1)[-1], {})
        desc = " ".join(prop.get("description", ref.get("description", "")).split()).replace("|", "\\|")
        lines.append(f"| `{name}` | {_type_of(prop, defs)} | {_default(prop, name in required)} | {desc} |")
    return [*lines, ""]


def render_reference(cls: type[BaseModel]) -> str:
    """Markdown tables: the top-level model, then every nested model in schema order."""
    schema = cls.model_json_schema()
    defs = schema.get("$defs", {})
    out = [HEADER]
    out += _section(f"{cls.__name__} (top level)", schema, defs)
    for name in sorted(defs):
        out += _section(name, defs[name], defs)
    return "\n".join(out).rstrip() + "\n"

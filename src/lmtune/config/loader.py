"""YAML + dotted overrides -> strict, typed config. Unknown keys fail with a did-you-mean."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lmtune.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into its key path and a value parsed as a YAML scalar."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"override {item!r}: value is not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `a.b=value` override set (creating sections as needed)."""
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for k in keys[:-1]:
            child = node.get(k)
            if not isinstance(child, dict):
                child = {}
                node[k] = child
            node = child
        node[keys[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a one-line error for a missing file or bad YAML."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: config file is not UTF-8") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _model_classes(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold directly (unwrapping Optional/Union/Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_classes(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _model_classes(a)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _list_item_classes(annotation: Any) -> list[type[BaseModel]]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _list_item_classes(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _list_item_classes(a)]
    if origin is list:
        return _model_classes(typing.get_args(annotation)[0])
    return []


def _pick(
    classes: list[type[BaseModel]], value: dict[str, Any], default: Any = None
) -> type[BaseModel] | None:
    """Choose the union member a mapping is for, by its `type` tag (or the field default's tag)."""
    if len(classes) == 1:
        return classes[0]
    tag = value.get("type", getattr(default, "type", None))
    for cls in classes:
        field = cls.model_fields.get("type")
        if field is not None and tag in typing.get_args(field.annotation):
            return cls
    return None


def check_keys(data: dict[str, Any], cls: type[BaseModel], prefix: str = "") -> None:
    """Fail on the first key `cls` does not define, naming the closest valid key."""
    for key, value in data.items():
        where = f"{prefix}{key}"
        field = cls.model_fields.get(key)
        if field is None:
            valid = sorted(cls.model_fields)
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else f"valid keys: {', '.join(valid)}"
            raise ConfigError(f"unknown config key '{where}': {hint}")
        if isinstance(value, dict):
            default = field.get_default(call_default_factory=True)
            if (
                "type" not in value
                and isinstance(default, BaseModel)
                and "type" in type(default).model_fields
            ):
                value["type"] = default.type  # type: ignore[attr-defined]
            sub = _pick(_model_classes(field.annotation), value, default)
            if sub is not None:
                check_keys(value, sub, f"{where}.")
        elif isinstance(value, list):
            item_classes = _list_item_classes(field.annotation)
            for i, item in enumerate(value):
                sub = _pick(item_classes, item) if isinstance(item, dict) else None
                if sub is not None:
                    check_keys(item, sub, f"{where}[{i}].")


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    if not first["loc"]:  # a check across sections (RunConfig's validator): its message names the fields
        return f"{first['msg']}{more}"
    loc = ".".join(str(p) for p in first["loc"])
    return f"config field '{loc}': {first['msg']}{more}"


def build(cls: type[M], data: dict[str, Any]) -> M:
    """Validate a mapping into `cls`, turning pydantic's errors into one clear ConfigError line."""
    check_keys(data, cls)
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def load(cls: type[M], path: str | Path | None, overrides: list[str] | None = None) -> M:
    """Read YAML (or start empty), apply dotted overrides, validate strictly into `cls`."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    where = f"{path}: " if path is not None else ""
    try:
        return build(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


def dump(cfg: BaseModel) -> str:
    """The resolved config as YAML (every default filled in)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

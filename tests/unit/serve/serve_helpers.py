"""Helpers shared by the server tests: request bodies, SSE and Prometheus text parsing."""

from __future__ import annotations

import re
from typing import Any

MODEL = "model"  # the tiny fixture folder is named `model`, the default served name


def chat_body(content: str = "how many apples", **extra: Any) -> dict[str, Any]:
    """A small valid request (greedy, 8 tokens) with `extra` fields merged in."""
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 8,
        "temperature": 0,
    } | extra


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of a Prometheus text exposition: (name, labels) -> value; every line must parse."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparseable exposition line: {line!r}"
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def sse_events(text: str) -> list[str]:
    """The `data:` payloads of a Server-Sent Events body, in order."""
    events = [block for block in text.split("\n\n") if block.strip()]
    assert all(e.startswith("data: ") for e in events), events
    return [e[len("data: ") :] for e in events]

"""The hand-written Prometheus registry renders valid text exposition with the right numbers."""

from __future__ import annotations

import math
import re

import pytest

from lmtune.monitor.metrics import Registry, format_value

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def _check_and_parse(text: str) -> dict[str, float]:
    """Validate the exposition structure and return `name{labels}` -> value."""
    assert text.endswith("\n")
    typed: dict[str, str] = {}
    helped: set[str] = set()
    samples: dict[str, float] = {}
    for line in text.rstrip("\n").split("\n"):
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge", "histogram")
            typed[name] = kind
        else:
            m = _SAMPLE.match(line)
            assert m, line
            name = m.group(1)
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
            assert family in typed and family in helped, f"sample before its HELP/TYPE: {line}"
            samples[name + (m.group(2) or "")] = float(m.group(3).replace("+Inf", "inf"))
    return samples


def test_counter_gauge_histogram_render() -> None:
    reg = Registry()
    hits = reg.counter("hits_total", "Hits.", ("code",))
    load = reg.gauge("load", "Load.")
    lat = reg.histogram("lat_seconds", "Latency.", buckets=(0.1, 1.0, 10.0))
    hits.inc(code="200")
    hits.inc(2, code="200")
    hits.inc(code="500")
    load.inc()
    load.inc()
    load.dec()
    for v in (0.05, 0.1, 0.5, 2.0, 50.0):
        lat.observe(v)

    s = _check_and_parse(reg.render())
    assert s['hits_total{code="200"}'] == 3
    assert s['hits_total{code="500"}'] == 1
    assert s["load"] == 1
    # cumulative: <=0.1 holds 0.05 and 0.1 (le is inclusive)
    assert s['lat_seconds_bucket{le="0.1"}'] == 2
    assert s['lat_seconds_bucket{le="1"}'] == 3
    assert s['lat_seconds_bucket{le="10"}'] == 4
    assert s['lat_seconds_bucket{le="+Inf"}'] == 5
    assert s["lat_seconds_count"] == 5
    assert s["lat_seconds_sum"] == pytest.approx(52.65)
    assert lat.count() == 5 and hits.value(code="200") == 3


def test_unlabelled_metrics_start_at_zero_and_labelled_ones_empty() -> None:
    reg = Registry()
    reg.counter("a_total", "A.")
    reg.counter("b_total", "B.", ("x",))
    reg.histogram("h", "H.", buckets=(1.0,))
    text = reg.render()
    s = _check_and_parse(text)
    assert s["a_total"] == 0
    assert not any(k.startswith("b_total") for k in s)
    assert "# TYPE b_total counter" in text
    assert s['h_bucket{le="+Inf"}'] == 0 and s["h_count"] == 0


def test_label_values_are_escaped() -> None:
    reg = Registry()
    c = reg.counter("c_total", "C.", ("path",))
    c.inc(path='a"b\\c\nd')
    text = reg.render()
    assert 'c_total{path="a\\"b\\\\c\\nd"} 1' in text
    _check_and_parse(text)


def test_misuse_is_refused() -> None:
    reg = Registry()
    c = reg.counter("c_total", "C.", ("code",))
    with pytest.raises(ValueError, match="cannot decrease"):
        c.inc(-1, code="200")
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(status="200")
    with pytest.raises(ValueError, match="already registered"):
        reg.gauge("c_total", "again")


def test_format_value() -> None:
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"

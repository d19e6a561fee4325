"""A tiny Prometheus registry: counters, gauges and histograms rendered in the text exposition format.

Written by hand (no prometheus_client dependency). The format, version 0.0.4:

    # HELP <name> <doc>
    # TYPE <name> counter|gauge|histogram
    <name>{label="value",...} <number>

A histogram named `x` exposes cumulative `x_bucket{le="..."}` samples (ending with `le="+Inf"`),
`x_sum` and `x_count`. Every metric is safe to update from several threads.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Content-Type a /metrics endpoint answers with."""

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Latency buckets in seconds (upper bounds; `+Inf` is always added)."""

LabelValues = tuple[str, ...]


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: integers without a dot, infinities as `+Inf`/`-Inf`."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)) + "}"


class _Metric:
    kind = ""

    def __init__(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"metric {self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        doc = self.doc.replace("\\", "\\\\").replace("\n", "\\n")
        return [f"# HELP {self.name} {doc}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class _Scalar(_Metric):
    """A value per label set (counter or gauge)."""

    def __init__(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, doc, labelnames)
        self._values: dict[LabelValues, float] = {} if labelnames else {(): 0.0}

    def _add(self, amount: float, labels: dict[str, str]) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        """The current value for one label set (0 when never touched)."""
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_label_text(self.labelnames, k)} {format_value(v)}" for k, v in items]


class Counter(_Scalar):
    """A monotonically increasing count. By convention its name ends in `_total`."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add `amount` (must be >= 0) to the series for `labels`."""
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease (inc by {amount})")
        self._add(amount, labels)


class Gauge(_Scalar):
    """A value that goes up and down (e.g. requests in flight)."""

    kind = "gauge"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._add(amount, labels)

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self._add(-amount, labels)

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = value


class Histogram(_Metric):
    """Observations counted into cumulative buckets, plus their sum and count."""

    kind = "histogram"

    def __init__(
        self, name: str, doc: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        super().__init__(name, doc, labelnames)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds:
            raise ValueError(f"histogram {name} needs at least one finite bucket")
        self.bounds = (*bounds, math.inf)
        # per label set: counts per bucket (non-cumulative), sum
        self._series: dict[LabelValues, tuple[list[int], list[float]]] = {}
        if not labelnames:
            self._series[()] = ([0] * len(self.bounds), [0.0])

    def observe(self, value: float, **labels: str) -> None:
        """Record one observation; it lands in the first bucket whose bound is >= `value`."""
        key = self._key(labels)
        with self._lock:
            counts, total = self._series.setdefault(key, ([0] * len(self.bounds), [0.0]))
            counts[bisect_left(self.bounds, value)] += 1
            total[0] += value

    def count(self, **labels: str) -> int:
        """Number of observations for one label set."""
        with self._lock:
            series = self._series.get(self._key(labels))
            return sum(series[0]) if series else 0

    def samples(self) -> list[str]:
        lines = []
        with self._lock:
            items = sorted((k, (list(c), s[0])) for k, (c, s) in self._series.items())
        for key, (counts, total) in items:
            running = 0
            for bound, n in zip(self.bounds, counts, strict=True):
                running += n
                labels = _label_text((*self.labelnames, "le"), (*key, format_value(bound)))
                lines.append(f"{self.name}_bucket{labels} {running}")
            plain = _label_text(self.labelnames, key)
            lines.append(f"{self.name}_sum{plain} {format_value(total)}")
            lines.append(f"{self.name}_count{plain} {running}")
        return lines


class Registry:
    """The metrics one process exposes; `render()` is the body of GET /metrics."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _register(self, metric: _Metric) -> None:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric

    def counter(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> Counter:
        metric = Counter(name, doc, labelnames)
        self._register(metric)
        return metric

    def gauge(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> Gauge:
        metric = Gauge(name, doc, labelnames)
        self._register(metric)
        return metric

    def histogram(
        self, name: str, doc: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        metric = Histogram(name, doc, labelnames, buckets)
        self._register(metric)
        return metric

    def render(self) -> str:
        """All metrics in the text exposition format (ends with a newline)."""
        lines: list[str] = []
        for metric in self._metrics.values():
            lines += metric.header() + metric.samples()
        return "\n".join(lines) + "\n"

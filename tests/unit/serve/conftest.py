"""Fixtures for the server tests: an app over the tiny model, a client, a request store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lmtune.config.deploy import ServeConfig
from lmtune.monitor.store import RequestStore
from lmtune.serve.app import create_app


@dataclass
class Served:
    app: FastAPI
    client: TestClient
    store: RequestStore


@pytest.fixture
def make_served(tiny_model_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Factory: `make_served(**ServeConfig fields)` -> app + TestClient + store under tmp_path."""
    opened: list[tuple[TestClient, RequestStore]] = []

    def make(**fields: Any) -> Served:
        store = RequestStore(tmp_path / f"requests-{len(opened)}.sqlite")
        app = create_app(tiny_model_dir, ServeConfig(**fields), store)
        client = TestClient(app)
        client.__enter__()
        opened.append((client, store))
        return Served(app, client, store)

    yield make
    for client, store in opened:
        client.__exit__(None, None, None)
        store.close()


@pytest.fixture
def served(make_served: Callable[..., Served]) -> Served:
    return make_served()

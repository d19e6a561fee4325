"""Run the server: `serve()` blocks in the foreground; `background_server()` runs it in a thread.

`background_server` is for smoke requests (the pipeline's, the tests'): it binds a free port on
`cfg.host`, starts uvicorn in a daemon thread, waits until it accepts requests, yields the base URL
(`http://host:port`, append `/v1` for OpenAI clients) and shuts the server down cleanly on exit.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lmtune.config.deploy import MonitorConfig, ServeConfig
from lmtune.monitor.store import RequestStore
from lmtune.serve.app import create_app

STORE_NAME = "requests.sqlite"
_START_TIMEOUT_S = 30.0


def default_db_path(model_dir: str | Path) -> Path:
    """`<run>/monitor/requests.sqlite` when the model sits inside a run directory, else next to the model.

    A run directory is recognised by its `config.yaml`; the folder itself and up to three parents
    are looked at (so `runs/x/model` and `runs/x/export/merged` both resolve to `runs/x`).
    """
    folder = Path(model_dir).resolve()
    for candidate in [folder, *folder.parents][:4]:
        if (candidate / "config.yaml").is_file():
            return candidate / "monitor" / STORE_NAME
    return folder.parent / "monitor" / STORE_NAME


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(model_dir: str | Path, cfg: ServeConfig, monitor: MonitorConfig) -> None:
    """Serve `model_dir` until interrupted (Ctrl-C), recording requests in the monitor store.

    Args:
        model_dir: standard model folder to serve.
        cfg: host/port, limits and auth.
        monitor: where the request store lives (`db_path`; default from `default_db_path`).
    """
    # deferred: uvicorn only when this runs (keeps `import lmtune...` light)
    import uvicorn

    store = RequestStore(monitor.db_path or default_db_path(model_dir))
    app = create_app(model_dir, cfg, store)
    sock = _bind(cfg.host, cfg.port)
    port = sock.getsockname()[1]
    name = app.state.model_name
    url = f"{_url(cfg.host, port)}/v1"
    print(f"lmtune: serving '{name}' at {url} (requests logged to {store.path})", flush=True)
    try:
        # SIGTERM/Ctrl-C: uvicorn stops accepting connections and lets the requests in flight finish
        uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])
    finally:
        sock.close()
        app.state.engine.close()  # the app's shutdown closed it already, unless uvicorn never started
        store.close()


@contextmanager
def background_server(
    model_dir: str | Path, cfg: ServeConfig, store: RequestStore | None = None
) -> Iterator[str]:
    """Serve `model_dir` from a thread on a free port; yields the base URL (`http://host:port`).

    Raises:
        RuntimeError: the server did not come up within 30 s.
    """
    # deferred: uvicorn only when this runs (keeps `import lmtune...` light)
    import uvicorn

    app = create_app(model_dir, cfg, store)
    sock = _bind(cfg.host, 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="lmtune-serve", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the background server on port {port} did not start")
            time.sleep(0.01)
        yield _url(cfg.host, port)
    finally:
        server.should_exit = True
        thread.join(timeout=_START_TIMEOUT_S)
        sock.close()
        app.state.engine.close()  # lifespan is off here: close the back-end ourselves

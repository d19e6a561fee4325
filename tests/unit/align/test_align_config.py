"""The `align` config section and CLI verb: typed objectives, clear one-line errors."""

from pathlib import Path

import pytest

from lmtune.cli import main
from lmtune.config import loader
from lmtune.config.run import RunConfig
from lmtune.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_align_defaults_to_lora_and_its_own_loop() -> None:
    cfg = loader.build(RunConfig, {"align": {"type": "dpo"}})
    assert cfg.align is not None and cfg.align.type == "dpo"
    assert cfg.align.method.type == "lora"
    assert cfg.align.trainer.learning_rate == 5e-5  # not SFT's 2e-4
    assert cfg.align.start_from == "auto"


def test_unknown_objective_key_names_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'align.betta': did you mean 'align.beta'\?"):
        loader.build(RunConfig, {"align": {"type": "dpo", "betta": 0.2}})


def test_unknown_dpo_loss_type_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"config field 'align.dpo.loss_type'"):
        loader.build(RunConfig, {"align": {"type": "dpo", "loss_type": "sigmod"}})


def test_reward_model_refuses_methods_it_cannot_train() -> None:
    with pytest.raises(ConfigError, match="a reward model trains with `lora` or `full`, not `ia3`"):
        loader.build(RunConfig, {"align": {"type": "reward", "method": {"type": "ia3"}}})


def test_align_verb_without_align_section_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "c.yaml", f"output_dir: {tmp_path}\nmodel: {{path: tiny}}\n")
    assert main(["align", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("the config has no `align` section: nothing to align")
    assert len(err.splitlines()) == 1


def test_start_from_sft_without_sft_weights_exits_2(
    tmp_path: Path, pairs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(
        tmp_path / "c.yaml",
        f"output_dir: {tmp_path}\nname: r\nmodel: {{path: tiny}}\n"
        "align: {type: dpo, start_from: sft, data: {sources: [{path: "
        f"{pairs_file}, format: preference}}]}}}}\n",
    )
    assert main(["align", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "align.start_from: sft, but" in err and "has no SFT weights" in err


def test_label_smoothing_without_the_robust_loss_is_refused() -> None:
    """TRL's sigmoid, ipo and hinge DPO losses do not read label_smoothing: a setting that would be
    silently ignored is a config error."""
    from lmtune.config import loader
    from lmtune.config.run import RunConfig
    from lmtune.errors import ConfigError

    with pytest.raises(ConfigError, match=r"label_smoothing \(0\.1\) only applies to loss_type: robust"):
        loader.build(RunConfig, {"align": {"type": "dpo", "label_smoothing": 0.1}})
    robust = loader.build(
        RunConfig, {"align": {"type": "dpo", "loss_type": "robust", "label_smoothing": 0.1}}
    )
    assert robust.align is not None and robust.align.label_smoothing == 0.1

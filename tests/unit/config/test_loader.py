import re
from pathlib import Path

import pytest

from lmtune.config import loader
from lmtune.config.methods import FullConfig, LoraConfig
from lmtune.config.run import RunConfig
from lmtune.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_yaml_and_dotted_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\ntrainer:\n  max_steps: 10\nmethod:\n  type: lora\n  rank: 8\n")
    cfg = loader.load(RunConfig, path, ["trainer.max_steps=50", "method.rank=32", "data.packing=true"])
    assert cfg.name == "a"
    assert cfg.trainer.max_steps == 50
    assert isinstance(cfg.method, LoraConfig) and cfg.method.rank == 32
    assert cfg.data.packing is True


def test_override_values_are_yaml_scalars() -> None:
    cfg = loader.load(RunConfig, None, ["trainer.learning_rate=1e-3", "model.path=my/model", "seed=7"])
    assert cfg.trainer.learning_rate == pytest.approx(1e-3)
    assert cfg.model.path == "my/model"
    assert cfg.seed == 7


def test_config_is_frozen() -> None:
    cfg = loader.load(RunConfig, None)
    with pytest.raises(Exception, match="frozen"):
        cfg.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("method.rnak=3", "unknown config key 'method.rnak': did you mean 'method.rank'?"),
        (
            "trainer.learnig_rate=3",
            "unknown config key 'trainer.learnig_rate': did you mean 'trainer.learning_rate'?",
        ),
        ("modle.path=x", "unknown config key 'modle': did you mean 'model'?"),
        (
            "data.sources=[{path: a, formt: x}]",
            "unknown config key 'data.sources[0].formt': did you mean 'data.sources[0].format'?",
        ),
    ],
)
def test_unknown_key_names_key_and_closest(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        loader.load(RunConfig, None, [override])
    assert str(err.value) == message


def test_unknown_key_in_yaml_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, "trainer:\n  max_step: 3\n")
    with pytest.raises(ConfigError) as err:
        loader.load(RunConfig, path)
    assert (
        str(err.value) == f"{path}: unknown config key 'trainer.max_step': did you mean 'trainer.max_steps'?"
    )


def test_key_of_other_union_member_is_rejected() -> None:
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'method.rank': valid keys: type")):
        loader.load(RunConfig, None, ["method.type=full", "method.rank=3"])


def test_method_union_dispatches_on_type() -> None:
    assert isinstance(loader.load(RunConfig, None, ["method.type=full"]).method, FullConfig)
    assert isinstance(loader.load(RunConfig, None).method, LoraConfig)


def test_wrong_type_names_field() -> None:
    with pytest.raises(ConfigError) as err:
        loader.load(RunConfig, None, ["trainer.max_steps=abc"])
    assert str(err.value).startswith("config field 'trainer.max_steps': Input should be a valid integer")


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\ntrainer: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: invalid YAML"):
        loader.load(RunConfig, path)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=re.escape("nope.yaml: config file not found")):
        loader.load(RunConfig, "nope.yaml")


def test_malformed_override() -> None:
    with pytest.raises(ConfigError, match=re.escape("not of the form key.path=value")):
        loader.load(RunConfig, None, ["trainer.max_steps"])


def test_dump_roundtrip(tmp_path: Path) -> None:
    cfg = loader.load(RunConfig, None, ["method.rank=32", "trainer.max_steps=5"])
    path = write(tmp_path, loader.dump(cfg))
    assert loader.load(RunConfig, path) == cfg

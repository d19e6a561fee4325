from pathlib import Path

from lmtune.config.reference import render_reference
from lmtune.config.run import RunConfig

DOC = Path(__file__).resolve().parents[3] / "docs" / "config-reference.md"


def test_config_reference_is_current() -> None:
    assert DOC.read_text() == render_reference(RunConfig), (
        "docs/config-reference.md is stale: run `make docs`"
    )


def test_reference_documents_every_field() -> None:
    text = render_reference(RunConfig)
    for section in ("ModelConfig", "DataConfig", "TrainerConfig", "LoraConfig", "ServeConfig"):
        assert f"## {section}" in text
    for name, model_field in RunConfig.model_fields.items():
        assert f"| `{name}` |" in text
        assert model_field.description, f"RunConfig.{name} has no docstring"

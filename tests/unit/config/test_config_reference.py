"""docs/configuration.md is generated from the models and must stay in step with them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobq.config.__main__ import main
from jobq.config.loader import env_var_name, iter_fields, load_settings, render_reference_markdown

DOCS = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_docs_match_the_models() -> None:
    assert DOCS.read_text(encoding="utf-8") == render_reference_markdown(), (
        "docs/configuration.md is out of date; "
        "regenerate with python -m jobq.config > docs/configuration.md"
    )


def test_every_field_is_documented() -> None:
    rendered = render_reference_markdown()
    for section, name, info in iter_fields():
        assert info.description, f"{section}.{name} has no description"
        assert f"| `{section}.{name}` | `{env_var_name(section, name)}` |" in rendered


def test_the_example_yaml_is_a_valid_configuration(tmp_path: Path) -> None:
    match = re.search(r"```yaml\n(.*?)```", render_reference_markdown(), re.DOTALL)
    assert match is not None
    path = tmp_path / "example.yaml"
    path.write_text(match.group(1), encoding="utf-8")
    loaded = load_settings(path, env={})
    assert loaded.warnings == ()
    assert "file" in loaded.sources.values()


def test_main_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    main()
    assert capsys.readouterr().out == render_reference_markdown()

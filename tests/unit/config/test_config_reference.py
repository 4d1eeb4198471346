"""The README's configuration reference is generated from the models and must stay in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobq.config.__main__ import current_readme_block, main, readme_block
from jobq.config.loader import env_var_name, iter_fields, load_settings, render_reference_markdown

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_reference_matches_the_models() -> None:
    current = current_readme_block(README.read_text(encoding="utf-8"))
    assert current, "README.md lacks the configuration reference markers"
    assert current == readme_block(render_reference_markdown()), (
        "the README's configuration reference is out of date; "
        "regenerate with python -m jobq.config --readme"
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
    main([])
    assert capsys.readouterr().out == render_reference_markdown()

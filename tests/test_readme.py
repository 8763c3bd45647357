"""The README's promises that code can check."""
import re
from dataclasses import fields
from pathlib import Path

from service.settings import BOUNDS, Settings, env_name

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _configuration_rows() -> dict[str, tuple[str, str]]:
    rows = re.findall(r"^\| `(CNNLENS_\w+)` \|([^|]*)\|([^|]*)\|", README, flags=re.M)
    return {name: (default.strip().strip("`"), bounds.strip()) for name, default, bounds in rows}


def test_configuration_table_matches_the_settings():
    rows = _configuration_rows()
    assert sorted(rows) == sorted(env_name(field.name) for field in fields(Settings))
    defaults = Settings()
    for field in fields(Settings):
        default, bounds = rows[env_name(field.name)]
        value = getattr(defaults, field.name)
        assert default == (str(value) if value != "" else "(empty)"), field.name
        expected = " – ".join(str(bound) for bound in BOUNDS[field.name]) if field.name in BOUNDS else ""
        assert bounds == expected, field.name


def test_first_lines_are_the_two_commands():
    block = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0].endswith(".venv/bin/gunicorn -c gunicorn.conf.py")
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert block[1] in ci   # CI runs the README's test command word for word

import runpy
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_readme_cli_reference_is_current():
    updated = runpy.run_path(str(ROOT / "scripts" / "update_readme.py"))["updated"]
    readme = (ROOT / "README.md").read_text()
    assert updated(readme) == readme, "run: python scripts/update_readme.py"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()

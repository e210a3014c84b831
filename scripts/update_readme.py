"""Rewrite the CLI reference in README.md from the parser's own help texts.

python scripts/update_readme.py          # tests/test_readme.py fails until this is run after a flag changes
"""

from pathlib import Path

from charrnn.cli import reference_markdown

START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def updated(readme: str) -> str:
    head, rest = readme.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{reference_markdown()}\n{END}{tail}"


if __name__ == "__main__":
    path = Path(__file__).parents[1] / "README.md"
    path.write_text(updated(path.read_text()))

"""`charrnn classify` and `charrnn tag` (predict.py): what they accept, through the real command."""

import pytest

from charrnn.cli import main
from test_cli import one_line_error, run_cli
from test_tasks import names_folder


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A classify run of a few steps, as `charrnn train --task classify` leaves it."""
    root = tmp_path_factory.mktemp("predict")
    run = root / "cls"
    flags = f"--task classify --data {names_folder(root)} --out {run} --val-fraction 0.2 --hidden-size 16"
    flags += " --layers 1 --embedding-size 8 --batch-size 4 --max-steps 4 --eval-every 4 --threads 1 --quiet"
    assert main(["train", *flags.split()]) == 0
    return run


@pytest.mark.parametrize("command", ["classify", "tag"])
def test_a_text_or_data_not_neither_nor_both(classifier, tmp_path, capsys, command):
    names = tmp_path / "names.txt"
    names.write_text("Ivanov\nLarsson\n")
    neither = "give a text to label (quote it), or --data FILE to label every line of a file"
    one_line_error(run_cli(capsys, command, classifier), command, neither)
    both = run_cli(capsys, command, classifier, "Ivanov", "--data", names)
    one_line_error(both, command, "give a text to label or --data FILE, not both")


def help_of(command, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


def test_top_is_a_classify_flag_only(classifier, capsys):
    assert "--top" in help_of("classify", capsys)
    assert "--top" not in help_of("tag", capsys)  # tag prints every character's tag: --top would do nothing
    code, out, _ = run_cli(capsys, "classify", classifier, "Ivanov", "--top", 1)
    assert code == 0 and out.startswith("Ivanov\t") and out.count(" 0.") == 1
    with pytest.raises(SystemExit) as refused:
        main(["tag", str(classifier), "Ivanov", "--top", "1"])
    assert refused.value.code == 2 and "unrecognized arguments: --top 1" in capsys.readouterr().err

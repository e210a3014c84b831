"""Every flag's constraint is declared once (charrnn/knobs.py) and enforced by one check, for
the command line, the Python API and the web API alike.

The walk below reads the flags from the real parser, so a new flag is covered without
editing this file, and a number flag without a declared range fails it.
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn import knobs
from charrnn.cli import build_parser, main
from charrnn.data.corpus import DataConfig
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.errors import CharRNNError
from charrnn.evaluation import EvalConfig, eval_run
from charrnn.inspection.plot import PlotConfig
from charrnn.inspection.serve import BadRequest, ServeConfig, create_app, parse_request, serve
from charrnn.inspection.viz import VizConfig, viz
from charrnn.load import LoadConfig
from charrnn.reference import model as reference
from charrnn.reference.hello import HelloConfig, hello
from charrnn.sampling.generate import SampleConfig, sample
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train
from viz_support import save_run, tiny_model

NOWHERE = "nowhere"  # a run, file or folder that does not exist (the tests run in an empty tmp folder)


def subcommands():
    return build_parser()._subparsers._group_actions[0].choices.items()


def arguments(sub):
    """The subcommand's arguments and flags, --help aside."""
    return [a for a in sub._actions if a.dest != "help"]


def name_of(action) -> str:
    return action.option_strings[0] if action.option_strings else action.metavar


def show(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def numbers_outside(declaration: knobs.Knob, kind: str) -> list:
    """Values just outside the declared range on each side (never the 'off' value)."""
    lo, lo_open, hi, hi_open = declaration.bounds(kind)
    step, off = (1 if kind == "int" else 0.5), (declaration.off[0] if declaration.off else None)
    below = ([lo] if lo_open else []) + [lo - step, lo - 2 * step] if lo is not None else []
    above = ([hi] if hi_open else []) + [hi + step] if hi is not None else []
    return [v for v in below if v != off][:2] + above


def bad_values(action) -> list[str]:
    """What to give the argument: wrongly typed, out of range, non-finite, not a choice, empty."""
    declaration, kind = action.knob, action.kind
    if kind == "bool":
        return []  # a switch takes no value: see bad_cases, which gives it one
    bad = []
    if kind in ("int", "float"):
        bad += ["two", ""] + (["1.5"] if kind == "int" else [])
        bad += [show(v) for v in numbers_outside(declaration, kind)]
        if kind == "float" and declaration.finite:
            bad += ["nan", "inf", "-inf", "1e999"]
    if kind == "list[int]":  # one value after the flag: its type and each element's range
        bad += ["two", "1.5"] + [show(v) for v in numbers_outside(declaration, "int")]
    if declaration.allowed() is not None:
        bad.append("nope")
    if declaration.pattern is not None:
        bad.append("no such thing")
    if declaration.nonempty:
        bad.append("")
    return bad


def base_argv(sub, skip) -> list[str]:
    """The arguments a command needs to parse: its positionals and required flags, each naming
    nothing that exists; --data too, so that a check that came too late fails fast, on the data."""
    argv = []
    for a in arguments(sub):
        if a is skip:
            continue
        if not a.option_strings:
            argv.append(NOWHERE)
        elif a.required or a.option_strings[0] == "--data":
            argv += [a.option_strings[0], NOWHERE]
    return argv


def bad_cases():
    for command, sub in subcommands():
        for a in filter(declared, arguments(sub)):
            values = bad_values(a)
            if a.knob.positional:  # in its place among the positionals (an optional one cannot follow flags)
                for v in values:
                    base = base_argv(sub, a)
                    at = sum(
                        1
                        for p in arguments(sub)
                        if not p.option_strings and p is not a and sub_index(sub, p) < sub_index(sub, a)
                    )
                    yield [command, *base[:at], v, *base[at:]], name_of(a)
            elif a.kind == "bool":
                yield [command, *base_argv(sub, a), f"{a.option_strings[0]}=yes"], name_of(a)
            else:
                for v in values:
                    yield [command, *base_argv(sub, a), a.option_strings[0], v], name_of(a)


def sub_index(sub, action) -> int:
    return list(arguments(sub)).index(action)


def declared(action) -> bool:
    return hasattr(action, "knob")


CASES = list(bad_cases())


def run_main(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_every_argument_is_a_knob_and_every_number_has_a_range():
    for command, sub in subcommands():
        for a in arguments(sub):
            assert declared(a), f"charrnn {command} {name_of(a)}: declare it with knobs.knob() in a config"
            if a.kind in ("int", "float"):
                assert a.knob.range_text(a.kind), f"charrnn {command} {name_of(a)}: a number needs a declared range"


def test_the_walk_covers_every_command_and_the_issue_cases():
    assert {c for c, _ in subcommands()} == {
        "train",
        "sample",
        "eval",
        "classify",
        "tag",
        "hello",
        "viz",
        "plot",
        "serve",
        "export",
        "card",
    }
    covered = {" ".join(argv[:1] + argv[-2:]) for argv, _ in CASES}
    for case in [
        "train --grad-clip -0.5",
        "train --warmup-steps -1",
        "train --max-steps -1",
        "train --eval-chars -1",
        "sample --temperature nan",
        "train --threads -1",
        "train --weight-decay -0.5",
        "train --momentum -0.5",
        "sample --seed -1",
        "eval --seq-len 0",
        "eval --batch-size 0",
        "train --lr inf",
        "train --dropout 1.5",
        "train --layers two",
    ]:
        assert case in covered, case
    assert len(CASES) > 250


@pytest.mark.parametrize("argv, name", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_every_flag_refuses_bad_values_with_one_line(argv, name, empty_cwd, capsys):
    code, err = run_main(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"charrnn {argv[0]}: error:") and name in lines[0], err
    assert not any(empty_cwd.iterdir()), "nothing is written before the check"


def test_the_boundaries_and_off_values_are_allowed():
    for command, sub in subcommands():
        for a in arguments(sub):
            if a.kind not in ("int", "float"):
                continue
            lo, lo_open, hi, hi_open = a.knob.bounds(a.kind)
            good = [v for v, open_ in ((lo, lo_open), (hi, hi_open)) if v is not None and not open_]
            good += [a.knob.off[0]] if a.knob.off else []
            for v in good:
                assert a.knob.problem(v, a.kind, False) is None, f"charrnn {command} {name_of(a)} {v}"


def test_a_bad_flag_in_a_real_process_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "CHARRNN_CACHE": str(tmp_path)}
    for argv, message in [
        (["train", "--grad-clip", "-5"], "--grad-clip must be > 0 (or 0 = off), got -5"),
        (["eval", NOWHERE, "--data", NOWHERE, "--seq-len", "-3"], "--seq-len must be >= 1, got -3"),
    ]:
        p = subprocess.run(
            [sys.executable, "-m", "charrnn", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and message in p.stderr, p.stderr
    assert list(tmp_path.iterdir()) == []


def test_rules_between_knobs_are_one_line_too(empty_cwd, capsys):
    for argv, message in [
        (["train", "--max-steps", "0", "--max-epochs", "0"], "give at least one of --max-steps"),
        (["train", "--val-fraction", "0.5", "--test-fraction", "0.5"], "sum to less than 1"),
        (["train", "--nproc", "3"], "--nproc must divide --batch-size 64"),
        (["train", "--tie-weights", "--embedding-size", "32"], "--tie-weights needs --embedding-size equal to"),
        (["viz", NOWHERE], "give exactly one of --data FILE or --text STRING"),
        (["viz", NOWHERE, "--text", "a", "--data", NOWHERE], "give exactly one of"),
    ]:
        code, err = run_main(argv, capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, err


# -- the same declarations through the Python API ---------------------------------------------


def test_python_api_checks_before_reading_anything(tmp_path):
    missing = DataConfig(data=str(tmp_path / "missing.txt"))
    for engine in ("torch", "reference"):
        with pytest.raises(CharRNNError, match=r"^--grad-clip must be > 0 \(or 0 = off\), got -5$"):
            train(TrainConfig(out=str(tmp_path / "r"), data=missing, grad_clip=-5, engine=engine))
        with pytest.raises(CharRNNError, match="--max-steps must be >= 1"):
            train(TrainConfig(out=str(tmp_path / "r"), data=missing, max_steps=-5, max_epochs=0, engine=engine))
    with pytest.raises(CharRNNError, match="--layers must be >= 1, got 0"):
        train(TrainConfig(out=str(tmp_path / "r"), data=missing, model=ModelConfig(layers=0)))
    with pytest.raises(CharRNNError, match="--seq-len must be >= 1, got 0"):
        eval_run(tmp_path / NOWHERE, EvalConfig(str(tmp_path / "missing.txt"), seq_len=0))
    with pytest.raises(CharRNNError, match="--device must be cpu, cuda, cuda:N or mps, got 'tpu'"):
        eval_run(tmp_path / NOWHERE, EvalConfig(str(tmp_path / "missing.txt")), device="tpu")
    with pytest.raises(CharRNNError, match="--checkpoint must be one of best, last"):
        viz(tmp_path / NOWHERE, VizConfig(text="abc"), which="first")
    with pytest.raises(CharRNNError, match="--max-chars must be >= 1, got 0"):
        viz(tmp_path / NOWHERE, VizConfig(text="abc", max_chars=0))
    with pytest.raises(CharRNNError, match="--port must be in"):
        serve(tmp_path / NOWHERE, ServeConfig(port=-1))
    with pytest.raises(CharRNNError, match="--steps must be >= 1, got 0"):
        hello(steps=0)
    assert not any(tmp_path.iterdir())


def test_python_api_checks_models_and_sampling():
    model, vocab = tiny_model("gru")
    with pytest.raises(CharRNNError, match="--temperature must be a finite number, got nan"):
        sample(model, vocab, SampleConfig(temperature=math.nan))
    with pytest.raises(CharRNNError, match=r"--seed must be in \[0, 2\*\*63 - 1\], got -1"):
        sample(model, vocab, SampleConfig(seed=-1))
    with pytest.raises(CharRNNError, match="--workers must be >= 1, got 0"):
        create_app(model, vocab, ServeConfig(workers=0))
    with pytest.raises(CharRNNError, match=r"--dropout must be in \[0, 1\), got 1.5"):
        CharRNN(ModelConfig(dropout=1.5))
    with pytest.raises(CharRNNError, match="--hidden-size must be >= 1, got 0"):
        reference.CharRNN(reference.ModelConfig(hidden_size=0))


def test_types_are_checked_too():
    with pytest.raises(CharRNNError, match="--length must be an integer, got True"):
        SampleConfig(length=True).check()
    with pytest.raises(CharRNNError, match="--length must be an integer, got 2.5"):
        SampleConfig(length=2.5).check()
    with pytest.raises(CharRNNError, match="--lr must be a number, got '0.1'"):
        TrainConfig(lr="0.1").check()
    with pytest.raises(CharRNNError, match="--prime must be a string, got None"):
        SampleConfig(prime=None).check()
    with pytest.raises(CharRNNError, match="--lr must be a finite number"):
        TrainConfig(lr=10**400).check()
    SampleConfig(seed=None, stop=None).check()  # "| None" in the type: None is allowed
    TrainConfig(max_time=600, lr=1).check()  # an int is a fine float (presets are JSON)


def test_defaults_and_presets_pass_their_own_check():
    for config in [
        TrainConfig(),
        SampleConfig(),
        ServeConfig(),
        EvalConfig("x"),
        LoadConfig("x"),
        HelloConfig(),
        VizConfig(text="x"),
        PlotConfig(["x"]),
    ]:
        config.check()
    for name in knobs.preset_names():
        config = TrainConfig()
        knobs.apply(config, knobs.load_preset(name))
        config.check()


def test_eval_shares_train_declarations():
    def declaration(cls, name):
        return next(f for f in cls.__dataclass_fields__.values() if f.name == name).metadata["knob"]

    for name in ("batch_size", "seq_len"):
        e, t = declaration(EvalConfig, name), declaration(TrainConfig, name)
        assert e.help.startswith(t.help + "; ") and (e.ge, e.gt, e.le, e.lt) == (t.ge, t.gt, t.le, t.lt)
    assert declaration(EvalConfig, "cache_dir") == declaration(DataConfig, "cache_dir")
    with pytest.raises(TypeError, match="needs a why"):
        knobs.like(TrainConfig, "batch_size", 8)


def test_checking_names_knobs_as_fields_and_narrows_for_a_caller():
    with pytest.raises(CharRNNError, match=r"^top_p must be in \(0, 1\], got 0$"):
        knobs.check(SampleConfig(top_p=0), as_field=True)
    with pytest.raises(CharRNNError, match=r"^length must be in \[1, 9\], got 10$"):
        knobs.check(SampleConfig(length=10), as_field=True, tighter={"length": {"ge": 1, "le": 9}})


# -- the same declarations through the web API ------------------------------------------------


def test_parse_request_uses_sampleconfigs_declarations():
    config = ServeConfig(max_length=50, max_temperature=2.0)
    sc = parse_request({"length": 3.0, "temperature": 0, "seed": 5}, config, vocab_size=20)
    assert (sc.length, type(sc.length), sc.temperature, sc.seed) == (3, int, 0, 5)
    sc = parse_request({}, ServeConfig(max_length=50, max_temperature=0.5), vocab_size=20)
    assert (sc.length, sc.temperature) == (50, 0.5)  # the defaults, within the server's limits
    for body, message in [
        (json.loads('{"temperature": NaN}'), "temperature must be a finite number, got nan"),
        (json.loads('{"top_p": Infinity}'), "top_p must be a finite number, got inf"),
        ({"temperature": 2.5}, "temperature must be in (0, 2] (or 0 = always the most likely character), got 2.5"),
        ({"length": 51}, "length must be in [1, 50], got 51"),
        ({"top_k": 21}, "top_k must be in [1, 20] (or 0 = off), got 21"),
        ({"seed": 1e30}, "seed must be in [0, 2**63 - 1]"),
        ({"seed": -1}, "seed must be in [0, 2**63 - 1], got -1"),
        ({"top_k": True}, "top_k must be an integer, got True"),
        ({"prime": ["a"]}, "prime must be a string"),
    ]:
        with pytest.raises(BadRequest, match="^" + re.escape(message)) as e:
            parse_request(body, config, vocab_size=20)
        assert e.value.status == 400


def test_shared_flags_are_one_declaration(tmp_path, capsys):
    """--checkpoint and --device come from LoadConfig in every command that loads a model."""
    for command, sub in subcommands():
        shared = [a for a in arguments(sub) if a.dest in ("run", "checkpoint", "device")]
        if command in ("sample", "eval", "viz", "serve"):
            fields = LoadConfig.__dataclass_fields__
            assert [a.knob for a in shared] == [fields[n].metadata["knob"] for n in ("run", "checkpoint", "device")]
    model, vocab = tiny_model("rnn")
    run = save_run(tmp_path / "run", model, vocab)
    code, err = run_main(["sample", str(run), "--checkpoint", "last", "--length", "3"], capsys)
    assert code == 2 and "has best/ but no last/" in err  # the flag reached the loader: only best/ exists

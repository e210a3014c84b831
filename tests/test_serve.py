import base64
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from charrnn.inspection.serve import BackgroundServer, ServeConfig, create_app, free_socket
from charrnn.inspection.trace import trace
from charrnn.load import load_model
from charrnn.sampling.generate import SampleConfig, sample
from viz_support import naive_steps, save_run, tiny_model


@pytest.fixture(scope="module")
def model_vocab():
    return tiny_model("lstm", layers=2, hidden_size=16)


@pytest.fixture(scope="module")
def app(model_vocab):
    model, vocab = model_vocab
    return create_app(model, vocab, ServeConfig(max_length=400, max_prime=100, workers=8), name="tiny")


@pytest.fixture(scope="module")
def url(app):
    with BackgroundServer(app) as url:
        yield url


def generate(url: str, body: dict, client: httpx.Client | None = None) -> list[dict]:
    """The NDJSON messages of one /api/generate request."""
    with (client or httpx).stream("POST", url + "/api/generate", json=body, timeout=60) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in r.iter_lines() if line]


def test_page_static_and_model_info(url):
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "charrnn playground" in page.text
    assert 'src="static/trace.js"' in page.text
    js = httpx.get(url + "/static/trace.js")
    assert js.status_code == 200 and "CharTrace" in js.text
    info = httpx.get(url + "/api/model").json()
    assert info["name"] == "tiny" and info["cell"] == "lstm" and info["layers"] == 2 and info["hidden_size"] == 16
    assert info["limits"]["length"] == 400 and info["limits"]["prime"] == 100


def test_generate_streams_the_same_text_as_sample(url, model_vocab):
    model, vocab = model_vocab
    body = {"prime": "He said", "length": 60, "temperature": 0.9, "top_k": 10, "top_p": 0.95, "seed": 7}
    msgs = generate(url, body)
    assert msgs[0] == {"seed": 7}
    pieces = [m["text"] for m in msgs[1:-1]]
    final = msgs[-1]
    assert final["done"] is True and len(pieces) > 1  # streamed in pieces, not at the end
    ref = sample(model, vocab, SampleConfig(prime="He said", length=60, temperature=0.9, top_k=10, top_p=0.95, seed=7))[
        0
    ]
    assert "".join(pieces) == final["text"] == ref
    # The trace is of the whole text, prime included; numbers from model.step.
    data = final["trace"]
    assert "".join(data["labels"]) == ref
    states, probs = naive_steps(model, vocab.encode(ref))
    layer2_cell = np.frombuffer(base64.b64decode(data["groups"][3]["data"]), "<f4").reshape(16, len(ref))
    np.testing.assert_allclose(layer2_cell, states[1, 1].T, atol=1e-6)
    assert data["surprisal"][5] == pytest.approx(-np.log2(probs[4, vocab.encode(ref)[5]]))


def test_empty_prime_starts_after_a_newline_and_random_seed_is_reported(url, model_vocab):
    model, vocab = model_vocab
    msgs = generate(url, {"length": 30})
    seed, final = msgs[0]["seed"], msgs[-1]
    assert isinstance(seed, int)
    assert final["text"] == sample(model, vocab, SampleConfig(length=30, temperature=0.8, seed=seed))[0]
    assert final["trace"]["has_first"] is True  # the hidden newline predicted the first character
    tr = trace(model, vocab.encode(final["text"]), context=vocab.encode("\n"))
    assert final["trace"]["surprisal"][0] == pytest.approx(tr.surprisal[0])


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"length": 401}, 400, "length must be in [1, 400]"),
        ({"length": 0}, 400, "length must be in"),
        ({"length": 2.5}, 400, "length must be an integer"),
        ({"prime": "x" * 101}, 413, "limit is 100"),
        ({"prime": "snow \u2603"}, 400, "outside the model's vocabulary"),
        ({"temperature": 5.5}, 400, "temperature must be in (0, 5] (or 0 = always the most likely character), got 5.5"),
        ({"temperature": "hot"}, 400, "temperature must be a number"),
        ({"top_k": -1}, 400, "top_k must be in [1, 27] (or 0 = off), got -1"),
        ({"prime": 5}, 400, "prime must be a string, got 5"),
        ({"top_p": 0}, 400, "top_p must be in (0, 1]"),
        ({"seed": -3}, 400, "seed must be in"),
        ({"seed": True}, 400, "seed must be an integer"),
        ({"colour": "red"}, 400, "unknown field(s) colour"),
        ({"beam": 9}, 400, "beam must be in [1, 8] (or 0 = off), got 9"),
        ({"beam": -1}, 400, "beam must be in [1, 8] (or 0 = off), got -1"),
        ([1, 2], 400, "must be a JSON object"),
    ],
)
def test_requests_over_the_limits_get_4xx_with_a_message(url, body, status, message):
    r = httpx.post(url + "/api/generate", json=body)
    assert r.status_code == status
    assert message in r.json()["error"]


def test_malformed_and_oversized_bodies(url):
    r = httpx.post(url + "/api/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "must be JSON" in r.json()["error"]
    r = httpx.post(url + "/api/generate", content=b" " * 70_000)
    assert r.status_code == 413
    assert httpx.get(url + "/api/generate").status_code == 405
    assert httpx.get(url + "/nothing-here").status_code == 404


def test_eight_simultaneous_requests_equal_each_alone(url, app, monkeypatch):
    bodies = [
        {"prime": p, "length": 250, "temperature": t, "top_k": k, "top_p": tp, "seed": s}
        for s, (p, t, k, tp) in enumerate(
            [
                ("He", 1.0, 0, 1.0),
                ("She", 0.7, 5, 1.0),
                ("", 1.2, 0, 0.9),
                ("to be", 0.0, 0, 1.0),
                ("(", 0.9, 3, 0.8),
                ('"', 1.0, 0, 1.0),
                ("and", 0.5, 0, 1.0),
                ("left", 1.5, 20, 0.95),
            ]
        )
    ]
    alone = [generate(url, b)[-1]["text"] for b in bodies]
    # Count the generations in flight, to know the requests really ran side by side.
    # A generation takes milliseconds, so each one waits (up to 5 s) until 4 are in
    # flight: a server that ran them one at a time would never get there.
    pg, lock, running, peak = app.state.playground, threading.Condition(), [0], [0]
    inner = pg.generate

    def counted(*args):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            lock.notify_all()
            lock.wait_for(lambda: peak[0] >= 4, timeout=5)
        try:
            return inner(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(pg, "generate", counted)
    results, errors = [None] * len(bodies), []
    barrier = threading.Barrier(len(bodies))

    def client(i):
        try:
            with httpx.Client() as c:
                barrier.wait(timeout=30)  # all eight send at once
                results[i] = generate(url, bodies[i], c)
        except Exception as e:  # noqa: BLE001 - reported below, with the request it came from
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert peak[0] >= 4, f"only {peak[0]} generations ran at once"
    for i, msgs in enumerate(results):
        assert msgs[-1]["done"] and msgs[-1]["text"] == alone[i], f"request {i} differs when run beside others"
        assert "".join(m["text"] for m in msgs[1:-1]) == alone[i]


def test_cli_serve_binds_localhost_by_default(tmp_path, model_vocab):
    model, vocab = model_vocab
    run = save_run(tmp_path / "run", model, vocab)
    with free_socket() as probe:  # a port that was free a moment ago
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "serve", str(run), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in banner
        info = httpx.get(f"http://127.0.0.1:{port}/api/model", timeout=10).json()
        assert info["hidden_size"] == 16 and info["limits"]["length"] == 1000
        # A second server on the same port fails at once with a one-line error.
        busy = subprocess.run(
            [sys.executable, "-m", "charrnn", "serve", str(run), "--port", str(port)],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert busy.returncode == 2
        assert busy.stderr.strip().startswith("charrnn serve: error: cannot listen on 127.0.0.1:")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    "raw, ctype, status, message",
    [
        (b'{"length": ' + b"7" * 5000 + b"}", "application/json", 400, "must be JSON"),  # over Python's 4,300 digits
        (b"[" * 30_000 + b"]" * 30_000, "application/json", 400, "must be JSON"),  # RecursionError inside json
        (b'{"length": 1' + b"0" * 4000 + b"}", "application/json", 400, "length must be in"),  # too large for a float
        (b'{"length": 5}', "text/plain", 415, "Content-Type: application/json"),
        (b'{"length": 5}', "", 415, "Content-Type: application/json"),
        (b"\xff\xfe{}", "application/json", 400, "must be JSON"),
    ],
)
def test_hostile_bodies_get_4xx_never_500(url, raw, ctype, status, message):
    r = httpx.post(url + "/api/generate", content=raw, headers={"content-type": ctype} if ctype else {})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_an_address_that_cannot_be_bound_names_the_host_or_the_port():
    from charrnn.errors import CharRNNError

    with pytest.raises(CharRNNError, match="no such address: pick another --host"):
        free_socket("203.0.113.7", 0)  # TEST-NET-3: never an address of this machine
    with pytest.raises(CharRNNError, match="no such address: pick another --host"):
        free_socket("no-such-host.invalid", 0)
    held = free_socket("127.0.0.1", 0)
    try:
        with pytest.raises(CharRNNError, match="in use: pick another --port"):
            free_socket("127.0.0.1", held.getsockname()[1])
    finally:
        held.close()


def test_beam_search_request_gives_sample_s_best_beam(url, model_vocab):
    model, vocab = model_vocab
    msgs = generate(url, {"prime": "He said", "length": 80, "beam": 4, "seed": 1})
    want = sample(model, vocab, SampleConfig(prime="He said", length=80, beam=4))[0]
    assert msgs[-1]["done"] and msgs[-1]["text"] == want
    assert [m["text"] for m in msgs[1:-1]] == [want]  # one piece, at the end
    assert "novelty" not in msgs[-1]  # not asked for at start
    info = httpx.get(url + "/api/model").json()
    assert info["limits"]["beam"] == 8 and info["novelty"] is False


def test_novelty_report_in_the_done_message(tmp_path, model_vocab):
    from charrnn.data.corpus import DataConfig, load_corpus
    from charrnn.sampling.novelty import NoveltyIndex
    from viz_support import TEXT

    model, vocab = model_vocab
    (tmp_path / "train.txt").write_text(TEXT * 3)
    corpus = load_corpus(DataConfig(data=str(tmp_path / "train.txt")), vocab)
    index = NoveltyIndex(Path(corpus.ids.filename), corpus.ids.dtype, len(corpus.ids), vocab)
    app = create_app(model, vocab, ServeConfig(max_beam=0), name="tiny", novelty=index)
    with BackgroundServer(app) as url:
        assert httpx.get(url + "/api/model").json()["novelty"] is True
        final = generate(url, {"prime": "She [said]", "length": 150, "temperature": 0.3, "seed": 2})[-1]
        assert final["text"].startswith("She [said]")
        n = index.measure(final["text"][len("She [said]") :])  # the generated part only
        assert final["novelty"] == {
            "longest": n.longest,
            "stretch": n.stretch,
            "windows": n.windows,
            "copied": n.copied,
        }
        assert 0 < n.longest < 150 and n.windows == 131
        r = httpx.post(url + "/api/generate", json={"beam": 1})
        assert r.status_code == 400 and "does no beam search" in r.json()["error"]


def test_a_model_of_items_writes_whole_items_in_the_playground(tmp_path):
    """An items model (--items) in serve: each generation ends where the model writes the end symbol."""
    from charrnn.data.corpus import DataConfig
    from charrnn.engines.config import ModelConfig
    from charrnn.training.config import TrainConfig
    from charrnn.training.trainer import train

    names = ["anna", "bob", "carl", "dora", "emil", "fritz", "greta", "hans"]
    (tmp_path / "n.txt").write_text("\n".join(names * 25) + "\n")
    train(
        TrainConfig(
            out=str(tmp_path / "run"),
            data=DataConfig(data=str(tmp_path / "n.txt"), items="lines"),
            batch_size=8,
            seq_len=16,
            lr=1e-2,
            max_epochs=0,
            max_steps=250,
            eval_every=250,
            quiet=True,
            model=ModelConfig(hidden_size=32, embedding_size=8),
        )
    )
    model, vocab, _ = load_model(str(tmp_path / "run"))
    with BackgroundServer(create_app(model, vocab, ServeConfig(), name="names")) as url:
        done = generate(url, {"length": 50, "temperature": 0.3, "seed": 4})[-1]
        assert done["done"] and done["text"] in names  # ended by the model, long before the cap of 50
        assert done["text"] == sample(model, vocab, SampleConfig(length=50, temperature=0.3, seed=4))[0]
        beam = generate(url, {"length": 50, "beam": 3})[-1]["text"]
        assert beam in names


# -- a classifier run (task classify): /api/classify ---------------------------------------


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """(model, vocab, meta, run folder) of a tiny trained surname classifier."""
    from viz_support import tiny_surnames

    run = tiny_surnames(tmp_path_factory.mktemp("classifier"))
    return (*load_model(str(run)), run)


@pytest.fixture(scope="module")
def classify_url(classifier):
    model, vocab, meta, _ = classifier
    with BackgroundServer(create_app(model, vocab, ServeConfig(max_prime=20), name="names", meta=meta)) as url:
        yield url


def test_classifier_page_and_model_info(classify_url, classifier):
    page = httpx.get(classify_url + "/")
    assert page.status_code == 200 and "charrnn classifier" in page.text and 'src="static/classify.js"' in page.text
    assert "api/classify" in httpx.get(classify_url + "/static/classify.js").text
    info = httpx.get(classify_url + "/api/model").json()
    assert info["task"] == "classify" and info["labels"] == ["English", "Russian", "Spanish"] == classifier[2]["labels"]
    assert info["limits"]["prime"] == 20


@pytest.mark.parametrize("text", ["Karpov", "Petrson", "K", "", "Kar pov!"])
def test_classify_gives_the_label_distribution_after_every_character(classify_url, classifier, text):
    from charrnn.predict import Labeller

    model, vocab, meta, _ = classifier
    answer = httpx.post(classify_url + "/api/classify", json={"text": text}).json()
    labeller = Labeller(model, vocab, tuple(meta["labels"]), "classify")
    want = labeller.prefix_probabilities(text)  # (T, C)
    steps = np.array(answer["steps"]).reshape(-1, 3)
    np.testing.assert_allclose(steps, want, rtol=1e-12)
    np.testing.assert_allclose(steps.sum(1), 1.0, atol=1e-9)
    kept = [c for c in text if c not in " !"]  # the vocabulary has no space and no "!": skipped, and said so
    assert answer["chars"] == kept and answer["skipped"] == ("' !'" if " " in text else "")
    if kept:  # the step API: model.step one character at a time from zeros, the reference of every page
        _, probs = naive_steps(model, vocab.encode("".join(kept)))
        np.testing.assert_allclose(steps, probs, atol=1e-6)
    whole = labeller.classify([text])[0]  # the top labels of the whole text, most likely first
    order = np.argsort(-whole)
    assert [label for label, _ in answer["top"]] == [meta["labels"][i] for i in order]
    assert [p for _, p in answer["top"]] == pytest.approx(whole[order], rel=1e-12)
    assert answer["labels"] == meta["labels"]


def test_classify_top_and_a_surname_that_turns_russian(classify_url):
    answer = httpx.post(classify_url + "/api/classify", json={"text": "Karpov", "top": 1}).json()
    assert [label for label, _ in answer["top"]] == ["Russian"]
    russian = [row[1] for row in answer["steps"]]
    assert russian[-1] > 0.6 and russian[-1] > 2 * russian[-2]  # the final "v" makes it Russian


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({}, 400, 'give the text to classify: {"text": "..."}'),
        ({"text": None}, 400, "give the text to classify"),
        ({"text": 5}, 400, "text must be a string, got 5"),
        ({"text": "K" * 21}, 413, "text has 21 characters; the limit is 20"),
        ({"text": "K", "top": 4}, 400, "top must be in [1, 3], got 4"),
        ({"text": "K", "top": 0}, 400, "top must be in [1, 3], got 0"),
        ({"text": "K", "top": "two"}, 400, "top must be an integer"),
        ({"text": "K", "prime": "x"}, 400, "unknown field(s) prime; allowed: text, top"),
        (["K"], 400, "the body must be a JSON object"),
    ],
)
def test_classify_requests_out_of_bounds_get_4xx_with_a_message(classify_url, body, status, message):
    r = httpx.post(classify_url + "/api/classify", json=body)
    assert r.status_code == status and message in r.json()["error"]


@pytest.mark.parametrize(
    "raw, ctype, status, message",
    [
        (b'{"text": "\\ud800"}', "application/json", 400, "lone surrogate"),
        (b'{"text": "K"', "application/json", 400, "must be JSON"),
        (b'{"text": "K"}', "text/plain", 415, "Content-Type: application/json"),
        (b" " * 70_000, "application/json", 413, "over 65536 bytes"),
    ],
)
def test_classify_hostile_bodies_get_4xx_never_500(classify_url, raw, ctype, status, message):
    r = httpx.post(classify_url + "/api/classify", content=raw, headers={"content-type": ctype})
    assert r.status_code == status and message in r.json()["error"]


def test_each_run_serves_the_endpoint_of_its_task(url, classify_url):
    r = httpx.post(classify_url + "/api/generate", json={"length": 5})
    assert r.status_code == 400 and r.json()["error"] == (
        "this is a classify model: it writes no text; POST to /api/classify"
    )
    r = httpx.post(url + "/api/classify", json={"text": "He"})
    assert r.status_code == 400 and r.json()["error"] == (
        "this is a next-char model: it has no labels to show; POST to /api/generate"
    )
    info = httpx.get(url + "/api/model").json()
    assert info["task"] == "next-char" and info["labels"] == []
    assert "charrnn playground" in httpx.get(url + "/").text


def test_serve_refuses_tag_runs_and_novelty_on_a_classifier_at_start(tmp_path, model_vocab, classifier):
    from charrnn.checkpoint import save_checkpoint
    from charrnn.errors import CharRNNError
    from charrnn.inspection.serve import serve

    model, vocab = model_vocab
    for task in ("tag", "truecase"):
        with pytest.raises(
            CharRNNError, match=r"^this is a \w+ model .*`charrnn serve` does not apply.*`charrnn tag`$"
        ):
            create_app(model, vocab, meta={"task": task, "labels": ["U", "l"]})
    meta = {"model": model.config.to_json(), "vocab": vocab.to_json(), "task": "truecase", "labels": ["U", "l"]}
    save_checkpoint(tmp_path / "tagger" / "best", model.state_dict(), meta)
    with free_socket() as held:  # were the run not refused at start, serve would fail here, "in use"
        port = held.getsockname()[1]
        with pytest.raises(CharRNNError, match="use `charrnn tag`"):
            serve(str(tmp_path / "tagger"), ServeConfig(port=port))
        with pytest.raises(CharRNNError, match="--novelty measures generated text, and a classify model writes none"):
            serve(str(classifier[3]), ServeConfig(novelty=True, port=port))


# -- a generate run (task generate): /api/generate writes for a label ------------------------


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    from viz_support import tiny_surnames

    return load_model(str(tiny_surnames(tmp_path_factory.mktemp("generator"), "generate")))


def test_a_generate_run_writes_for_the_label_asked(generator, url):
    model, vocab, meta = generator
    with BackgroundServer(create_app(model, vocab, ServeConfig(), name="gen", meta=meta)) as gen_url:
        info = httpx.get(gen_url + "/api/model").json()
        assert info["task"] == "generate" and info["labels"] == ["English", "Russian", "Spanish"]
        for label, prime in (("Russian", ""), ("Spanish", "Iv")):
            body = {"label": label, "prime": prime, "length": 30, "temperature": 0.5, "seed": 3}
            done = generate(gen_url, body)[-1]
            want = sample(model, vocab, SampleConfig(**body))[0]
            assert done["text"] == want and want.startswith(prime)
            # The trace read the label's symbol first, as the sampler did.
            tr = trace(model, vocab.encode(want), context=np.array([vocab.label_id(label)]))
            assert done["trace"]["has_first"] is True
            assert done["trace"]["surprisal"][:3] == pytest.approx(tr.surprisal[:3])
        r = httpx.post(gen_url + "/api/generate", json={"length": 5})
        assert r.status_code == 400
        assert r.json()["error"] == "this model writes for a label: give label, one of English, Russian, Spanish"
        r = httpx.post(gen_url + "/api/generate", json={"label": "Klingon"})
        assert r.status_code == 400
        assert r.json()["error"] == "unknown label 'Klingon'; the labels this model knows: English, Russian, Spanish"
    r = httpx.post(url + "/api/generate", json={"label": "Russian"})  # a next-char model writes for no label
    assert r.status_code == 400 and "not trained with --task generate" in r.json()["error"]

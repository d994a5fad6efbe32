# Set-up and the two jobs the README promises. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test check bench clean

# torch and torchvision are pinned to the releases this project's machines keep
# on local disk (an unpinned torch downloads several GB); tensorflow-cpu is the
# Keras backend used by the tests.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[runtime,tensorflow,dev]'
	touch $(STAMP)

# Compile specs/seed_cnn.yaml, convert a seeded random checkpoint with the
# generated module, print the difference against PyTorch on one input, then
# compare the two models layer by layer.
demo: $(STAMP)
	$(VENV)/bin/torch2keras compile specs/seed_cnn.yaml
	$(PY) examples/demo.py
	$(VENV)/bin/torch2keras verify specs/seed_cnn.yaml --checkpoint out/seed_cnn.safetensors

test: $(STAMP)
	$(PY) -m pytest

# Fails when generated/ is not what specs/ compile to.
check: $(STAMP)
	$(VENV)/bin/torch2keras check specs

# Conversion time/memory, latency, graph ops and error vs nobuco and the floor
# -> bench/RESULTS.md (7-15 min; creates bench/.venv-nobuco on first use).
# BENCH_ARGS=--quick for a smoke run of seed_cnn only.
bench: $(STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) out build *.egg-info

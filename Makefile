# Every target bootstraps its own virtual environment from a bare Python 3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdir

.PHONY: demo test bench clean

# --no-compile: no .pyc for the thousands of TensorFlow and torch modules at install time; Python
# writes them on first import, for the modules actually imported.
PIP_INSTALL := $(PY) -m pip install -q --no-compile

# ... and they are written on first import even where PYTHONDONTWRITEBYTECODE is set, into one tree
# under the venv (the source tree stays free of __pycache__): without them every test process and
# subprocess compiles TensorFlow's, torch's and JAX's sources again, ~9 s each.
export PYTHONPYCACHEPREFIX := $(abspath $(VENV))/pycache
unexport PYTHONDONTWRITEBYTECODE

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e .
	touch $@

# Test extras (pytest, torch CPU, diffusers) only for the targets that need them; one resolution for
# the package and its extras.
$(VENV)/.test-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e '.[test]'
	$(PIP_INSTALL) --no-deps open-clip-torch==3.3.0
	touch $(VENV)/.installed $@

# The main job in small: synthesise pairs, train an all-in-one restorer on them, evaluate it per type
# from its checkpoint on held-out photos (configs/demo.py). Outputs under $(WORKDIR)/.
# With GenDeg's released checkpoint: make demo GENDEG_WEIGHTS=gendeg.ckpt [GENDEG_STRUCTURE=nafnet.ckpt]
# (a Lightning .ckpt is unpickled, which runs code from the file: only for files you trust).
GENDEG_FLAGS = $(if $(GENDEG_WEIGHTS),--config.synth.generator=released --config.synth.weights=$(GENDEG_WEIGHTS) \
  --config.synth.allow_unsafe_pickle=True --config.synth.size=512 --config.synth.batch_size=1 \
  $(if $(GENDEG_STRUCTURE),--config.synth.structure_weights=$(GENDEG_STRUCTURE)))
demo: $(VENV)/.installed
	$(PY) -m jaxdeg.main --config=configs/demo.py:synthesize --workdir=$(WORKDIR)/synthetic --mode=synthesize $(GENDEG_FLAGS)
	$(PY) -m jaxdeg.main --config=configs/demo.py:$(WORKDIR)/synthetic --workdir=$(WORKDIR)/restorer --mode=train
	$(PY) -m jaxdeg.main --config=configs/demo.py:$(WORKDIR)/synthetic --workdir=$(WORKDIR)/restorer --mode=evaluate
	@echo "synthesised pairs: $(WORKDIR)/synthetic/synthesis_pairs.png; restored: $(WORKDIR)/restorer/demo.png"
	@cat $(WORKDIR)/restorer/metrics.md

# The serial part collects only the files that hold `serial` tests (collecting all of tests/ imports
# torch, diffusers, transformers ... again); tests/conftest.py refuses a `serial` test elsewhere.
SERIAL_TESTS = tests/train/test_multiprocess.py
# aomenc and dav1d for the film-grain parity tests: apt-get as root, else unpacked into $(VENV).
test: $(VENV)/.test-installed
	tests/install_system_tools.sh $(VENV)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q -n 2 --dist worksteal -m "not serial" --durations=40
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q -m serial $(SERIAL_TESTS) --durations=5

$(VENV)/.bench-installed: $(VENV)/.test-installed
	$(PIP_INSTALL) -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench-installed
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) $(WORKDIR)

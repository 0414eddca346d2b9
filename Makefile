# freqlab: two commands for a fresh machine.
#   make demo   installs into .venv (once) and runs the end-to-end demo on the embedded default data
#               (results in runs/demo, figures copied into figures/)
#   make test   installs into .venv (once, with test extras) and runs the test suite (make test-slow: the
#               longer tests too, as CI does)
# Both are safe to run twice.
#
# torch: on a machine without an NVIDIA GPU we install the pinned CPU build first, so pip never pulls a
# multi-GB CUDA build. A GPU user can bring their own torch: `make TORCH=torch demo`, or install torch into
# .venv before the first `make`; freqlab only asks for torch>=2.1 and then installs nothing more.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
OUT ?= runs/demo
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: demo test test-slow install lab notebooks bench clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/freqlab demo --out runs/demo --figures figures

test: install
	$(PY) -m pytest -q -m "not slow" tests

# the longer tests (several processes, reruns, the GPU run's figures); CI runs them after `make test`
test-slow: install
	$(PY) -m pytest -q -m slow tests

lab: install
	$(PY) -m pip install -q -e ".[dev,lab]"
	$(VENV)/bin/jupyter lab notebooks/

# execute the notebooks in place and save their outputs (01 and 03 from figures/results, seconds; 02 from runs/demo
# when `make demo` made it, about a minute, else it pre-trains its own model first, about 8 minutes)
notebooks: install
	$(PY) notebooks/execute.py

bench: install
	$(PY) benchmarks/bench_spectral.py

clean:
	rm -rf $(VENV) runs

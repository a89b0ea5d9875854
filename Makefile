# Two commands for a fresh machine: `make demo` and `make test` (README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision first and pinned: pip takes these from this machine's local disk (no multi-GB download).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

# an editable install leaves the project's own modules uncompiled, and with PYTHONDONTWRITEBYTECODE set (as on these
# machines) every command would compile them again at start-up (~0.3 s): compile once here, and again before `bench`
COMPILE := $(BIN)/python -m compileall -q edgesim simulator profilers benchmarks >/dev/null

.PHONY: demo test bench profiles testbed clean-venv

$(BIN)/edgesim: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(COMPILE)
	touch $(BIN)/edgesim

demo: $(BIN)/edgesim
	$(BIN)/edgesim run scenarios/matsubara2019_fig3.yaml --out results/matsubara2019_fig3 --overwrite
	@echo "report: results/matsubara2019_fig3/report.html"

test: $(BIN)/edgesim
	$(BIN)/python -m pytest -n 2 tests

bench: $(BIN)/edgesim
	$(COMPILE)
	$(BIN)/python -m benchmarks.run

profiles: $(BIN)/edgesim
	$(BIN)/python -m profilers.bundle

clean-venv:
	rm -rf $(VENV)

# The testbed's accuracy benchmark (root, iproute2, TUN, gcc): docs/sim_vs_real.md (about 20-30 min).
testbed: $(BIN)/edgesim
	$(BIN)/python -m edgesim.testbed.bench

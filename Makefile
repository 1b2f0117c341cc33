# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NBC := $(BIN)/nbcontainers
IMAGES ?= python pytorch-cpu
EXAMPLE_OUT := examples/quickstart.executed.ipynb

.PHONY: demo test setup venv engine base podman hub images kernelspecs browser swarm kserve-client check unit bench gpu-check labextension clean examples clean-images

demo: setup
	$(BIN)/papermill --log-output -k nbc-python examples/quickstart.ipynb $(EXAMPLE_OUT)
	@echo "Executed notebook saved to $(EXAMPLE_OUT)"

test: setup podman hub browser swarm kserve-client check
	NBCONTAINERS_REQUIRE_DOCKER=1 $(BIN)/pytest -v tests

setup: venv engine base images kernelspecs labextension

venv: $(BIN)/.installed
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Installs Debian's docker.io and starts dockerd in the background when no engine answers.
engine:
	bash scripts/ensure-docker.sh

# Where the pinned upstream base is not present (no registry here), make a local Debian base;
# `nbcontainers images build` then uses it and says so.
base: engine
	@base=$$(sed -n 's/^ARG BASE_IMAGE=//p' images/python/Dockerfile); \
	if docker image inspect "$$base" >/dev/null 2>&1; then echo "base $$base present"; \
	else bash scripts/make-local-base.sh; fi

# Rootless Podman and its test user (the contract suite runs against it as that user).
podman: base venv images
	NBC_VENV_PYTHON=$(abspath $(BIN)/python) bash scripts/ensure-podman.sh

# JupyterHub (PyPI, into the venv), configurable-http-proxy (npm), the kernelspecs in the venv
# and two hub test users; the hub test runs `nbcontainers hub setup` (the shared store) itself.
hub: podman
	bash scripts/ensure-hub.sh

# The Swarm worker node image (Debian's docker.io); the Swarm tests make the swarm itself
# (tests/swarmnet.py runs scripts/ensure-swarm.sh up, and down after them).
swarm: base
	bash scripts/ensure-swarm.sh image

images: venv base
	$(NBC) images build $(IMAGES)

kernelspecs: venv
	$(NBC) kernelspec install --sys-prefix

# The JupyterLab / Notebook 7 extension, built from labextension/ (its yarn.lock) into
# nbcontainers/labextension/ (skipped when up to date), where the wheel takes it from. The wheel
# also carries the file that enables the server extension; this checkout's editable venv does
# not get it (tests/lab starts its servers with their own data and config folders), so the
# test suite's other Jupyter servers run without it.
labextension: venv
	PATH=$(abspath $(BIN)):$$PATH bash scripts/build-labextension.sh

# Re-executes examples/*.ipynb and saves them with their outputs (what the README shows).
examples: setup
	bash scripts/run-examples.sh

# Debian's Chromium for the JupyterLab browser test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@chromium --version

# The `kserve` package's clients for the serving test, in .venv-kserve (kserve pins pandas<3
# and psutil<6, so it stays out of the test venv).
kserve-client:
	PYTHON=$(PYTHON) bash scripts/ensure-kserve-client.sh

check: venv
	$(BIN)/ruff format --check nbcontainers tests bench
	$(BIN)/ruff check nbcontainers tests bench
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q -m "not docker" tests

bench: setup
	$(BIN)/python bench/kernel_start.py
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/snapshot.py
	$(BIN)/python bench/serving.py

# The GPU path on a real GPU machine (root, NVIDIA driver, PyTorch with CUDA; no engine
# needed): the system Python runs it, since such a machine has torch but not our venv.
gpu-check:
	python3 scripts/gpu-check.py

# clean: orphaned kernel containers, the venvs (the kernelspecs in .venv) and the demo's output;
# the images stay (rebuilding takes minutes). clean-images also removes the catalog images.
clean:
	$(NBC) gc || true
	rm -rf $(VENV) .venv-kserve $(EXAMPLE_OUT)

clean-images:
	$(NBC) images rm --all --yes
	$(MAKE) clean

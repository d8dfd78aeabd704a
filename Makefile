# Two commands do everything on a fresh machine: `make book` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= demo
JOBS ?= 2

.PHONY: install test test-fast book lab reproduce clean publish gh-pages

install: $(STAMP)

# Reinstall when the dependencies change; pip keeps whatever torch already satisfies the range.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name mafer --display-name "Python (mafer)" > /dev/null
	touch $(STAMP)

# Both cores: tests that share an expensive session fixture (the smoke run, the capped paper
# graph) stay together on one worker (tests/conftest.py), the rest are shared out.
PYTEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

# The edit-test loop: every test that trains at most a few steps and starts no service.
test-fast: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not slow"

reproduce: install
	$(BIN)/mafer reproduce --profile $(PROFILE) --jobs $(JOBS)

# Fails when the build fails or when a number the pages quote (a glue role) is missing.
book: reproduce
	mkdir -p _build
	$(BIN)/jupyter-book build . --path-output . > _build/book-build.log 2>&1; status=$$?; \
		cat _build/book-build.log; test $$status -eq 0
	@if grep -q "mystnb.glue" _build/book-build.log; then \
		echo "make book: a number the book quotes is missing (mystnb.glue warnings above)" >&2; exit 1; fi

# The built book on the gh-pages branch, ready for GitHub Pages (PUSH=1 also pushes it to origin).
# --no-jekyll: GitHub's Jekyll would drop Sphinx's _static/ and _images/ folders.
SITE ?= _build/html
publish: book
	$(MAKE) gh-pages

gh-pages:
	$(BIN)/ghp-import --no-jekyll --force --message "book built from $$(git rev-parse --short HEAD)" \
		$(if $(PUSH),--push,) "$(SITE)"

# JupyterLab on the notebooks, offering only the project's kernel (the one they name). As root
# (containers, cloud VMs) it passes --allow-root; LAB_ARGS adds options, e.g.
#   make lab LAB_ARGS="--no-browser --port 8899 --ip 0.0.0.0"
LAB_ARGS ?=
lab: install
	$(BIN)/jupyter lab notebooks/ --KernelSpecManager.allowed_kernelspecs=mafer \
		--MultiKernelManager.default_kernel_name=mafer \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

clean:
	rm -rf _build results/smoke

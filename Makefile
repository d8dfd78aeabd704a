# Two commands do everything on a fresh machine: `make book` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= demo
JOBS ?= 2

.PHONY: install test book lab reproduce clean publish gh-pages

install: $(STAMP)

# Reinstall when the dependencies change; pip keeps whatever torch already satisfies the range.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name mafer --display-name "Python (mafer)" > /dev/null
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

reproduce: install
	$(BIN)/mafer reproduce --profile $(PROFILE) --jobs $(JOBS)

book: reproduce
	$(BIN)/jupyter-book build . --path-output .

# The built book on the gh-pages branch, ready for GitHub Pages (PUSH=1 also pushes it to origin).
# --no-jekyll: GitHub's Jekyll would drop Sphinx's _static/ and _images/ folders.
SITE ?= _build/html
publish: book
	$(MAKE) gh-pages

gh-pages:
	$(BIN)/ghp-import --no-jekyll --force --message "book built from $$(git rev-parse --short HEAD)" \
		$(if $(PUSH),--push,) $(SITE)

lab: install
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf _build results/smoke

# unclip-lab: `make demo` and `make test` are the two commands a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Notebooks run in their short "smoke" mode under the test suite.
export CI ?= 1

.PHONY: install test unit notebooks notebooks-full demo lab student site bench bench-all clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# the slowest tests are listed at the end of each run: the whole suite should stay under 25 minutes
test: install
	$(PY) -m pytest --durations=10 tests
	$(PY) -m pytest --durations=10 --nbval-lax --sanitize-with tests/nbval_sanitize.cfg notebooks

unit: install
	$(PY) -m pytest tests

notebooks: install
	$(PY) -m pytest --nbval-lax --sanitize-with tests/nbval_sanitize.cfg notebooks

# execute every notebook in its full mode, in place (the committed outputs; about 2.5 hours on 2 cores)
notebooks-full: install
	for nb in notebooks/*.ipynb; do env -u CI $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=3600 "$$nb" && $(PY) scripts/progress_fallback.py "$$nb" || exit 1; done

# the course as static HTML with its committed outputs: open site/index.html
site: install
	$(PY) scripts/make_site.py --notebooks notebooks --out site

demo: install
	$(VENV)/bin/unclip-lab demo --out outputs

lab: install
	$(VENV)/bin/jupyter lab notebooks

# the notebooks for students: exercise solutions replaced by stubs, outputs cleared
student: install
	$(PY) -m unclip_lib.exercises notebooks student

clean:
	rm -rf outputs student site .pytest_cache

# measure and write BENCHMARKS.md: the world and speed sections (a few minutes) ...
bench: install
	$(PY) scripts/bench.py --speed --write BENCHMARKS.md

# ... or every section (about 5 hours on 2 cores, 2 of them the emoji stack)
bench-all: install
	$(PY) scripts/bench.py --all -n 500 --write BENCHMARKS.md

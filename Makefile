# Two commands: `make run` (set up everything and serve on 127.0.0.1:8000) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-fast lint migrate admin screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

admin: migrate
	$(BIN)/python manage.py ensure_admin

run: admin
	$(BIN)/uvicorn aspweb.asgi:application --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

# Redraw the README's pictures under docs/screenshots/ (a plain test run never writes tracked files).
screenshots: install
	ASPWEB_SCREENSHOTS=1 $(BIN)/pytest tests/e2e $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .


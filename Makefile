# The two commands a new store or developer needs: `make demo` and `make test`.
# Each creates (or reuses) .venv and installs what it needs, system packages included.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck pytest bench system-deps screenshots vendor-chartjs clean

demo: $(VENV)/.installed-dev
	$(BIN)/storelink demo

test: $(VENV)/.installed-dev system-deps lint typecheck pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev system-deps
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	@for b in bench/*.py; do echo "# $$b"; $(BIN)/python $$b || exit 1; done

# The tests start their own Mosquitto, PostgreSQL and InfluxDB (1.x) on free ports; only the
# packages must exist (the influxd that Debian's package starts on port 8086 is stopped again).
# The dashboard's browser tests drive Debian's chromium through Playwright (never `playwright
# install`, which downloads a browser).
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		missing="$$missing postgresql"; \
	command -v influxd >/dev/null || missing="$$missing influxdb"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $$missing || exit 1; \
		case "$$missing" in *influxdb*) \
			if command -v systemctl >/dev/null; then \
				$(SUDO) systemctl disable --now influxdb 2>/dev/null || true; \
			fi;; \
		esac; \
	fi

# The README's dashboard pictures, taken by the browser tests.
screenshots: $(VENV)/.installed-dev system-deps
	STORELINK_SCREENSHOT_DIR=docs/img $(BIN)/python -m pytest -q tests/test_dashboard_browser.py

# Chart.js for the dashboard, from the npm registry (needs npm; the result is committed).
vendor-chartjs:
	scripts/vendor-chartjs.sh

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "storelink needs Python >= 3.11"'
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || \
		($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q python3-venv)
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The two commands the README promises: `make run` and `make test`.
PYTHON ?= python3
# Debian packages the tests drive for real: promtool/prometheus, amtool, docker-compose (config
# validation only), wrk (API load benchmark), openssl (test TLS certificates), chromium (browser
# tests, driven by Playwright through executable_path) and a font for its screenshots.
APT_PACKAGES := prometheus prometheus-alertmanager docker-compose wrk openssl chromium fonts-dejavu-core
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run demo test deps install

install:
	$(PYTHON) -m pip install -q -e .

run: install
	$(PYTHON) -m monitor run

demo: install
	$(PYTHON) -m monitor demo

deps:
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null \
	    || ! command -v amtool >/dev/null || ! command -v docker-compose >/dev/null \
	    || ! command -v wrk >/dev/null || ! command -v openssl >/dev/null \
	    || ! command -v chromium >/dev/null; then \
	  echo "installing Debian packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi
	@# node + npm: the browser tests fetch axe-core with `npm pack` (tests/browser/conftest.py).
	@if ! command -v npm >/dev/null; then \
	  echo "installing Debian packages: nodejs npm"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; \
	fi
	$(PYTHON) -m pip install -q -e '.[test]'

test: deps
	$(PYTHON) -m pytest -q -p no:cacheprovider

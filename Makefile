# CAM: `make demo`, `make test`, `make serve` (README). Everything runs from .venv, made on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MANAGE := $(PY) manage.py

.PHONY: demo test serve worker status migrate bench clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

migrate: $(VENV)/.installed
	$(MANAGE) migrate --noinput -v 0
	$(MANAGE) sync_schedules -v 0

demo: migrate
	$(MANAGE) cam_demo

# The browser tests drive Debian's chromium (never a downloaded browser): installed when missing.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# The mailbox tests log in to a real IMAP server: Debian's Dovecot, started by the tests with
# their own configuration (outreach/tests/imap_server.py), installed when missing.
DOVECOT := /usr/sbin/dovecot

$(DOVECOT):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dovecot-imapd

test: $(VENV)/.installed-dev $(CHROMIUM) $(DOVECOT)
	$(PY) -m pytest $(PYTEST_ARGS)

# `make serve PORT=8080` for another port.
PORT = 8000

serve: migrate
	$(MANAGE) runserver 127.0.0.1:$(PORT)

# The scheduler's workers (README, "Operations"): cycles every CAM_CYCLE_MINUTES, background
# imports. Stop with Ctrl-C. `CAM_CYCLE_MINUTES=2 make worker` to watch the demo run often.
worker: migrate
	$(MANAGE) qcluster

status: migrate
	$(MANAGE) cam_status

clean:
	rm -rf var .pytest_cache

bench: $(VENV)/.installed-dev
	$(PY) bench/bench_cycle.py

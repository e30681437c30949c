# Key Portal. `make run` to try it, `make test` to check it. See README.md.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV := DEBUG=1
PORT ?= 8000

.PHONY: install run serve test lint format migrations-check test-sqlite test-postgres bench bench-scale bench-flood bench-gateway bench-stream clean

install: $(STAMP)

# constraints.txt pins every package to the versions the suite last passed with (regenerate
# with `.venv/bin/pip freeze --exclude-editable > constraints.txt` after an upgrade).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Development server on 127.0.0.1:PORT (`make run PORT=8001` when 8000 is taken). The port is
# checked first, so the one-time admin password is never shown with a log-in address that
# does not answer.
#
# The try-out asks no role for a second factor (MFA_REQUIRED_ROLES empty), so the first admin
# logs in with the printed password alone; `make run MFA_REQUIRED_ROLES=admin,auditor` (or the
# variable in the environment) tries the enforced enrolment that production has by default.
MFA_REQUIRED_ROLES ?=
run: install
	@$(BIN)/python -c "$$PORT_FREE" $(PORT) || \
	  { echo "Port $(PORT) on 127.0.0.1 is taken: pick another, e.g. make run PORT=8001"; exit 1; }
	$(DEV) $(BIN)/python manage.py migrate --noinput
	$(DEV) $(BIN)/python manage.py ensure_admin --url http://127.0.0.1:$(PORT)/login/
	@echo "Second factor required for: $(or $(MFA_REQUIRED_ROLES),no role in this try-out) (MFA_REQUIRED_ROLES; production default admin,auditor)"
	$(DEV) MFA_REQUIRED_ROLES="$(MFA_REQUIRED_ROLES)" $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

# Exits non-zero unless nothing listens on 127.0.0.1:argv[1] (SO_REUSEADDR, as runserver
# binds: connections of an earlier run in TIME_WAIT do not count).
define PORT_FREE
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
    except (OSError, ValueError):
        sys.exit(1)
endef
export PORT_FREE

# Production: settings from the environment (docs/deploy.md), DEBUG off, hashed static files
# served by WhiteNoise, gunicorn with WORKERS workers on BIND (gunicorn.conf.py).
serve: install
	$(BIN)/python manage.py check --deploy
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/gunicorn --config gunicorn.conf.py portal.wsgi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrations-check: install
	DJANGO_SETTINGS_MODULE=tests.settings $(BIN)/python manage.py makemigrations --check --dry-run

test-sqlite: install
	$(BIN)/pytest

# The whole suite again on a throwaway PostgreSQL server (initdb/pg_ctl in a temp dir).
test-postgres: install
	$(BIN)/python tests/with_postgres.py $(BIN)/pytest

test: lint migrations-check test-sqlite test-postgres

# The API authentication path under load (gunicorn, SQLite); docs/performance.md shows a run.
bench: install
	$(BIN)/python bench/api_auth.py

# Scale-out figures: make bench on throwaway PostgreSQL + Redis servers, then the portal's
# pages with 100,000 keys and 1,000,000 audit events on SQLite and on PostgreSQL + Redis.
bench-scale: install
	-$(BIN)/python tests/with_postgres.py --redis $(BIN)/python bench/api_auth.py
	$(BIN)/python bench/portal_pages.py
	$(BIN)/python tests/with_postgres.py --redis $(BIN)/python bench/portal_pages.py

# A valid caller's latency while 200 connections send bad secrets or dribble bytes: sync and
# gthread workers, directly and behind nginx as docs/deploy.md sets it up (needs nginx).
bench-flood: install
	$(BIN)/python bench/flood.py

# The gateway check behind real nginx with wrk: unprotected, auth_request to the portal,
# auth_basic with bcrypt, refusals; /gateway/verify vs /healthz (needs nginx, wrk, htpasswd).
bench-gateway: install
	$(BIN)/python bench/gateway.py

# Audit streaming lag: 100 events/s for 60 s with manage.py stream_audit sending to a local
# HTTPS receiver and rsyslog over TCP (if installed); p50/p95/max of receive time - event time.
bench-stream: install
	$(BIN)/python bench/stream_lag.py

clean:
	rm -rf $(VENV) db.sqlite3* staticfiles test-artifacts .pytest_cache .ruff_cache .mypy_cache

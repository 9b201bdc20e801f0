# The verbs a person types. Every install is `uv sync --locked`; uv itself comes from pip
# when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --locked
ALEMBIC := $(RUN) alembic -c packages/database/alembic.ini

.PHONY: help uv install advisors bench bench-profile docs docs-check migrate-sql migrate-plan migration-lint inspect report verify demo dev db-up db-down db-url db-status migrate downgrade revision test lint format supabase-start supabase-stop

help: ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet --disable-pip-version-check uv

install: uv ## install the workspace (all packages + dev group) from uv.lock
	@$(UV) sync --locked --all-packages --quiet

demo: install ## the main job: database, migrations, sample feed, demo users + rules, evaluation, summary
	@$(RUN) python -m demo

dev: install ## demo data, then both APIs and the worker; prints URLs and a token per demo user
	@$(RUN) python -m demo dev

db-up: install ## start/reuse the database (embedded unless DATABASE_URL), migrate, print URL + health
	@$(RUN) database up

db-down: install ## stop the embedded database
	@$(RUN) database local down

db-url: install ## print the embedded database's URL
	@$(RUN) database local url

db-status: install ## is the embedded database running?
	@$(RUN) database local status

migrate: install ## print the plan (locks, live sizes), then upgrade DATABASE_URL (or the embedded database) to head
	@$(RUN) database migrate $(if $(max),--max-lock-table-size $(max),)

migrate-plan: install ## the plan only: each pending statement, its lock, the live size of its table
	@$(RUN) database migrate --plan $(if $(max),--max-lock-table-size $(max),)

migration-lint: install ## squawk on every revision's SQL (exceptions declared in the revision)
	@$(RUN) database migration-lint

migrate-sql: install ## write the SQL `make migrate` would run to build/migrate.sql, for review
	@mkdir -p build
	@$(RUN) database migrate --sql > build/migrate.sql
	@echo "build/migrate.sql: $$(grep -c ';' build/migrate.sql) statements"

downgrade: install ## downgrade one revision (or r=<revision>, e.g. r=base)
	@$(RUN) database downgrade $(or $(r),-1)

revision: install ## autogenerate a revision: make revision m="add foo"
	@test -n "$(m)" || { echo 'usage: make revision m="what changed"'; exit 2; }
	@$(ALEMBIC) revision --autogenerate -m "$(m)"

test: install ## run every test (embedded database unless DATABASE_URL is set)
	@$(RUN) pytest

lint: install ## ruff (lint + format check), mypy, the schema reference, the migration gate, Supabase's advisors
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) mypy
	@$(RUN) mypy apps/whale-tracker/src apps/whale-tracker/tests
	@$(RUN) mypy apps/alert-service/src apps/alert-service/tests
	@$(RUN) database docs --check
	@$(MAKE) --no-print-directory migration-lint
	@$(MAKE) --no-print-directory advisors

advisors: install ## Supabase's database advisors (CLI via npx) on the migrated database; fails on WARN/ERROR
	@$(RUN) database migrate >/dev/null
	@$(RUN) database advisors

inspect: install ## read the database's statistics: make inspect v=outliers (v=help lists the verbs; a="--json")
	@$(RUN) database inspect $(if $(filter help,$(v)),--help,$(or $(v),--help)) $(a)

report: install ## the inspect rules as pass/fail (thresholds: [tool.database.report]); exit 1 on a failure
	@$(RUN) database inspect report $(a)

verify: install ## integrity: amcheck, NOT VALID orphans, sequences, primary keys, RLS; exit 1 on a finding
	@$(RUN) database verify $(a)

docs: install ## regenerate docs/schema.md from the code (CI fails when it is stale)
	@$(RUN) database docs

format: install ## apply ruff's formatting and safe fixes
	@$(RUN) ruff format .
	@$(RUN) ruff check --fix .

supabase-start: install ## `supabase start` (needs Docker), then migrate its database
	@npx --yes supabase@3.1.0 start
	@DATABASE_URL="$$(npx --yes supabase@3.1.0 status -o env | sed -n 's/^DB_URL="\(.*\)"$$/\1/p')" \
		$(RUN) database migrate

supabase-stop: ## stop the `supabase start` stack
	@npx --yes supabase@3.1.0 stop

bench: install ## benchmarks (table + bench/results/*.json); `make bench q=1` for the quick run
	@$(RUN) python -m bench $(if $(q),--quick,)

bench-profile: install ## where bulk upsert and ingest time goes (client/server CPU, per-row stages); q=1 quick
	@$(RUN) python -m bench.profile $(if $(q),--quick,)

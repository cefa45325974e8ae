# The two commands of the README, and their parts. See labplatform/ops/kernellab.sh.
.PHONY: run test install services demo check-deploy

run:          ## set everything up, then run web + worker + beat (Ctrl-C stops)
	@labplatform/ops/kernellab.sh run

test:         ## ruff, mypy and the whole pytest suite (starts Redis/libvirtd if needed)
	@labplatform/ops/kernellab.sh test $(PYTEST_ARGS)

install:      ## system packages, Python and npm dependencies, static files, database
	@labplatform/ops/kernellab.sh install

services:     ## start Redis, virtlogd and libvirtd unless running
	@labplatform/ops/kernellab.sh services

demo:         ## create or refresh the demo course and accounts
	@labplatform/ops/kernellab.sh demo

check-deploy: ## Django's deployment checklist against the production settings
	KERNELLAB_ENV=production SECRET_KEY=$${SECRET_KEY:-check-deploy-only-$$(head -c 32 /dev/urandom | base64)} \
	  ALLOWED_HOSTS=$${ALLOWED_HOSTS:-kernellab.example.org} \
	  .venv/bin/python manage.py check --deploy --fail-level WARNING

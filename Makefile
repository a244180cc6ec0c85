# Two entry points: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# Tools the live tests drive, and dot for `simstack graph`; installed with apt when missing (needs root).
APT_TOOLS := iproute2 iputils-ping iputils-arping netcat-openbsd curl tshark tcpdump socat graphviz traceroute

.PHONY: demo test lint typecheck pytest apt bench fuzz fuzz-atheris man clean

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }

# The demo needs simstack alone; the test extra (scapy, mypy, ruff, hypothesis) is for `make test`.
$(BIN)/.demo-installed: pyproject.toml | $(BIN)/python
	@echo "installing simstack into $(VENV) (then: source $(VENV)/bin/activate)"
	@$(BIN)/pip install -q --disable-pip-version-check -e .
	@touch $@

$(BIN)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(BIN)/.demo-installed

apt:
	@missing=""; for p in $(APT_TOOLS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: $(BIN)/.demo-installed
	@$(BIN)/simstack replay scenarios/ping.yaml -v

lint: $(BIN)/.installed
	$(BIN)/ruff check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

pytest: $(BIN)/.installed apt
	$(BIN)/pytest

test: lint typecheck pytest

# The Hypothesis tests random and long: `make test` runs them derandomized (tests/conftest.py).
# FUZZ_EXAMPLES raises the least number of examples a test gets (default 5000).
FUZZ_EXAMPLES ?= 5000
fuzz: $(BIN)/.installed
	SIMSTACK_HYPOTHESIS=fuzz SIMSTACK_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -m "not live" -p no:cacheprovider tests

# Coverage-guided fuzzing of the TCP receive path with atheris (fuzz/README.md); not part of `make test`.
# FUZZ_TIME is in seconds; what it finds lands in fuzz/findings/.
FUZZ_TIME ?= 1800
fuzz-atheris: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[fuzz]'
	$(BIN)/python fuzz/seed_corpus.py
	mkdir -p fuzz/findings
	FUZZ_FINDINGS=fuzz/findings nice $(BIN)/python fuzz/fuzz_stack.py fuzz/corpus -max_total_time=$(FUZZ_TIME) \
		-max_len=8192 -print_final_stats=1

# simstack(1) from the parser; tests/test_cli_help.py fails when the committed page is stale.
man: $(BIN)/.installed
	$(BIN)/python -m simstack.manpage > simstack/simstack.1

bench: $(BIN)/.installed
	$(BIN)/python bench/replay_ping.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

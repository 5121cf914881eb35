# Two commands a user needs: `make quickstart` (the main job on the embedded default) and `make test`.
# Both create .venv on first use (scripts/setup.sh).
.PHONY: quickstart test lint bench clean-venv

VENV_STAMP := .venv/.vla-installed

$(VENV_STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

quickstart: $(VENV_STAMP)
	.venv/bin/vla quickstart --out runs/quickstart

test: $(VENV_STAMP)
	.venv/bin/python -m pytest -q

lint: $(VENV_STAMP)
	.venv/bin/ruff check vla sim deploy scripts tests

bench: $(VENV_STAMP)
	.venv/bin/python scripts/bench_tokenizers.py --out benchmarks/tokenizers.json

clean-venv:
	rm -rf .venv

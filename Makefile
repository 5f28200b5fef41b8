# Entry points on a fresh machine (each creates its own virtual environment):
#   make demo        text -> index -> search -> nDCG@10 on the embedded SciFact sample
#   make test        the test suite without the peer engines (the README's test command; needs ../shared)
#   make test-fast   neither `slow` nor `peers` tests (minutes)
#   make test-peers  the `peers` tier: installs the peer engines (JVM, PISA, BMP, Seismic) into the venv
PY      ?= python3.11
TORCH   ?= torch==2.13.0
VENV    ?= .venv
DEMOENV ?= .venv-demo
DEMO    ?= demo-out
PIP_Q   ?= -q

.PHONY: demo test test-fast test-peers check-install clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_Q) --upgrade pip
	# the local CPU wheel first, so that nothing resolves an unpinned (CUDA) torch
	$(VENV)/bin/pip install $(PIP_Q) $(TORCH)
	$(VENV)/bin/pip install $(PIP_Q) -e '.[encoders,eval,train,pyterrier,hub,test,onnx,serve,distributed]'
	touch $@

$(DEMOENV)/.installed: pyproject.toml
	$(PY) -m venv $(DEMOENV)
	$(DEMOENV)/bin/pip install $(PIP_Q) --upgrade pip
	# the local CPU wheel first, so that nothing resolves an unpinned (CUDA) torch
	$(DEMOENV)/bin/pip install $(PIP_Q) $(TORCH)
	$(DEMOENV)/bin/pip install $(PIP_Q) '.[encoders,eval]'
	touch $@

# The demo's encoder: the splade-tiny preset (hub id rasyosef/splade-tiny); a local copy of the checkpoint
# replaces it where there is one (DEMO_MODEL=DIR, default ../shared/models/splade-tiny when it exists).
DEMO_MODEL ?= $(wildcard ../shared/models/splade-tiny)
DEMO_ENC   := splade-tiny$(if $(DEMO_MODEL), --model-path $(DEMO_MODEL))
DEMO_DATA  := lsr/data

# text -> index (one step) -> search (text queries) -> nDCG@10; then lsr benchmark for the latency figures
demo: $(DEMOENV)/.installed
	mkdir -p $(DEMO)/scifact-1k
	$(DEMOENV)/bin/lsr index --encoder $(DEMO_ENC) --corpus $(DEMO_DATA)/scifact-1k.corpus.jsonl.gz \
		-o $(DEMO)/index --overwrite
	$(DEMOENV)/bin/lsr info $(DEMO)/index
	$(DEMOENV)/bin/lsr search -i $(DEMO)/index -q $(DEMO_DATA)/scifact-test.queries.jsonl.gz --query-format text \
		-k 10 -o $(DEMO)/run.trec
	head -n 5 $(DEMO)/run.trec
	$(DEMOENV)/bin/lsr eval $(DEMO)/run.trec --qrels $(DEMO_DATA)/scifact-1k.qrels.tsv -m nDCG@10,RR@10,R@10
	# the same collection as a flat dataset directory, for lsr benchmark (encodes again, times every query)
	ln -sf $(CURDIR)/$(DEMO_DATA)/scifact-1k.corpus.jsonl.gz $(DEMO)/scifact-1k/corpus.jsonl.gz
	ln -sf $(CURDIR)/$(DEMO_DATA)/scifact-test.queries.jsonl.gz $(DEMO)/scifact-1k/queries.jsonl.gz
	ln -sf $(CURDIR)/$(DEMO_DATA)/scifact-1k.qrels.tsv $(DEMO)/scifact-1k/qrels.tsv
	$(DEMOENV)/bin/lsr benchmark --dataset $(DEMO)/scifact-1k --encoder $(DEMO_ENC) --algorithms auto \
		--metrics nDCG@10,RR@10,R@10 --no-plots -o $(DEMO)/benchmark --cache-dir $(DEMO)/cache

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -m "not peers" --durations=15

test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -m "not slow and not peers" --durations=10

$(VENV)/.peers: $(VENV)/.installed
	# torch is already the pinned wheel, so pyserini's torch requirement is met as it is
	$(VENV)/bin/pip install $(PIP_Q) -e '.[encoders,eval,train,pyterrier,hub,test,peers,onnx,serve,distributed]'
	touch $@

# pytest exits 5 when no test is selected; that is a failure here (the tier must exist)
test-peers: $(VENV)/.peers
	$(VENV)/bin/python -m pytest -q -m peers --durations=10

# `pip install .` and `pip install -e .` in fresh virtual environments, used outside the checkout: the CLI
# starts, and the shipped presets and registry entries are found (package data).
check-install:
	# a stale build/ (setuptools reuses build/lib) would ship files the checkout no longer has
	rm -rf /tmp/lsr-check-wheel /tmp/lsr-check-edit build
	$(PY) -m venv /tmp/lsr-check-wheel && /tmp/lsr-check-wheel/bin/pip install $(PIP_Q) .
	$(PY) -m venv /tmp/lsr-check-edit && /tmp/lsr-check-edit/bin/pip install $(PIP_Q) -e .
	for v in /tmp/lsr-check-wheel /tmp/lsr-check-edit; do \
		(cd /tmp && $$v/bin/python -c "import lsr, lsr.index, lsr.encoders, lsr.eval, lsr.config; print(lsr.__file__)" \
		 && $$v/bin/lsr --help >/dev/null && $$v/bin/lsr index --help >/dev/null \
		 && $$v/bin/lsr search --help >/dev/null \
		 && $$v/bin/lsr encode --list | grep -x splade-tiny >/dev/null \
		 && $$v/bin/lsr benchmark --list-registry | grep '^splade-tiny-scifact: ' >/dev/null) || exit 1; \
	done
	@echo "pip install . and pip install -e . both work; lsr encode --list and lsr benchmark --list-registry list the shipped entries"

clean:
	rm -rf $(VENV) $(DEMOENV) $(DEMO) build *.egg-info

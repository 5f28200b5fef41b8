"""Benchmarks and lab tools for lsr, run from a checkout (``python -m benchmarks.NAME``); NOT installed.

* :mod:`benchmarks.peers`: the one engine interface, :class:`~benchmarks.peers.Engine`, and its
  implementations: lsr itself, PISA, BMP, Seismic, Lucene (pyserini), SciPy over an lsr index's
  impacts, and BM25 (pyserini) over text.
* :mod:`benchmarks.peer_bench`: lsr's query processors side by side with the engines on the same
  postings (``--peers``, ``--collection synthetic|real``); :mod:`benchmarks.plots` draws its JSON.
* :mod:`benchmarks.pipeline`: ``lsr benchmark`` with the BM25 and PISA baselines plugged in
  (:class:`lsr.eval.benchmark.Baseline`).
* Collections: :mod:`benchmarks.synthetic`, :mod:`benchmarks.realdata`, cached outside the repository
  (:mod:`benchmarks.cache`: ``$LSR_BENCH_CACHE`` or ``~/.cache/lsr-bench``).
* :mod:`benchmarks.encoder_speed` (encoder throughput), :mod:`benchmarks.bm25` (pyserini BM25 helpers),
  :mod:`benchmarks.bruteforce` (the brute-force oracle) and measurement scripts (``benchmarks/scripts/``).

This package sets up its own process where an engine needs it (the JVM for pyserini: ``JAVA_HOME``,
``ANSERINI_CLASSPATH``, ``OPENAI_API_KEY``; ``OMP_WAIT_POLICY`` for the real-data encode), which the
installed package never does.
"""

"""Benchmarks and lab tools for lsr, run from a checkout (``python -m benchmarks.NAME``); NOT installed.

peer engines (:mod:`benchmarks.peers`), the side-by-side query benchmark (:mod:`benchmarks.peer_bench`),
collection builders (:mod:`benchmarks.synthetic`, :mod:`benchmarks.realdata`), the encoder speed bench
(:mod:`benchmarks.encoder_speed`), the BM25 baseline (:mod:`benchmarks.bm25`), the brute-force oracle
(:mod:`benchmarks.bruteforce`) and measurement scripts (``benchmarks/scripts/``).
"""

"""Benchmarks: switchboard against the seed design, on this machine, as ratios from one run.

``python -m bench`` (``make bench``) runs the quick set, ``python -m bench --full``
(``make bench-full``) the larger one. Results go to ``bench/results/`` (JSON, markdown, PNG).
Everything talks to 127.0.0.1 only, and every loop is bounded in count and in time.
"""

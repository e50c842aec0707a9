"""Issue 8: this stack (orchestrator + Triton dynamic batcher) against the per-session design.

``python -m bench`` runs it (see ``bench/README.md``); :func:`bench.comparison.runner.run`
is the API the smoke test calls.
"""

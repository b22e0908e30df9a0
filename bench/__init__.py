"""Benchmarks on one harness (``bench/harness.py``): ``python -m bench`` runs them all and renders
``docs/performance.md``; ``python -m bench.<name>`` runs and prints one."""

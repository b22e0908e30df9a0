"""Benchmarks: ``python -m bench.<pipeline>`` prints throughput, peak RSS and the ratio to a naive baseline."""

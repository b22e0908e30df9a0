"""Local services shared by the test suite, the demo and the benchmarks (never imported by DAGs)."""

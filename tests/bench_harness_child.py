"""A benchmark child for tests/test_bench_harness.py: ``python -m tests.bench_harness_child MODE [MIB]``.

``allocate MIB`` holds MIB mebibytes (every page written) and ends with ``harness.child_result``;
``fail`` writes to stderr and exits 3; ``silent`` exits 0 without a result line.
"""

from __future__ import annotations

import sys

from bench import harness


def main() -> None:
    mode = sys.argv[1]
    if mode == "fail":
        print("the child could not reach its database", file=sys.stderr)
        raise SystemExit(3)
    if mode == "silent":
        print("no result here")
        return
    held = b"\x01" * (int(sys.argv[2]) * harness.MIB)
    print("progress output before the result")
    harness.child_result({"items": 1234, "held_bytes": len(held)})


if __name__ == "__main__":
    main()

"""Run every benchmark in this directory (``make bench``); each rewrites its own section
of docs/BENCHMARKS.md. Pass names to run a subset: ``python benchmarks/run_all.py cells``.

Names: cells, demo, import, job, models (model and featurization variants, training only),
score, sql, train (the enclave training job against plaintext training, 4 × 25k to 4 × 400k:
the longest; ``bench_train.py --enclave-only --scales 1000000`` is run by hand).

PostgreSQL halves use ``CLEANROOM_TEST_POSTGRES_URL`` (default: the local server).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    os.environ.setdefault(
        "CLEANROOM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        start = time.perf_counter()
        status = subprocess.call([sys.executable, str(script)])
        took = time.perf_counter() - start
        print(f"== {script.name}: exit {status} after {took:.0f} s", flush=True)
        if status:
            failed.append(script.name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

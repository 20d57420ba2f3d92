"""The whole enclave job, end to end, on loopback: where the time goes.

    .venv/bin/python benchmarks/bench_job.py [--parties 3] [--records 300 10000] [--write]

For each size: three (``--parties``) hospitals import ``records`` synthetic MedicalRecords
each (encrypted by their own clients into a fresh SQLite store), sign a contract, run
brokers (uvicorn threads on 127.0.0.1); then ``run_contract_job`` launches the simulated
enclave and the script timestamps every progress event it streams. Reported per size:
enclave start (launch to the contract check), keys (attestation and release, all brokers),
data (stream, digest, decrypt, validate), training + evaluation + collaboration report +
ONNX export and parity, sealing + receipt + ledger, and the total. With ``--write`` the
table replaces the "Enclave job" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _job_setup import set_up_job, synthetic_sites
from _report import machine, write_section


def run_once(parties: int, records: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="bench-job-"))
    job = set_up_job(work, synthetic_sites(parties, records))
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    start = time.perf_counter()

    def progress(event: dict[str, Any]) -> None:
        now = time.perf_counter() - start
        first.setdefault(str(event["step"]), now)
        last[str(event["step"])] = now

    try:
        job.run(progress, timeout=3600)
    finally:
        job.close()
    total = time.perf_counter() - start
    return {
        "start": first["contract"],
        "keys": last["keys-released"] - first["launched"],
        "data": last["rows"] - last["keys-released"],
        "train": first["trained"] - last["rows"],
        "seal": first["done"] - first["trained"],
        "total": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--records", type=int, nargs="+", default=[300, 10_000])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    lines = [
        f"`benchmarks/bench_job.py`, {machine()}; simulated TEE, brokers on loopback, SQLite. "
        "Seconds from launching the enclave (wall clock, one run each).",
        "",
        "| parties × records | enclave start | keys (all brokers) | data (decrypt+validate) "
        "| train+evaluate+report+ONNX | seal+receipt+ledger | total |",
        "|---|---|---|---|---|---|---|",
    ]
    for records in args.records:
        t = run_once(args.parties, records)
        lines.append(
            f"| {args.parties} × {records:,} | {t['start']:.1f} | {t['keys']:.1f} "
            f"| {t['data']:.1f} | {t['train']:.1f} | {t['seal']:.1f} | {t['total']:.1f} |"
        )
        print(lines[-1], flush=True)
    if args.write:
        write_section("Enclave job", "\n".join(lines))


if __name__ == "__main__":
    main()

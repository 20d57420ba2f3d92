"""The demo's phases next to a plaintext pipeline doing the same ML work, in one run.

    .venv/bin/python benchmarks/bench_demo.py [--parties 4] [--records 100000]

The clean-room side is ``cleanroom demo`` itself (encrypted import, attestation and key
release, decryption in the enclave, training, evaluation). The plaintext side reads the same
CSV files with pandas, splits, trains the same pooled model and computes the same
collaboration report — no encryption, no enclave, no brokers. Writes the "Demo" section of
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))


from _report import machine, write_section
from cleanroom.data import read_medical_records_csv
from cleanroom.demo.flow import DemoOptions, run_demo
from cleanroom.ml import (
    collaboration_report,
    evaluate,
    medical_record_spec,
    pool,
    train,
    train_test_split,
)


class Quiet:
    def step(self, number: int, title: str) -> None:
        print(f"{number}. {title}", flush=True)

    def task(self, description: str, total: int) -> Any:
        return lambda done: None

    def proved(self, text: str) -> None:
        pass

    def warn(self, text: str) -> None:
        pass


def plaintext_pipeline(csv_dir: Path) -> dict[str, float]:
    spec = medical_record_spec()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    frames = {p.stem: read_medical_records_csv(p) for p in sorted(csv_dir.glob("*.csv"))}
    timings["load CSVs"] = time.perf_counter() - start
    mark = time.perf_counter()
    splits = {}
    for party, frame in frames.items():
        halves = train_test_split(frame, label=spec.label, test_fraction=0.2, seed=0)
        splits[party] = (halves.train, halves.test)
    timings["split"] = time.perf_counter() - mark
    mark = time.perf_counter()
    pooled = train(pool({p: tr for p, (tr, _) in splits.items()}), spec=spec)
    timings["train"] = time.perf_counter() - mark
    mark = time.perf_counter()
    evaluate(pooled, pool({p: te for p, (_, te) in splits.items()}))
    collaboration_report(splits, spec=spec, pooled=pooled)
    timings["evaluate"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - start
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=4)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        workdir = Path(tmp) / "demo"
        result = run_demo(
            DemoOptions(parties=args.parties, records=args.records, workdir=workdir), Quiet()
        )
        plain = plaintext_pipeline(workdir / "data")
    demo = result["timings_s"]
    rows = [
        "| phase | clean room (encrypted, attested) | plaintext pipeline |",
        "|---|---:|---:|",
        f"| import / load CSVs | {demo['import']:.1f} s | {plain['load CSVs']:.1f} s |",
        f"| enclave start, attestation, key release | {demo['attest_and_release']:.1f} s | — |",
        f"| read + decrypt + validate (+ split) | {demo['decrypt']:.1f} s | "
        f"{plain['split']:.1f} s |",
        f"| train pooled model | {demo['train']:.1f} s | {plain['train']:.1f} s |",
        f"| evaluate + collaboration report + ONNX check | {demo['evaluate']:.1f} s | "
        f"{plain['evaluate']:.1f} s |",
        f"| whole run | {demo['total']:.1f} s | {plain['total']:.1f} s |",
    ]
    body = "\n".join(
        [
            f"Command: `.venv/bin/python benchmarks/bench_demo.py --parties {args.parties} "
            f"--records {args.records}`",
            "",
            f"Machine: {machine()}. {args.parties} hospitals × {args.records:,} records "
            "(synthetic), multinomial logistic regression.",
            "",
            *rows,
            "",
            "The clean-room total also covers generating the data, the operator-side",
            "plaintext scan, starting the brokers, signing the contract, opening the sealed",
            "outputs, scoring through attested TLS and verifying the ledger.",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("Demo", body)


if __name__ == "__main__":
    main()

"""Training speed and the collaboration report on synthetic hospitals (and the UCI sites).

    .venv/bin/python benchmarks/bench_models.py [--parties 4] [--records 100000]
        [--small-records 1000] [--no-report]

For each algorithm/featurization it times, on `parties × records` synthetic MedicalRecords
(`cleanroom.data.generate_sites`, seed 0) split 80/20 per party: the split, featurizing
the pooled training rows (the design matrix as train() builds it, in blocks), training
(featurize + fit), evaluating on the pooled test rows, exporting ONNX, and scoring the test rows in
onnxruntime (with the parity check). Each configuration runs in a fresh process so its
peak resident memory is its own. Then (unless `--no-report`) it computes the
collaboration report — every party alone vs pooled — on the same data, on small
synthetic sites (`--small-records` each) and on the four UCI Heart Disease sites.
Writes the "Training" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import pandas as pd

from _report import machine, write_section
from cleanroom.data import generate_sites
from cleanroom.ml import (
    collaboration_report,
    evaluate,
    export_onnx,
    medical_record_spec,
    onnx_matches,
    pool,
    train,
    train_test_split,
)
from cleanroom.ml.design import design_matrix, fit_preprocessor

CONFIGS = (
    ("multinomial_logistic_regression", "schema"),
    ("multinomial_logistic_regression", "article"),
    ("gradient_boosted_trees", "schema"),
)
SHORT = {"multinomial_logistic_regression": "logistic (maxent)", "gradient_boosted_trees": "GBT"}


def _splits(sites: dict[str, pd.DataFrame]) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    spec = medical_record_spec()
    out = {}
    for party, frame in sites.items():
        halves = train_test_split(frame, label=spec.label, test_fraction=0.2, seed=0)
        out[party] = (halves.train, halves.test)
    return out


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(algorithm: str, featurization: str, parties: int, records: int) -> dict[str, Any]:
    """Time one configuration (runs in its own process)."""
    spec = medical_record_spec()
    sites = generate_sites(parties, records, 0)
    base_mib = _peak_mib()
    t0 = time.perf_counter()
    splits = _splits(sites)
    t_split = time.perf_counter() - t0
    # Every party's training rows as train() takes them in the job: a list, no pooled copy.
    train_rows = [tr for tr, _ in splits.values()]
    test_rows = pool({p: te for p, (_, te) in splits.items()})

    t0 = time.perf_counter()
    # The design matrix as train() builds it (cleanroom.ml.design: fitted on the numeric
    # columns, filled in blocks; float32 for the block-wise L-BFGS).
    trees = algorithm == "gradient_boosted_trees"
    fitted = fit_preprocessor(
        train_rows,
        spec,
        featurization,  # type: ignore[arg-type]
        scale=not trees,
        dense=trees,
    )
    design = design_matrix(fitted, train_rows, spec, featurization, compact=not trees)  # type: ignore[arg-type]
    t_featurize = time.perf_counter() - t0
    width = design.shape[1]
    sparse = hasattr(design, "nnz")
    del design

    t0 = time.perf_counter()
    model = train(train_rows, spec=spec, algorithm=algorithm, featurization=featurization)
    t_train = time.perf_counter() - t0

    t0 = time.perf_counter()
    metrics = evaluate(model, test_rows)
    t_eval = time.perf_counter() - t0

    t0 = time.perf_counter()
    blob = export_onnx(model)
    t_export = time.perf_counter() - t0

    t0 = time.perf_counter()
    same = onnx_matches(model, blob, test_rows)
    t_onnx = time.perf_counter() - t0
    return {
        "algorithm": algorithm,
        "featurization": featurization,
        "train_rows": sum(len(part) for part in train_rows),
        "test_rows": len(test_rows),
        "width": width,
        "sparse": sparse,
        "split": t_split,
        "featurize": t_featurize,
        "train": t_train,
        "evaluate": t_eval,
        "export": t_export,
        "onnx_check": t_onnx,
        "onnx_bytes": len(blob),
        "onnx_matches": same,
        "accuracy": metrics.micro_accuracy,
        "peak_mib": _peak_mib(),
        "data_mib": base_mib,
    }


def _report_rows(sites: dict[str, pd.DataFrame], label: str) -> list[str]:
    spec = medical_record_spec()
    splits = _splits(sites)
    rows = []
    for algorithm, featurization in CONFIGS:
        t0 = time.perf_counter()
        report = collaboration_report(
            splits, spec=spec, algorithm=algorithm, featurization=featurization
        )
        elapsed = time.perf_counter() - t0
        per_party = ", ".join(
            f"{p.party} {p.alone_on_own.micro_accuracy:.3f}→{p.pooled_on_own.micro_accuracy:.3f}"
            for p in report.parties
        )
        own_gain = sum(p.gain for p in report.parties) / len(report.parties)
        all_gain = sum(report.gain_on_all(p.party) for p in report.parties) / len(report.parties)
        mean_alone_all = sum(p.alone_on_all.micro_accuracy for p in report.parties) / len(
            report.parties
        )
        rows.append(
            f"| {label} | {SHORT[algorithm]} | {featurization} "
            f"| {report.mean_alone_accuracy:.3f} | {report.pooled_accuracy:.3f} "
            f"| {own_gain:+.3f} | {mean_alone_all:.3f} | {all_gain:+.3f} "
            f"| {report.pooled_on_all.log_loss_reduction or 0:.3f} | {per_party} "
            f"| {elapsed:.0f} s |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=4)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--no-report", action="store_true", help="skip the collaboration report")
    parser.add_argument(
        "--small-records",
        type=int,
        default=1000,
        help="also report on parties × this many synthetic records (UCI-sized sites)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        algorithm, featurization = args.worker.split(":")
        result = worker(algorithm, featurization, args.parties, args.records)
        print(json.dumps(result))
        return

    results = []
    for algorithm, featurization in CONFIGS:
        command = [
            sys.executable,
            __file__,
            "--worker",
            f"{algorithm}:{featurization}",
            "--parties",
            str(args.parties),
            "--records",
            str(args.records),
        ]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(results[-1], flush=True)

    n = args.parties * args.records
    lines = [
        f"Command: `.venv/bin/python benchmarks/bench_models.py --parties {args.parties} "
        f"--records {args.records}`",
        "",
        f"Machine: {machine()}, load average {os.getloadavg()[0]:.1f} at the end — a busy "
        "machine shared with other engineers' jobs, so times are upper bounds; one run each; "
        "numerical libraries limited to 1 thread (`train(threads=1)`, the default).",
        "",
        f"{args.parties} synthetic sites × {args.records:,} records = {n:,} rows, split 80/20 "
        "per site (disjoint, stratified); times in seconds on the pooled rows.",
        "",
        "| model | featurization | design matrix | split | featurize | train (incl. featurize) "
        "| evaluate | export ONNX | ONNX score + parity | ONNX size | peak RSS | test accuracy |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        kind = "sparse" if r["sparse"] else "dense"
        parity = "" if r["onnx_matches"] else " **MISMATCH**"
        lines.append(
            f"| {SHORT[r['algorithm']]} | {r['featurization']} | {r['train_rows']:,} × "
            f"{r['width']} {kind} | {r['split']:.2f} | {r['featurize']:.2f} | {r['train']:.1f} "
            f"| {r['evaluate']:.2f} | {r['export']:.2f} | {r['onnx_check']:.2f}{parity} "
            f"| {r['onnx_bytes'] / 1024:,.0f} KiB | {r['peak_mib']:,.0f} MiB "
            f"| {r['accuracy']:.3f} |"
        )
    lines += [
        "",
        "Peak RSS is the whole worker process (Python, libraries, the generated frames — "
        f"{results[0]['data_mib']:,.0f} MiB before splitting — and the model).",
    ]
    if not args.no_report:
        from cleanroom.data.uci import load_uci_sites

        lines += [
            "",
            "### Collaboration report (every party alone vs pooled)",
            "",
            "Micro accuracy on the test rows. *alone* is the mean over parties of each "
            "party's own model on its own test rows, *pooled* the pooled model on all test "
            "rows (the article's 90 % → 96 % pair); *gain, own* the mean per-party gain on "
            "its own test rows; *alone on all* / *gain, all* the same measured on everyone's "
            "test rows; RIG the pooled model's log-loss reduction on all test rows.",
            "",
            "| data | model | featurization | alone | pooled | gain, own | alone on all "
            "| gain, all | RIG | per party (alone→pooled, own test rows) | time |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        sites = generate_sites(args.parties, args.records, 0)
        lines += _report_rows(sites, f"synthetic {args.parties}×{args.records:,}")
        if args.small_records:
            small = generate_sites(args.parties, args.small_records, 0)
            lines += _report_rows(small, f"synthetic {args.parties}×{args.small_records:,}")
        lines += _report_rows(load_uci_sites(), "UCI (920 rows)")
    body = "\n".join(lines)
    print(body)
    write_section("Training", body)


if __name__ == "__main__":
    main()

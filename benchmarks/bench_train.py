"""The training job in the enclave against the same training on plaintext, side by side.

    flock /work/notes/bench.lock .venv/bin/python benchmarks/bench_train.py \\
        [--parties 4] [--scales 25000 100000 400000] [--repeat 1] [--enclave-only] [--quick]

For each scale (records per party) the script generates the sites
(``cleanroom.data.generate_sites``, seed 0) and measures:

- the enclave job: every site imported encrypted by its own ``PartyClient`` into a fresh
  SQLite store, brokers on loopback, contract signed (``_job_setup.py``), then
  ``run_contract_job`` on the simulated TEE. From its progress events: the data phase (last
  ``keys-released`` → last ``rows``: stream, digest, decrypt, validate) and the training
  phase (last ``rows`` → ``trained``: split, train, evaluate, collaboration report, ONNX
  export and parity). Their sum is the enclave total; enclave start, attestation, key
  release and sealing are reported as the whole job, not in the ratio.
- the plaintext baselines, the same DataFrames, each in a fresh child process, no crypto, no
  store: *same code* — the same ``cleanroom.ml`` calls the job makes (per-party
  ``train_test_split`` with the contract's fraction and seed, ``train``,
  ``collaboration_report`` (which evaluates), ``export_onnx``, ``onnx_matches``); *stock* —
  the same work with every model fitted by scikit-learn's own ``Pipeline.fit``
  (``_stock_model``), as one would outside cleanroom. The first ratio is what
  confidentiality costs; the second what a user sees against ordinary scikit-learn.

Peak memory is each child process's ``VmHWM`` (peak resident set) from
``/proc/<pid>/status``: polled for the enclave while it runs and read again at every
progress event, read by the baseline child itself when it is done.

On this shared two-core machine other work moves the times; ``--repeat N`` runs the job and
the baseline N times each, alternated, and keeps the fastest of each.

Writes the "Training job: enclave vs plaintext" section of docs/BENCHMARKS.md.
``--enclave-only`` runs just the enclave job (for scales with no baseline asked, such as
4 × 1,000,000) and updates only its line in that section, whether or not the job completes.
``--quick`` is a smoke run at ``parties`` × 2,000 that writes nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _report import BENCHMARKS_MD, machine, write_section

TITLE = "Training job: enclave vs plaintext"
LARGER = "### Larger scales: enclave job only"
TARGET_RECORDS = 100_000
TARGET_RATIO = 1.5
#: The plaintext baselines: the job's own ``cleanroom.ml`` calls, and scikit-learn's own fit.
BASELINES = ("cleanroom", "stock")


def _vm_hwm_kib(pid: int | str) -> int | None:
    """The peak resident set of process ``pid`` in KiB (None once it is gone or a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else None


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


# -- the plaintext baseline (runs in its own process) ------------------------------------


def _reset_peak() -> bool:
    """Lower this process's VmHWM to its current RSS (Linux ``clear_refs``); done?"""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _stock_model(frames: list[Any], settings: dict[str, Any]) -> Any:
    """The model fitted as one would outside cleanroom: scikit-learn's ``Pipeline.fit`` on
    the concatenated frame (the same preprocessor and ``LogisticRegression`` settings),
    wrapped so that the same scoring, metrics and ONNX export apply."""
    from types import MappingProxyType

    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from threadpoolctl import threadpool_limits

    from cleanroom.ml import TrainedModel, build_preprocessor, model_input
    from cleanroom.ml.features import labels

    spec, params = settings["spec"], settings["hyperparameters"]
    whole = pd.concat(frames, ignore_index=True)
    estimator = LogisticRegression(
        C=params["C"],
        max_iter=params["max_iter"],
        tol=params["tol"],
        solver=params["solver"],
        class_weight=params["class_weight"],
        random_state=settings["seed"],
    )
    pipeline = Pipeline([("features", build_preprocessor(spec, "schema")), ("model", estimator)])
    with threadpool_limits(limits=1):
        pipeline.fit(model_input(whole, spec), labels(whole, spec))
    return TrainedModel(
        spec=spec,
        featurization="schema",
        algorithm=settings["algorithm"],
        hyperparameters=MappingProxyType(params),
        seed=settings["seed"],
        pipeline=pipeline,
        threads=1,
    )


def _stock_report(splits: dict[str, Any], pooled: Any, settings: dict[str, Any]) -> Any:
    """What ``collaboration_report`` computes, with :func:`_stock_model` for every model:
    each party's model alone and the pooled one score every party's test rows."""
    import numpy as np

    from cleanroom.ml.features import label_indices
    from cleanroom.ml.metrics import DEFAULT_TOP_K, multiclass_metrics

    spec = settings["spec"]
    truth = {p: label_indices(te, spec) for p, (_, te) in splits.items()}
    every = np.concatenate(list(truth.values()))
    for train_rows, _ in splits.values():
        alone = _stock_model([train_rows], settings)
        scores = {p: alone.predict_proba(te) for p, (_, te) in splits.items()}
        for other in splits:
            multiclass_metrics(
                truth[other], scores[other], classes=spec.classes, top_k=DEFAULT_TOP_K
            )
        multiclass_metrics(
            every, np.concatenate(list(scores.values())), classes=spec.classes, top_k=DEFAULT_TOP_K
        )
    pooled_scores = np.concatenate([pooled.predict_proba(te) for _, te in splits.values()])
    return multiclass_metrics(every, pooled_scores, classes=spec.classes, top_k=DEFAULT_TOP_K)


def baseline_worker(
    parties: int, records: int, train_fraction: float, seed: int, kind: str = "cleanroom"
) -> dict[str, Any]:
    """Split, train, evaluate, report and export exactly as the enclave job does.

    ``kind`` ``"cleanroom"`` makes the job's own ``cleanroom.ml`` calls (block-built design
    matrix, block-wise L-BFGS); ``"stock"`` fits every model with scikit-learn's own
    ``Pipeline.fit`` instead (:func:`_stock_model`), as one would outside cleanroom. The
    sites are generated here (deterministic: the same frames the parent imported); the
    peak is then reset so that it measures the pipeline on DataFrames already in memory,
    not the generator.
    """
    from cleanroom.data import generate_sites
    from cleanroom.ml import (
        collaboration_report,
        export_onnx,
        medical_record_spec,
        onnx_matches,
        pool,
        resolve_hyperparameters,
        train,
        train_test_split,
    )
    from cleanroom.ml.metrics import DEFAULT_TOP_K

    sites = generate_sites(parties, records, seed=0)
    gc.collect()
    data_kib = _vm_hwm_kib("self")
    reset = _reset_peak()
    algorithm = "multinomial_logistic_regression"
    # The contract names every MedicalRecord feature and no hyperparameters, so the job
    # uses the full spec, the defaults, the "schema" featurization and the default top-K.
    spec = medical_record_spec()
    settings: dict[str, Any] = {
        "spec": spec,
        "algorithm": algorithm,
        "hyperparameters": resolve_hyperparameters(algorithm, {}),
        "featurization": "schema",
        "seed": seed,
        "threads": 1,
    }
    start = time.perf_counter()
    splits = {}
    for party, frame in sites.items():
        halves = train_test_split(
            frame, label=spec.label, test_fraction=1.0 - train_fraction, seed=seed
        )
        splits[party] = (halves.train, halves.test)
    if kind == "stock":
        pooled = _stock_model([tr for tr, _ in splits.values()], settings)
    else:
        pooled = train([tr for tr, _ in splits.values()], **settings)
    all_test = pool({p: te for p, (_, te) in splits.items()})
    trained = time.perf_counter()
    # As the job: the pooled model's metrics on all test rows come with the report.
    if kind == "stock":
        metrics = _stock_report(splits, pooled, settings)
    else:
        report = collaboration_report(splits, pooled=pooled, top_k=DEFAULT_TOP_K, **settings)
        metrics = report.pooled_on_all
    reported = time.perf_counter()
    onnx = export_onnx(pooled)
    matches = onnx_matches(pooled, onnx, all_test)
    done = time.perf_counter()
    return {
        "train_evaluate": trained - start,
        "report": reported - trained,
        "onnx": done - reported,
        "total": done - start,
        "onnx_matches": matches,
        "micro_accuracy": metrics.micro_accuracy,
        "peak_kib": _vm_hwm_kib("self"),
        "generator_peak_kib": data_kib,
        "peak_reset": reset,
    }


def run_baseline(
    parties: int, records: int, train_fraction: float, seed: int, kind: str = "cleanroom"
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--baseline-worker",
        kind,
        "--parties",
        str(parties),
        "--scales",
        str(records),
        "--train-fraction",
        repr(train_fraction),
        "--seed",
        str(seed),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# -- the enclave job ------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (the enclave's worker processes, if any)."""
    parent_of = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parent_of[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parent_of.items() if parent in frontier]
        found += frontier
    return found


def _pss_kib(pid: int) -> int:
    """The proportional set size of ``pid`` now (shared pages split between sharers)."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", rollup, re.M)
    return int(match.group(1)) if match else 0


class _PeakWatcher:
    """Polls one process (and any it forks) until stopped; :meth:`sample` reads it now.

    ``peak_kib`` is the process's own VmHWM (exact). If it has child processes,
    ``tree_pss_kib`` is the largest PSS sum of the process and its descendants seen in a
    sample (forked workers share pages with their parent, so summing their VmHWM would
    count those pages twice).
    """

    def __init__(self, pid: int, *, interval: float = 0.5) -> None:
        self.peak_kib = 0
        self.tree_pss_kib = 0
        self.workers: set[int] = set()
        self._pid = pid
        self._interval = interval
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="vmhwm", daemon=True)
        self._thread.start()

    def sample(self) -> None:
        kib = _vm_hwm_kib(self._pid)
        if kib is None:
            return
        with self._lock:
            self.peak_kib = max(self.peak_kib, kib)

    def _sample_tree(self) -> None:
        self.sample()
        workers = _descendants(self._pid)
        if workers:
            total = _pss_kib(self._pid) + sum(_pss_kib(w) for w in workers)
            with self._lock:
                self.workers.update(workers)
                self.tree_pss_kib = max(self.tree_pss_kib, total)

    def _poll(self) -> None:
        while not self._stopped.wait(self._interval):
            self._sample_tree()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


class EnclaveBench:
    """Sites imported and a contract signed once; :meth:`run` launches the job each time."""

    def __init__(self, work: Path, sites: dict[str, Any]) -> None:
        from _job_setup import set_up_job
        from cleanroom.tee import SimulatedLauncher

        class WatchedLauncher(SimulatedLauncher):
            """Watches the peak memory of each enclave process it launches."""

            watcher: _PeakWatcher | None = None

            def launch(self, command: Any, **kwargs: Any) -> Any:
                enclave = super().launch(command, **kwargs)
                self.watcher = _PeakWatcher(enclave.process.pid)
                return enclave

        self.launcher = WatchedLauncher(allow_simulation=True, workdir=work / "sim")
        self.source = _source_state()  # set_up_job copies src/ into the bundle now
        self.job = set_up_job(work, sites, launcher=self.launcher)

    def run(self) -> dict[str, Any]:
        """One enclave job: phase times, peak memory, or the failure."""
        from cleanroom.errors import CleanroomError

        launcher = self.launcher
        launcher.watcher = None
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        peak_at: dict[str, int] = {}
        accuracy: list[float] = []
        start = time.perf_counter()

        def progress(event: dict[str, Any]) -> None:
            now = time.perf_counter() - start
            step = str(event.get("step"))
            first.setdefault(step, now)
            last[step] = now
            if step == "trained":
                accuracy.append(float(event["micro_accuracy"]))
            if launcher.watcher is not None:
                launcher.watcher.sample()
                peak_at[step] = launcher.watcher.peak_kib

        error = None
        try:
            self.job.run(progress)
        except CleanroomError as failure:  # recorded: --enclave-only says whether it completes
            error = f"{type(failure).__name__}: {failure}"
        whole = time.perf_counter() - start
        watcher = launcher.watcher
        if watcher is not None:
            watcher.stop()
        result: dict[str, Any] = {
            "import": self.job.import_seconds,
            "whole": whole,
            "peak_kib": watcher.peak_kib if watcher else 0,
            "workers": len(watcher.workers) if watcher else 0,
            "tree_pss_kib": watcher.tree_pss_kib if watcher else 0,
            "data_peak_kib": peak_at.get("rows", 0),
            "source": self.source,
            "error": error,
            "train_fraction": self.job.contract.algorithm.split.train_fraction,
            "seed": self.job.contract.algorithm.split.seed,
        }
        if error is None:
            result["data"] = last["rows"] - last["keys-released"]
            result["train"] = first["trained"] - last["rows"]
            result["total"] = result["data"] + result["train"]
            result["micro_accuracy"] = accuracy[0]
        return result

    def close(self) -> None:
        self.job.close()


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run's times, with the largest peak memory of all runs."""
    best = dict(min(runs, key=lambda r: r["total"]))
    for key in ("peak_kib", "data_peak_kib", "tree_pss_kib", "workers"):
        if key in best:
            best[key] = max(r[key] for r in runs)
    best["runs"] = len(runs)
    return best


# -- the report -----------------------------------------------------------------------------


def _source_state() -> str:
    """The commit the enclave bundle was copied from, and whether src/ had local changes."""
    root = Path(__file__).parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    status = git("status", "--porcelain", "--", "src").splitlines()
    dirty = [line.split(maxsplit=1)[1] for line in status if line.strip()]
    if len(dirty) > 3:
        named = ", ".join(dirty[:3])
        return f"commit {commit} plus uncommitted changes to {named} and {len(dirty) - 3} more"
    if dirty:
        return f"commit {commit} plus uncommitted changes to {', '.join(dirty)}"
    return f"commit {commit}"


def _existing_section() -> str:
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else ""
    match = re.search(rf"^## {re.escape(TITLE)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    return match.group(1).strip() if match else ""


def _larger_lines(section: str) -> dict[str, str]:
    """The bullet lines of the enclave-only subsection, keyed by their scale."""
    _, _, tail = section.partition(LARGER)
    lines = {}
    for line in tail.splitlines():
        match = re.match(r"- \*\*(.+?)\*\*", line)
        if match:
            lines[match.group(1)] = line
    return lines


def _compose(main: str, larger: dict[str, str]) -> str:
    if not larger:
        return main
    return "\n".join([main.rstrip(), "", LARGER, "", *larger.values()])


def _command(args: argparse.Namespace) -> str:
    command = (
        "flock /work/notes/bench.lock .venv/bin/python benchmarks/bench_train.py "
        f"--parties {args.parties} --scales {' '.join(str(s) for s in args.scales)}"
    )
    if args.repeat != 1 and not args.enclave_only:
        command += f" --repeat {args.repeat}"
    return command + (" --enclave-only" if args.enclave_only else "")


def _enclave_memory(enclave: dict[str, Any]) -> str:
    """The enclave process's peak, by the end of the data phase, and its workers' tree."""
    notes = []
    if enclave["data_peak_kib"]:
        notes.append(f"{_mib(enclave['data_peak_kib'])} by the end of the data phase")
    if enclave["workers"]:
        notes.append(
            f"while its {enclave['workers']} worker processes ran, the process tree's PSS "
            f"peaked at {_mib(enclave['tree_pss_kib'])}, sampled"
        )
    return _mib(enclave["peak_kib"]) + (f" ({'; '.join(notes)})" if notes else "")


def _load(result: dict[str, Any]) -> str:
    before, after = result["load"]
    return f"{before:.1f} → {after:.1f}"


def _runs_text(args: argparse.Namespace) -> str:
    if args.repeat == 1:
        return "One run each per scale"
    return (
        f"Best of {args.repeat} runs each per scale (enclave job and baseline alternated; "
        "peak memory the largest of the runs)"
    )


def _scale(parties: int, records: int) -> str:
    return f"{parties} × {records:,}"


Row = tuple[int, dict[str, Any], dict[str, Any], dict[str, Any]]


def main_table(args: argparse.Namespace, rows: list[Row]) -> str:
    lines = [
        f"Command: `{_command(args)}` (enclave bundle from "
        f"{'; '.join(dict.fromkeys(enclave['source'] for _, enclave, _, _ in rows))}).",
        "",
        f"Machine: {machine()}; load average {args.load_start:.1f} before, "
        f"{os.getloadavg()[0]:.1f} at the end (one benchmark at a time under the lock; other "
        "engineers' tests share the two cores unlocked, so times move with the *load* "
        "column: 1-minute load average before → after the scale). "
        f"{_runs_text(args)}, wall clock, seconds; one training thread on both sides.",
        "",
        "*Enclave data* is reading the ciphertext from SQLite, digesting, decrypting and "
        "validating it; *enclave training* is split + train + evaluate + collaboration "
        "report + ONNX export and parity; *enclave total* is their sum (not counted: "
        "enclave start, attestation and key release, sealing — they are in the *whole "
        "job*). *Plaintext, same code* is the same split, training, evaluation, report and "
        "ONNX check on the same DataFrames in a fresh process, through the job's own "
        "`cleanroom.ml` calls (block-built design matrix, block-wise L-BFGS): the ratio to "
        "it is what confidentiality costs. *Plaintext, stock scikit-learn* does the same "
        "work fitting every model with scikit-learn's own `Pipeline.fit` (whole-frame "
        "featurization, `LogisticRegression`, same settings), as one would outside "
        "cleanroom: the ratio to it is what a user sees. Peak RSS is the VmHWM of each "
        "process (interpreter and libraries included); for the enclave, the main process "
        "(overall, and by the end of the data phase), its worker processes given below; "
        "for the baselines, counted from the moment their DataFrames are in memory (the "
        "generator's own transient peak excluded). Import (encrypting by four clients, "
        "not compared) is shown for scale.",
        "",
        "| parties × records | enclave data | enclave training | enclave total "
        "| plaintext, same code | enclave ÷ same code | plaintext, stock scikit-learn "
        "| enclave ÷ stock | enclave peak RSS (data phase) | plaintext peak RSS (same code "
        "/ stock) | micro accuracy (enclave / same code / stock) | whole enclave job "
        "| import | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    verdict = (
        f"Target (enclave total within {TARGET_RATIO}× of plaintext at "
        f"{_scale(4, TARGET_RECORDS)}): not measured in this run."
    )
    workers: list[str] = []
    for records, enclave, plain, stock in rows:
        ratio = enclave["total"] / plain["total"]
        stock_ratio = enclave["total"] / stock["total"]
        parity = "" if plain["onnx_matches"] and stock["onnx_matches"] else " (ONNX **MISMATCH**)"
        lines.append(
            f"| {_scale(args.parties, records)} | {enclave['data']:.1f} | {enclave['train']:.1f} "
            f"| {enclave['total']:.1f} | {plain['total']:.1f} | **{ratio:.2f}×** "
            f"| {stock['total']:.1f} | **{stock_ratio:.2f}×** "
            f"| {_mib(enclave['peak_kib'])} ({_mib(enclave['data_peak_kib'])}) "
            f"| {_mib(plain['peak_kib'])} / {_mib(stock['peak_kib'])} "
            f"| {enclave['micro_accuracy']:.4f} / {plain['micro_accuracy']:.4f} / "
            f"{stock['micro_accuracy']:.4f}{parity} "
            f"| {enclave['whole']:.1f} | {enclave['import']:.1f} | {_load(enclave)} |"
        )
        if enclave["workers"]:
            workers.append(
                f"{_scale(args.parties, records)}: {enclave['workers']} worker processes, "
                f"process tree PSS up to {_mib(enclave['tree_pss_kib'])} while they ran"
            )
        if args.parties == 4 and records == TARGET_RECORDS:

            def met(value: float) -> str:
                return "**met**" if value <= TARGET_RATIO else "**not met**"

            verdict = (
                f"Target (enclave total within {TARGET_RATIO}× of plaintext at "
                f"{_scale(4, TARGET_RECORDS)}): against stock scikit-learn {met(stock_ratio)} — "
                f"{stock_ratio:.2f}× ({enclave['total']:.1f} s against {stock['total']:.1f} s); "
                f"against the same code on plaintext {met(ratio)} — {ratio:.2f}× (against "
                f"{plain['total']:.1f} s). The data phase alone is {enclave['data']:.1f} s: "
                f"{enclave['data'] / plain['total']:.2f}× the same-code plaintext run."
            )
    if workers:
        lines += [
            "",
            "Enclave worker processes (forked; they share pages with the main process, so "
            "their VmHWM cannot be added to it — PSS summed over the tree, sampled every "
            f"0.5 s, instead): {'; '.join(workers)}.",
        ]
    lines += ["", verdict]
    return "\n".join(lines)


def larger_line(args: argparse.Namespace, records: int, enclave: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d", time.gmtime())
    head = f"- **{_scale(args.parties, records)}** ({when}, bundle from {enclave['source']}, "
    head += f"load average {_load(enclave)}): "
    if enclave["error"] is not None:
        return head + (
            f"did **not** complete — {enclave['error']} after {enclave['whole']:.0f} s; enclave "
            f"peak RSS {_enclave_memory(enclave)}; import {enclave['import']:.0f} s."
        )
    return head + (
        f"completed; data {enclave['data']:.0f} s, training {enclave['train']:.0f} s "
        f"(enclave total {enclave['total']:.0f} s, whole job {enclave['whole']:.0f} s), "
        f"micro accuracy {enclave['micro_accuracy']:.4f}, enclave peak RSS "
        f"**{_enclave_memory(enclave)}**; import {enclave['import']:.0f} s. "
        f"Command: `{_command(args)}`."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=4)
    parser.add_argument(
        "--scales",
        type=int,
        nargs="+",
        default=[25_000, 100_000, 400_000],
        help="records per party",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the enclave job and the baseline this many times each; keep the fastest",
    )
    parser.add_argument("--enclave-only", action="store_true", help="no plaintext baseline")
    parser.add_argument("--quick", action="store_true", help="smoke run at 2,000; writes nothing")
    parser.add_argument("--baseline-worker", choices=BASELINES, help=argparse.SUPPRESS)
    parser.add_argument("--train-fraction", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        result = baseline_worker(
            args.parties, args.scales[0], args.train_fraction, args.seed, args.baseline_worker
        )
        print(json.dumps(result))
        return
    if args.quick:
        args.scales = [2_000]
    args.load_start = os.getloadavg()[0]

    from _job_setup import synthetic_sites

    rows = []
    larger = _larger_lines(_existing_section())
    for records in args.scales:
        sites = synthetic_sites(args.parties, records)
        work = Path(tempfile.mkdtemp(prefix="bench-train-"))
        load_before = os.getloadavg()[0]
        bench = None
        try:
            bench = EnclaveBench(work, sites)
            del sites
            enclave_runs: list[dict[str, Any]] = []
            plain_runs: list[dict[str, Any]] = []
            stock_runs: list[dict[str, Any]] = []
            # Alternate the two so that a change of load on the shared machine hits both.
            for _ in range(1 if args.enclave_only else args.repeat):
                enclave_runs.append(bench.run())
                print(f"{_scale(args.parties, records)} enclave: {enclave_runs[-1]}", flush=True)
                if enclave_runs[-1]["error"] is not None or args.enclave_only:
                    break
                plain_runs.append(
                    run_baseline(
                        args.parties,
                        records,
                        enclave_runs[-1]["train_fraction"],
                        enclave_runs[-1]["seed"],
                    )
                )
                print(f"{_scale(args.parties, records)} plaintext: {plain_runs[-1]}", flush=True)
                stock_runs.append(
                    run_baseline(
                        args.parties,
                        records,
                        enclave_runs[-1]["train_fraction"],
                        enclave_runs[-1]["seed"],
                        "stock",
                    )
                )
                print(f"{_scale(args.parties, records)} stock: {stock_runs[-1]}", flush=True)
        finally:
            if bench is not None:
                bench.close()
            shutil.rmtree(work, ignore_errors=True)
        if enclave_runs[-1]["error"] is not None and not args.enclave_only:
            raise SystemExit(f"the enclave job failed: {enclave_runs[-1]['error']}")
        enclave = _best(enclave_runs) if enclave_runs[-1]["error"] is None else enclave_runs[-1]
        enclave["load"] = (load_before, os.getloadavg()[0])
        if args.enclave_only:
            larger[_scale(args.parties, records)] = larger_line(args, records, enclave)
            print(larger[_scale(args.parties, records)], flush=True)
        else:
            rows.append((records, enclave, _best(plain_runs), _best(stock_runs)))

    if args.enclave_only:
        main_part = _existing_section().partition(LARGER)[0].strip()
    else:
        main_part = main_table(args, rows)
    body = _compose(main_part, larger)
    print(body)
    if not args.quick:
        write_section(TITLE, body)


if __name__ == "__main__":
    main()

"""``report.html``: the demo's result as one self-contained page (plots embedded as PNG).

Built only from the demo's public result (the same object ``--json`` prints), so it shows
nothing the operator could not see: metrics, digests, timings — never a record or a key.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to memory only

import matplotlib.pyplot as plt


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def gain_chart(parties: list[dict[str, Any]]) -> str:
    """Per hospital: its own model vs the pooled model, on its own test rows and on all."""
    names = [p["name"] for p in parties]
    own_own = [p["own_model"]["own_test_accuracy"] * 100 for p in parties]
    pooled_own = [p["pooled_model"]["own_test_accuracy"] * 100 for p in parties]
    own_all = [p["own_model"]["all_test_accuracy"] * 100 for p in parties]
    pooled_all = [p["pooled_model"].get("all_test_accuracy", float("nan")) * 100 for p in parties]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    width = 0.38
    xs = range(len(names))
    for ax, own, pooled, title in (
        (axes[0], own_own, pooled_own, "on its own test rows"),
        (axes[1], own_all, pooled_all, "on every hospital's test rows"),
    ):
        ax.bar([x - width / 2 for x in xs], own, width, label="trained alone", color="#9aa5b1")
        ax.bar(
            [x + width / 2 for x in xs],
            pooled,
            width,
            label="pooled in the enclave",
            color="#2f6fb0",
        )
        for x, (a, b) in enumerate(zip(own, pooled, strict=True)):
            ax.annotate(f"{b - a:+.1f}", (x + width / 2, b), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs), names, rotation=20)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    figure.subplots_adjust(bottom=0.28)
    low = min(own_own + pooled_own + own_all + [v for v in pooled_all if v == v])
    axes[0].set_ylim(max(0.0, low - 10), 100)
    return _png(figure)


def confusion_chart(matrix: list[list[int]]) -> str:
    """The pooled model's confusion matrix on the held-out rows (rows: truth)."""
    size = len(matrix)
    figure, ax = plt.subplots(figsize=(4.2, 3.8))
    image = ax.imshow(matrix, cmap="Blues")
    for i in range(size):
        for j in range(size):
            ax.text(
                j,
                i,
                f"{matrix[i][j]:,}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if matrix[i][j] > max(map(max, matrix)) / 2 else "black",
            )
    ax.set_xlabel("predicted risk")
    ax.set_ylabel("true risk")
    ax.set_xticks(range(size))
    ax.set_yticks(range(size))
    figure.colorbar(image, ax=ax, fraction=0.046)
    return _png(figure)


def timing_chart(timings: dict[str, float]) -> str:
    """Seconds per phase."""
    phases = [k for k in timings if k != "total"]
    figure, ax = plt.subplots(figsize=(6, 0.45 * len(phases) + 0.8))
    ax.barh(phases, [timings[p] for p in phases], color="#2f6fb0")
    for y, phase in enumerate(phases):
        ax.annotate(
            f"{timings[phase]:.1f} s",
            (timings[phase], y),
            va="center",
            fontsize=8,
            xytext=(3, 0),
            textcoords="offset points",
        )
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.grid(axis="x", alpha=0.3)
    return _png(figure)


def _row(*cells: object, header: bool = False) -> str:
    tag = "th" if header else "td"
    return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"


def render(result: dict[str, Any]) -> str:
    """The page for one demo result."""
    parties = result["parties"]
    pooled = result["pooled"]
    table = [
        _row(
            "hospital",
            "records",
            "own model: own test",
            "own model: all test",
            "pooled: own test",
            "pooled: all test",
            "gain (all test)",
            header=True,
        )
    ]
    for p in parties:
        own, pool = p["own_model"], p["pooled_model"]
        pooled_all = pool.get("all_test_accuracy", pooled["micro_accuracy"])
        table.append(
            _row(
                p["name"],
                f"{p['rows']:,}",
                f"{own['own_test_accuracy']:.1%}",
                f"{own['all_test_accuracy']:.1%}",
                f"{pool['own_test_accuracy']:.1%}",
                f"{pooled_all:.1%}",
                f"{(pooled_all - own['all_test_accuracy']) * 100:+.1f} pts",
            )
        )
    facts = [
        ("dataset", f"{result['dataset']} — {result['records_total']:,} records"),
        (
            "store",
            f"{result['store']['url']} — plaintext found: {result['store']['plaintext_found']}",
        ),
        (
            "enclave",
            f"{result['attestation']['tee']} TEE, measurement "
            f"{result['attestation']['measurement']}",
        ),
        ("keys released", str(result["attestation"]["keys_released"])),
        (
            "model",
            f"sha256 {result['model']['sha256']} — ONNX scores match the enclave: "
            f"{result['model']['onnx_matches_enclave']}",
        ),
        (
            "ledger",
            f"{result['ledger']['entries']} entries, verified: {result['ledger']['verified']}",
        ),
        (
            "pooled metrics",
            f"micro accuracy {pooled['micro_accuracy']:.1%}, macro accuracy "
            f"{pooled['macro_accuracy']:.1%}, log-loss {pooled['log_loss']:.3f}, "
            f"log-loss reduction {pooled['log_loss_reduction']:.3f}",
        ),
        ("work directory", result["workdir"]),
    ]
    example = result.get("score_example", {})
    simulated = result["attestation"]["tee"] == "simulated"
    warning = (
        "<p class='warn'>This run used the <b>simulated TEE</b>: it exercises every check of "
        "the real flow, but the operator of this machine could read the enclave's memory. "
        "Use SEV-SNP, TDX or SGX in production.</p>"
        if simulated
        else ""
    )
    confusion = confusion_chart(pooled["confusion_matrix"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>cleanroom demo report</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1050px;
        color: #1f2933; }}
 h1 {{ margin-bottom: .2rem; }} .sub {{ color: #52606d; margin-top: 0; }}
 table {{ border-collapse: collapse; margin: 1rem 0; }}
 td, th {{ border-bottom: 1px solid #e4e7eb; padding: .35rem .7rem; text-align: right; }}
 td:first-child, th:first-child {{ text-align: left; }}
 dl {{ display: grid; grid-template-columns: 11rem 1fr; gap: .3rem 1rem; }}
 dt {{ color: #52606d; }} dd {{ margin: 0; word-break: break-all; }}
 .warn {{ background: #fff3c4; padding: .6rem 1rem; border-left: 4px solid #f0b429; }}
 pre {{ background: #f5f7fa; padding: .8rem; overflow-x: auto; }}
 img {{ max-width: 100%; }}
</style></head><body>
<h1>cleanroom — pooled model across {len(parties)} hospitals</h1>
<p class="sub">Each hospital's records stayed encrypted under its own keys; the keys went only
to the attested enclave named in the contract every hospital signed.</p>
{warning}
<h2>What each hospital gained</h2>
<table>{"".join(table)}</table>
<img alt="gain per hospital" src="data:image/png;base64,{gain_chart(parties)}">
<h2>Pooled model</h2>
<img alt="confusion matrix" src="data:image/png;base64,{confusion}">
<dl>{"".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts)}</dl>
<h2>Scoring through the attested API</h2>
<pre>POST /score {html.escape(json.dumps(example.get("request")))}
→ {html.escape(json.dumps(example.get("response"), indent=1))}</pre>
<h2>Time per phase</h2>
<img alt="phase timings" src="data:image/png;base64,{timing_chart(result["timings_s"])}">
</body></html>
"""


def write_report(result: dict[str, Any], path: Path) -> Path:
    """Write ``report.html`` for ``result``; returns its path."""
    path.write_text(render(result), encoding="utf-8")
    return path

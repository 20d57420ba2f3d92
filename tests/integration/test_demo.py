"""``cleanroom demo --json`` end to end: real brokers, a real (simulated) enclave process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:  # type: ignore[type-arg]
    workdir = tmp_path_factory.mktemp("demo") / "work"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cleanroom.cli",
            "demo",
            "--json",
            "--records",
            "2000",
            "--workdir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), done.stderr, workdir


def test_stdout_is_one_json_object_with_every_promised_field(demo_run: tuple) -> None:  # type: ignore[type-arg]
    result, _, workdir = demo_run
    assert result["dataset"] == "synthetic"
    assert result["records_total"] == 4 * 2000
    assert len(result["parties"]) == 4
    for party in result["parties"]:
        assert party["rows"] == 2000
        assert party["table"].startswith("ds_")
        for model in ("own_model", "pooled_model"):
            for key in ("own_test_accuracy",):
                assert 0.0 <= party[model][key] <= 1.0
        assert 0.0 <= party["own_model"]["all_test_accuracy"] <= 1.0
    pooled = result["pooled"]
    assert 0.2 < pooled["micro_accuracy"] <= 1.0
    assert 0.0 <= pooled["macro_accuracy"] <= 1.0
    assert pooled["log_loss"] > 0
    matrix = pooled["confusion_matrix"]
    assert len(matrix) == 5
    assert all(len(row) == 5 for row in matrix)
    assert sum(map(sum, matrix)) > 0
    assert result["attestation"]["tee"] == "simulated"
    assert len(result["attestation"]["measurement"]) == 96
    assert result["attestation"]["keys_released"] == 4
    assert len(result["model"]["sha256"]) == 64
    assert result["model"]["onnx_matches_enclave"] is True
    assert result["score_example"]["response"]["modelId"] == result["model"]["sha256"]
    assert {"score", "accuracy", "predictedClass", "probabilities"} <= set(
        result["score_example"]["response"]
    )
    assert result["ledger"]["verified"] is True
    assert result["ledger"]["entries"] > 5
    assert set(result["timings_s"]) >= {
        "import",
        "attest_and_release",
        "decrypt",
        "train",
        "evaluate",
        "total",
    }
    assert result["store"]["plaintext_found"] is False
    assert Path(result["workdir"]) == workdir.resolve()
    assert (workdir / "report.html").stat().st_size > 10_000


def test_pooling_helps_on_everyone_s_test_rows(demo_run: tuple) -> None:  # type: ignore[type-arg]
    result, _, _ = demo_run
    gains = [
        p["pooled_model"]["all_test_accuracy"] - p["own_model"]["all_test_accuracy"]
        for p in result["parties"]
    ]
    # On average, and a lot for the narrow sites (the young-adult clinic, hospital_b).
    assert sum(gains) / len(gains) > 0.01
    assert max(gains) > 0.03


def test_no_plaintext_or_key_on_the_operator_side(demo_run: tuple) -> None:  # type: ignore[type-arg]
    _, stderr, workdir = demo_run
    csv = (workdir / "data" / "hospital-a.csv").read_text().splitlines()
    store_bytes = (workdir / "cleanroom.db").read_bytes()
    for line in csv[1:50]:
        assert line.encode() not in store_bytes
    for log in (workdir / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert all(line not in text for line in csv[1:50])
    assert "INSECURE" in stderr or "SIMULATED" in stderr  # the simulation says so


def test_a_second_run_wipes_only_a_demo_workdir(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("do not delete")
    done = subprocess.run(
        [sys.executable, "-m", "cleanroom.cli", "demo", "--workdir", str(precious)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "not a demo work directory" in done.stderr
    assert (precious / "keep.txt").exists()

"""The public surface of the scoring side of cleanroom.enclave and cleanroom.client is pinned."""

from __future__ import annotations

import cleanroom.client as client
import cleanroom.enclave as enclave
from cleanroom.enclave import scoring, scoring_auth, scoring_models
from cleanroom.tee import enclave_main

SCORING_SURFACE = {"ScoringModel", "create_scoring_app", "serve_scoring"}


def test_the_scoring_names_are_public_and_resolve() -> None:
    assert set(enclave.__all__) >= SCORING_SURFACE
    assert enclave.ScoringModel is scoring_models.ScoringModel
    assert enclave.create_scoring_app is scoring.create_scoring_app
    assert enclave.serve_scoring is scoring.serve_scoring
    assert "ScoringClient" in client.__all__


def test_module_surfaces() -> None:
    assert set(scoring.__all__) == {
        "DEFAULT_MAX_BATCH",
        "DEFAULT_MAX_BODY",
        "ENCLAVE_COMMAND",
        "PROBLEM_PREFIX",
        "create_scoring_app",
        "scoring_fastapi",
        "serve_scoring",
    }
    assert {"sign_request", "request_message", "RequestAuthenticator", "UsageMeter"} <= set(
        scoring_auth.__all__
    )
    for module in (scoring, scoring_auth, scoring_models):
        for name in module.__all__:
            assert getattr(module, name) is not None


def test_serve_model_is_an_enclave_command() -> None:
    assert "cleanroom.enclave.scoring" in enclave_main.COMMAND_MODULES
    assert enclave_main.COMMANDS["serve-model"] is scoring.ENCLAVE_COMMAND

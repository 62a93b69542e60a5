"""Fixtures only (shared helpers and constants are in tests/helpers.py): the tiny seeded model,
the installed default model, and the checks that every test leaves the process and the
checkout as it found them."""

from __future__ import annotations

import os

import pytest

from tests.helpers import build_model_dir


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(build_model_dir(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def other_tiny_model(tmp_path_factory) -> str:
    return str(build_model_dir(tmp_path_factory.mktemp("other-model"), seed=1))


@pytest.fixture
def tiny_env(tiny_model, monkeypatch) -> str:
    """LLMZIP_MODEL points at the tiny model (for CLI tests)."""
    monkeypatch.setenv("LLMZIP_MODEL", tiny_model)
    return tiny_model


@pytest.fixture(scope="session")
def real_model() -> str:
    """The installed default model; skipped where it is missing, except in CI."""
    from llmzip import model
    from llmzip.errors import ModelError

    try:
        return str(model.resolve(None))
    except ModelError:
        if os.environ.get("CI"):
            raise
        pytest.skip("the default model is not installed (llmzip model fetch)")

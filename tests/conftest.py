"""Fixtures only (shared helpers and constants are in tests/helpers.py): the tiny seeded model,
the installed default model, and the check that the tests leave the checkout as they found
it."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers import ROOT, build_model_dir

# What tests and tools may add to the checkout: caches and the virtual environment.
_CACHES = (".venv", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", ".egg-info")


def _checkout_state() -> set[str] | None:
    """`git status` lines, ignored files included (a fuzzer's crash-* and timeout-* are
    ignored by .gitignore), caches left out; None outside a git checkout."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {line for line in out.splitlines() if not any(c in line for c in _CACHES)}


@pytest.fixture(scope="session", autouse=True)
def leaves_the_checkout_clean():
    """The tests leave nothing in the repository (artifacts belong under tmp_path)."""
    before = _checkout_state()
    yield
    after = _checkout_state()
    if before is not None and after is not None:
        assert not sorted(after - before), f"the tests left this in the checkout: " \
            f"{sorted(after - before)}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """The tiny seeded model's directory; the kernels' self-check has run, as the codec runs it
    when it loads a model (codec.stream.load_model), so tests that load it with model.load
    get the fused kernels too."""
    from llmzip.codec import selfcheck

    selfcheck.enable()
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


@pytest.fixture
def model_coding(monkeypatch) -> None:
    """Frames are coded by the model or stored, never by lzma: for tests about model-coded
    frames (the tiny random model often loses to lzma on short repetitive text)."""
    from llmzip.codec import stream

    monkeypatch.setattr(stream, "TRY_LZMA", False)

"""Where llmzip keeps what it makes once: models, their converted forms, compiled kernels,
rotary tables."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$LLMZIP_CACHE``, else ``$XDG_CACHE_HOME/llmzip``, else ``~/.cache/llmzip``."""
    if os.environ.get("LLMZIP_CACHE"):
        return Path(os.environ["LLMZIP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmzip"

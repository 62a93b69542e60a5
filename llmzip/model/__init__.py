"""Language models: the named models and fetching them (catalog.py), reading GGUF files
(gguf.py), the engine's converted form in the cache (convert.py), loading (load.py) and the
lossless tokenizer (tokens.py). The names below are the package's interface."""

from llmzip.model.catalog import (
    DEFAULT_MODEL,
    FETCH_HINT,
    MODELS,
    ModelInfo,
    fetch,
    model_path,
    resolve,
)
from llmzip.model.convert import installed, remove
from llmzip.model.load import LoadedModel, load

__all__ = ["DEFAULT_MODEL", "FETCH_HINT", "MODELS", "LoadedModel", "ModelInfo", "fetch",
           "installed", "load", "model_path", "remove", "resolve"]

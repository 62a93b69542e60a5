"""llmzip: lossless compression with a language model, context mixing and a range coder.

    >>> import llmzip
    >>> blob = llmzip.compress(b"hello")
    >>> llmzip.decompress(blob)
    b'hello'

Importing the package is light: the codec (and torch) load on first use of ``compress`` or
``decompress``, so the command line starts at once for ``--help`` and ``-V``.
"""

from llmzip.codec.settings import Settings
from llmzip.errors import LlmzipError

__all__ = ["LlmzipError", "Settings", "compress", "decompress"]
__version__ = "0.2.0"
_FROM_CODEC = ("compress", "decompress")


def __getattr__(name: str):
    """PEP 562: ``llmzip.compress`` and ``llmzip.decompress`` import the codec when first
    asked for."""
    if name in _FROM_CODEC:
        from llmzip.codec import stream

        return getattr(stream, name)
    raise AttributeError(f"module 'llmzip' has no attribute {name!r}")

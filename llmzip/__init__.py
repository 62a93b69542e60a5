"""llmzip: lossless compression with a language model, context mixing and a range coder.

    >>> import llmzip
    >>> blob = llmzip.compress(b"hello")
    >>> llmzip.decompress(blob)
    b'hello'
"""

from llmzip.codec import compress, decompress
from llmzip.errors import LlmzipError
from llmzip.settings import Settings

__all__ = ["LlmzipError", "Settings", "compress", "decompress"]
__version__ = "0.2.0"

"""Line ends: text with CRLF line ends is coded as LF text, and its CRs restored on decoding.

The models learnt their text with LF line ends; before every LF of a CRLF file they would
spend bits on a CR they never learnt to expect (alice29.txt[:10000], 240 line ends: 1,414 B
as it is, 1,386 B as LF text). A frame is coded as LF text only where the map is exactly
invertible: every LF in it is preceded by a CR (and it has one LF at least). Then
``to_crlf(to_lf(data)) == data``: ``to_lf`` removes exactly the CR before each LF, so the LF
text has the same LFs, and ``to_crlf`` puts one CR back before each. A lone CR elsewhere
(``\\r\\r\\n``, ``a\\rb``) stays as it is. The frame's length and CRC are the original
bytes', checked after the CRs are restored.
"""

from __future__ import annotations


def to_lf(data: bytes) -> bytes | None:
    """``data`` with the CR of each CRLF removed, or None where that is not invertible (an LF
    without a CR before it) or changes nothing (no LF)."""
    lf = data.count(b"\n")
    if lf == 0 or data.count(b"\r\n") != lf:
        return None
    return data.replace(b"\r\n", b"\n")


def to_crlf(text: bytes) -> bytes:
    """The inverse of :func:`to_lf`: a CR before every LF."""
    return text.replace(b"\n", b"\r\n")

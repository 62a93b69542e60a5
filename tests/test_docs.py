"""The README says what the code does: its level table is settings.LEVELS."""

from __future__ import annotations

import re
from pathlib import Path

from llmzip.codec import settings

README = Path(__file__).resolve().parent.parent / "README.md"


def _levels_table() -> dict[int, tuple[str, str, str]]:
    """README "Levels": level -> (window, tokens per stream, a small input's coding)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\nLevels", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `-(\d)`[^|]*\| (\d+) \| ([^|]+) \| ([^|]+) \|", line)
        if m:
            rows[int(m.group(1))] = (m.group(2), m.group(3).strip(), m.group(4).strip())
    return rows


def test_readme_levels_are_the_code_s():
    rows = _levels_table()
    assert sorted(rows) == sorted(settings.LEVELS)
    for n, level in settings.LEVELS.items():
        window, per, small = rows[n]
        assert int(window) == level.window, n
        assert per == ("the whole frame" if level.segment is None else f"{level.segment:,}"), n
        one = n >= settings.SMALL_FROM_LEVEL or level.segment is None
        assert small == (f"1 stream, {settings.BEST_WINDOW}" if one else "as larger inputs"), n
    assert "(default)" in next(line for line in README.read_text().splitlines()
                               if line.startswith(f"| `-{settings.DEFAULT_LEVEL}`"))

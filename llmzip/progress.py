"""What a run shows of itself: progress bars on stderr and the peak memory it took."""

from __future__ import annotations

import sys


def progress_bar(total: int | None, desc: str, unit: str = "B", enabled: bool = True,
                 position: int | None = None):
    """A tqdm bar on stderr (a context manager with ``update(n)`` and ``close()``) that draws
    nothing unless ``enabled`` and stderr is a terminal; bytes are shown in KiB/MiB."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", unit_divisor=1024,
                file=sys.stderr, leave=False, dynamic_ncols=True, position=position,
                disable=not (enabled and sys.stderr.isatty()))


def peak_rss_mb() -> float | None:
    """This process's resident-memory high-water mark so far in MiB (Linux's VmHWM, which a
    benchmark may reset, else getrusage; None where neither is known)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024

"""Figures of the benchmarks: matplotlib without a display, PNGs under a size limit."""

from __future__ import annotations

from pathlib import Path

#: Largest PNG a benchmark may write (issue 10: each figure under 300 KB).
MAX_FIGURE_BYTES = 300_000


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path, max_bytes: int = MAX_FIGURE_BYTES, dpi: int = 110) -> Path:
    """Save `figure` as PNG at `path`, lowering the resolution until it fits `max_bytes`."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        while True:
            figure.savefig(path, dpi=dpi)
            if path.stat().st_size <= max_bytes or dpi <= 40:
                break
            dpi = int(dpi * 0.8)
    finally:
        plt.close(figure)
    if path.stat().st_size > max_bytes:
        raise ValueError(f"{path} is {path.stat().st_size} bytes even at {dpi} dpi; draw less in it.")
    return path

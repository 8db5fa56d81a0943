"""What every plot the project writes shares: matplotlib on the file-only backend, a figure saved and closed, and
curve labels written at the curves' right ends instead of a legend."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only: no display is needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, rect=None, dpi: float | None = None) -> Path:
    """Lay ``fig`` out (within ``rect``, leaving room for a suptitle), write it to ``path`` and close it."""
    fig.tight_layout(rect=rect)
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def end_labels(ax, ends: list, lo: float = 0.0, hi: float = 1.0, gap: float = 0.08, dx: float = 5) -> None:
    """Write each curve's label at its right end (``ends``: ``[x, y, label, colour]`` per curve), pushed apart
    vertically by ``gap`` of the ``lo``–``hi`` range so that none hides another."""
    ends = sorted(([*e] for e in ends), key=lambda e: e[1])
    step = gap * (hi - lo)
    for i in range(1, len(ends)):
        ends[i][1] = max(ends[i][1], ends[i - 1][1] + step)
    if ends and ends[-1][1] > hi:  # pushed past the top: restack downward from the top, inside the axes
        ends[-1][1] = hi
        for i in range(len(ends) - 2, -1, -1):
            ends[i][1] = min(ends[i][1], ends[i + 1][1] - step)
    for x, y, label, color in ends:
        ax.annotate(label, (x, y), xytext=(dx, 0), textcoords="offset points", color=color, fontsize=10,
                    fontweight="bold", va="center", annotation_clip=False)

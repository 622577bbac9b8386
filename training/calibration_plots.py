"""Pictures of the open-set calibration: the impostor tail and its fit, achieved vs
target FPIR per gallery size, and the best-score histograms of mated and stranger probes.

Drawing only: ``training/calibrate.py`` computes the scores and hands them over as
:class:`PlotData`, so this module needs nothing from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faces.model_contract import Calibration
from faces.open_set import tail_exceedance


@dataclass(frozen=True)
class PlotData:
    """What the pictures show, as the calibration computed it."""

    # non-mated identity scores per template count, the ones each card tail was fitted to
    tail_scores: Mapping[int, np.ndarray]
    # the protocol table's rows (templates, identities, target_fpir, fpir)
    protocol_rows: Sequence[dict[str, Any]]
    # best identity scores on one large gallery: of mated probes whose best identity is
    # the right one, and of strangers
    histogram_gallery: int
    histogram_mated: np.ndarray
    histogram_strangers: np.ndarray


def plot_calibration(data: PlotData, calibration: Calibration, out_dir: Path) -> list[str]:
    """Write ``calibration_tail.png``, ``calibration_fpir.png`` and
    ``calibration_histogram.png`` into ``out_dir``; return their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    # 1. impostor tail: empirical exceedance vs the card's table + Pareto fit
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for tail in calibration.tails:
        scores = np.sort(data.tail_scores[tail.templates])[::-1]
        emp = np.arange(1, len(scores) + 1) / len(scores)
        (line,) = ax.semilogy(scores, emp, lw=1, label=f"{tail.templates} face(s): measured")
        grid = np.linspace(tail.scores[0], float(scores[0]) + 0.1, 200)
        ax.semilogy(
            grid,
            [tail_exceedance(tail, g) for g in grid],
            "--",
            color=line.get_color(),
            lw=1,
            label=f"{tail.templates} face(s): card (table + Pareto fit)",
        )
    ax.set_xlabel("non-mated identity score (cosine)")
    ax.set_ylabel("P(score ≥ x)")
    ax.set_ylim(1e-8, 1)
    ax.set_title(f"Impostor tail ({calibration.aggregation} over an identity's faces)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "calibration_tail.png", dpi=110)
    plt.close(fig)
    names.append("calibration_tail.png")

    # 2. achieved vs target FPIR per gallery size
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    rows = data.protocol_rows
    for t in sorted({r["templates"] for r in rows}):
        for n in sorted({r["identities"] for r in rows if r["templates"] == t}):
            sel = [r for r in rows if r["templates"] == t and r["identities"] == n]
            sel.sort(key=lambda r: r["target_fpir"])
            ax.loglog(
                [r["target_fpir"] for r in sel],
                [max(r["fpir"], 1e-4) for r in sel],
                "o-",
                ms=3,
                label=f"N={n}, up to {t} face(s)",
            )
    lims = np.array([5e-4, 0.2])
    ax.loglog(lims, lims, "k-", lw=0.8, label="achieved = target")
    ax.fill_between(lims, lims / 2, lims * 2, color="grey", alpha=0.15, label="factor 2")
    ax.set_xlabel("target FPIR")
    ax.set_ylabel("achieved FPIR (strangers named)")
    ax.set_title("Calibrated threshold on never-seen people")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out_dir / "calibration_fpir.png", dpi=110)
    plt.close(fig)
    names.append("calibration_fpir.png")

    # 3. best-score histograms on one large gallery
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    bins = np.linspace(-0.2, 1.0, 121).tolist()
    ax.hist(data.histogram_mated, bins, alpha=0.6, density=True, label="mated, right")
    ax.hist(data.histogram_strangers, bins, alpha=0.6, density=True, label="strangers")
    ax.set_xlabel(f"best identity score, gallery of {data.histogram_gallery} people")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "calibration_histogram.png", dpi=110)
    plt.close(fig)
    names.append("calibration_histogram.png")
    return names

"""``python -m crwalker.policies.report``: Markdown table of ``results/mcr.json`` and the figures.

Writes ``results/mcr_sr_curves.png`` (one panel per dataset, SR@t for t = 1..15 of every evaluated policy),
``results/mcr_fig5_sr_vs_scpr.png`` (UNICORN Fig. 5: SR@t of each policy minus SCPR's) and, when
``results/mcr_curve.json`` exists (``evaluate --curve``), ``results/mcr_fig4_episodes.png`` (UNICORN Fig. 4:
test SR@15 / AT / hDCG against training episodes). Prints the table pasted into ``docs/policies.md``.
Missing cells are listed as such.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crwalker.policies.common import DATASETS, POLICIES
from data_scripts.utils.io import read_json
from data_scripts.utils.results import format_table


def table(res: dict) -> str:
    rows = []
    for ds in DATASETS:
        for pol in POLICIES:
            c = res.get(ds, {}).get(pol, {})
            if "SR@15" in c:
                sub = f"{c['n_sessions']}" + (" (subset)" if c.get("limit") else "")
                rows.append({"dataset": ds, "policy": pol, "SR@15": c["SR@15"], "AT": c["AT"], "hDCG": c["hDCG"],
                             "sessions": sub, "train episodes": c.get("trained_episodes", 0),
                             "train min": c.get("train_minutes", 0.0)})  # fmt: skip
            else:
                rows.append({"dataset": ds, "policy": pol, "SR@15": "missing", "AT": "", "hDCG": "",
                             "sessions": c.get("reason", "not evaluated"), "train episodes": "", "train min": ""})  # fmt: skip
    return format_table(rows, ["dataset", "policy", "SR@15", "AT", "hDCG", "sessions", "train episodes", "train min"])


def plot(res: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DATASETS), figsize=(5 * len(DATASETS), 4), sharey=True)
    for ax, ds in zip(axes, DATASETS, strict=True):
        for pol in POLICIES:
            c = res.get(ds, {}).get(pol, {})
            if "SR_curve" in c:
                ax.plot(range(1, len(c["SR_curve"]) + 1), c["SR_curve"], marker=".", label=pol)
        ax.set_title(ds)
        ax.set_xlabel("turn t")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("SR@t")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def plot_relative(res: dict, out: str, reference: str = "scpr") -> None:
    """Fig. 5: ``SR@t(policy) − SR@t(reference)`` for t = 1..15, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DATASETS), figsize=(5 * len(DATASETS), 4), sharey=True)
    for ax, ds in zip(axes, DATASETS, strict=True):
        ref = res.get(ds, {}).get(reference, {}).get("SR_curve")
        if ref:
            for pol in POLICIES:
                c = res.get(ds, {}).get(pol, {})
                if "SR_curve" in c and pol != reference:
                    diff = [a - b for a, b in zip(c["SR_curve"], ref, strict=True)]
                    ax.plot(range(1, len(diff) + 1), diff, marker=".", label=pol)
            ax.axhline(0, color="k", lw=0.8)
            ax.legend(fontsize=8)
        ax.set_title(f"{ds}: SR@t − {reference}")
        ax.set_xlabel("turn t")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("SR@t difference")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def plot_episodes(curve: dict, out: str) -> None:
    """Fig. 4: test SR@15, AT and hDCG of training snapshots against the number of training episodes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("SR@15", "AT", "hDCG")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4))
    for ds, pols in curve.items():
        if not isinstance(pols, dict):
            continue
        for pol, by_ep in pols.items():
            eps = sorted(int(e) for e in by_ep)
            for ax, m in zip(axes, metrics, strict=True):
                ax.plot(eps, [by_ep[str(e)][m] for e in eps], marker=".", label=f"{pol} / {ds}")
    for ax, m in zip(axes, metrics, strict=True):
        ax.set_xlabel("training episodes")
        ax.set_title(m)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results/mcr.json")
    ap.add_argument("--png", default="results/mcr_sr_curves.png")
    ap.add_argument("--curve", default="results/mcr_curve.json")
    ap.add_argument("--fig4", default="results/mcr_fig4_episodes.png")
    ap.add_argument("--fig5", default="results/mcr_fig5_sr_vs_scpr.png")
    a = ap.parse_args(argv)
    res = read_json(a.results)
    print(table(res))
    plot(res, a.png)
    plot_relative(res, a.fig5)
    if Path(a.curve).exists():
        plot_episodes(read_json(a.curve), a.fig4)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

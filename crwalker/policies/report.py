"""``python -m crwalker.policies.report``: Markdown table of ``results/mcr.json`` and SR@t curves PNG.

Writes ``results/mcr_sr_curves.png`` (one panel per dataset, SR@t for t = 1..15 of every evaluated
policy) and prints the table pasted into ``docs/policies.md``. Missing cells are listed as such.
"""

from __future__ import annotations

import argparse

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results/mcr.json")
    ap.add_argument("--png", default="results/mcr_sr_curves.png")
    a = ap.parse_args(argv)
    res = read_json(a.results)
    print(table(res))
    plot(res, a.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Plot drain throughput against worker processes and slots from `queuectl bench` JSON.

    make bench-peers-env      # .venv-peers holds matplotlib (not a queuectl dependency)
    queuectl bench --scratch --only matrix --json sqlite.json
    queuectl --db postgresql://... bench --only matrix --json postgres.json
    .venv-peers/bin/python benchmarks/plot.py sqlite.json postgres.json -o docs/throughput.png

One panel per file; x is the total number of slots (processes x slots each), one line per
process count for the noop executor, the shell executor and the spawn ceiling.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/throughput.png"))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = [json.loads(path.read_text()) for path in args.files]
    fig, axes = plt.subplots(1, len(docs), figsize=(6.5 * len(docs), 4.6), squeeze=False)
    styles = {"noop": "-", "shell": "--", "spawn": ":"}
    labels = {"noop": "noop executor", "shell": "shell (sh -c true)", "spawn": "spawn ceiling"}
    for ax, doc in zip(axes[0], docs, strict=True):
        series: list[dict[str, Any]] = doc.get("series", [])
        if not series:
            raise SystemExit("a file has no matrix series: run `queuectl bench --only matrix`")
        for workers in sorted({row["workers"] for row in series}):
            rows = sorted((r for r in series if r["workers"] == workers), key=lambda r: r["slots"])
            x = [r["workers"] * r["slots"] for r in rows]
            for key, style in styles.items():
                ax.plot(
                    x,
                    [r[key] for r in rows],
                    style,
                    marker="o",
                    color=f"C{workers}",
                    label=f"{workers} proc, {labels[key]}",
                )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("total slots (processes x slots)")
        ax.set_ylabel("jobs/s")
        ax.set_title(f"{doc['database']}: {doc['params']['jobs']} jobs per run")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"queuectl drain throughput ({doc['machine']['cpus']} CPUs)")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

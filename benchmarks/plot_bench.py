"""Chart of moelora-bench's CSV: time per case and fraction of the memory floor."""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    rows = list(csv.DictReader(open(src)))
    names = [r["case"] for r in rows]
    us = [float(r["us"]) for r in rows]
    floor = [float(r["floor_us"]) for r in rows]
    triton = [float(r["triton_us"]) for r in rows]
    frac = [f / u if u else 0 for f, u in zip(floor, us)]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(12, len(rows) * 0.18), 10), sharex=True)
    x = range(len(rows))
    ax1.bar(x, us, label="moelora", color="#3b7dd8")
    ax1.scatter(x, floor, marker="_", s=120, color="black", label="memory floor", zorder=3)
    tx = [i for i, t in enumerate(triton) if t > 0]
    ax1.scatter(tx, [triton[i] for i in tx], marker="x", color="#d83b3b", label="vLLM Triton (contract)", zorder=3)
    ax1.set_yscale("log")
    ax1.set_ylabel("µs (median, L2 flushed, graph replay)")
    ax1.legend()
    ax2.bar(x, frac, color="#4caf50")
    ax2.axhline(0.8, color="gray", linestyle="--", linewidth=0.8)
    ax2.set_ylabel("floor / time")
    ax2.set_xticks(list(x))
    ax2.set_xticklabels(names, rotation=90, fontsize=6)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print("chart:", dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Backup duration vs max-workers by medium, with and without copy offload.

Runs configs/workers-by-medium.yaml (1000 MiB, no guest, the `backup`
scheme), prints one table (rows: source->target, columns: max-workers) and
writes one plot, results/readme/workers-by-medium.png.

    python benchmarks/workers_by_medium.py [--out results/readme]
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fleecesim.config import load_config, variants  # noqa: E402
from fleecesim.run import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"^(?P<pair>[a-z]+[-:][a-z]+)(?P<off>/offload)?/w(?P<w>\d+)$")


def measure() -> dict:
    """{(pair, offload): {workers: duration_s}} from the bundled config."""
    cfg = load_config(ROOT / "configs/workers-by-medium.yaml")
    out: dict = {}
    for name, c in variants(cfg):
        s = simulate(c, name).summary
        if not s.get("oracle_ok"):
            raise SystemExit(f"{name}: backup not ok: {s.get('error') or s.get('backup_outcome')}")
        m = NAME.match(name)
        out.setdefault((m["pair"], bool(m["off"])), {})[int(m["w"])] = s["backup_duration_s"]
    return out


def table(res: dict) -> str:
    workers = sorted({w for d in res.values() for w in d})
    head = ["source->target"] + [f"w{w}" for w in workers]
    rows = [[f"{p.replace('-', '->')}{' (offload)' if off else ''}"]
            + [f"{d[w]:.2f}" for w in workers] for (p, off), d in res.items()]
    width = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(width[i]) if i == 0 else c.rjust(width[i])  # noqa: E731
                              for i, c in enumerate(r))
    return "\n".join([fmt(head), "  ".join("-" * w for w in width)] + [fmt(r) for r in rows])


def plot(res: dict, path: Path) -> None:
    """Two panels (read+write, copy offload) on one log time axis; one marker
    per medium pair, drawn large to small so pairs with identical durations
    stay visible; one legend under both panels."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6), sharey=True)
    pairs = sorted({p for p, _off in res})
    style = {p: (m, 12 - 1.2 * i, f"C{i}") for i, (p, m) in enumerate(zip(pairs, "osD^vx<>"))}
    handles = {}
    for ax, off in zip(axes, (False, True)):
        for pair in pairs:
            d = res.get((pair, off))
            if not d:
                continue
            ws = sorted(d)
            marker, size, colour = style[pair]
            label = (pair.replace("-", " -> ").replace(":", " : ")
                     + (" (one device)" if ":" in pair else ""))
            (line,) = ax.plot(ws, [d[w] for w in ws], marker=marker, markersize=size,
                              alpha=0.8, color=colour, label=label)
            handles.setdefault(label, line)
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 16, 64], labels=["1", "2", "4", "16", "64"])
        ax.set_yscale("log")
        ax.set_yticks([2, 3, 4, 6, 10, 20, 40], labels=["2", "3", "4", "6", "10", "20", "40"])
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("max-workers")
        ax.set_title("copy offload (x-perf use-copy-range; two devices fall back: EXDEV)" if off
                     else "read + write through QEMU (default)", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("backup duration (s, log): 1000 MiB, idle guest")
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=4,
               fontsize=8, title="source -> target", title_fontsize=8)
    fig.suptitle("Does parallel block-copy help? Backup duration vs max-workers by medium")
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "results/readme"))
    args = ap.parse_args()
    res = measure()
    print(table(res))
    p = Path(args.out) / "workers-by-medium.png"
    plot(res, p)
    print(f"\nplot: {p}")


if __name__ == "__main__":
    main()

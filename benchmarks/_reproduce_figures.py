"""The PNG figures of docs/reproduction.md (small: ~100 dpi, a few tens of kB each)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SHORT = {"tf_efficientnet_lite2": "lite2", "tf_efficientnet_lite0": "lite0", "mobilenetv2_100": "mnv2"}


def short(name: str) -> str:
    for long, s in SHORT.items():
        name = name.replace(long, s)
    return name


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def family_plot(table1: list[dict], path: Path) -> str:
    """Fig. 1-style: test top-1 against MACs, anchors and members of each pair."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for t, colour in zip(table1, ("tab:blue", "tab:green")):
        rows = t["rows"]
        ax.plot([r["macs"] / 1e6 for r in rows], [100 * r["test_top1"] for r in rows], "-", color=colour, alpha=.5,
                label=" -> ".join(short(p) for p in t["pair"]))
        for r in rows:
            anchor = r["role"] != "member"
            ax.plot(r["macs"] / 1e6, 100 * r["test_top1"], "s" if anchor else "o", color=colour,
                    ms=8 if anchor else 5)
            if anchor:
                ax.annotate(short(r["model"]), (r["macs"] / 1e6, 100 * r["test_top1"]), fontsize=8,
                            xytext=(4, -10), textcoords="offset points")
    ax.set_xlabel("M MACs at 64 px (fvcore)")
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    ax.set_title("Families: anchors (squares) and stitched members")
    ax.legend(fontsize=8)
    ax.grid(alpha=.3)
    return _save(fig, path)


def blocks_plot(table1: list[dict], path: Path) -> str:
    """Fig. 3 analogue: for each member, the front blocks it keeps (0..i) and the back blocks (j+1..)."""
    n = sum(1 for t in table1 for r in t["rows"] if r["role"] == "member")
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * n + 1.2))
    y, labels, width = 0, [], 0
    for t in table1:
        fa, fb = (short(p) for p in t["pair"])
        _, nb = t["blocks"]
        for r in (r for r in t["rows"] if r["role"] == "member"):
            front = list(range(r["i"] + 1))
            back = list(range(r["j"] + 1, nb))
            ax.barh(y, len(front), left=0, color="tab:blue", edgecolor="white")
            ax.barh(y, 0.4, left=len(front), color="black")
            ax.barh(y, len(back), left=len(front) + 0.4, color="tab:orange", edgecolor="white")
            ax.text(len(front) + len(back) + 0.8, y, f"{short(r['model'])}  {r['macs'] / 1e6:.1f} M MACs",
                    va="center", fontsize=8)
            width = max(width, len(front) + len(back))
            labels.append(f"{fa}->{fb} #{len(labels) + 1}")
            y += 1
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("blocks kept (blue: front anchor's, black: stitching layer, orange: back anchor's)", fontsize=9)
    ax.set_xlim(0, width + 14)
    ax.invert_yaxis()
    return _save(fig, path)


def points_plot(fig4: dict, path: Path) -> str:
    """Fig. 4 analogue: CKA and the probe score against the reached test top-1."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    rows = fig4["rows"]
    for ax, key, label in ((axes[0], "cka", "CKA at the stitch point"),
                           (axes[1], "probe", "least-squares probe top-1 (500 val images)")):
        xs = [r[key] * (100 if key == "probe" else 1) for r in rows]
        ax.scatter(xs, [100 * r["test_top1"] for r in rows], s=18)
        ax.set_xlabel(label)
        ax.set_ylabel("test top-1 after training (%)")
        ax.set_title(f"Spearman rho {fig4[f'rho_{key}']:.2f} (p = {fig4[f'p_{key}']:.2g})", fontsize=10)
        ax.grid(alpha=.3)
    return _save(fig, path)


def heatmap_plot(maps: dict, pair: list[str], members: list[dict], path: Path) -> str:
    """Fig. 5 analogue: anchor A with itself, B with itself, A with B (the members' stitch points marked)."""
    a, b = pair
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), constrained_layout=True)
    for ax, (f, k) in zip(axes, ((a, a), (b, b), (a, b))):
        im = ax.imshow(maps[f"{f}|{k}"]["matrix"], vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
        ax.set_ylabel(f"{short(f)} block (output)")
        ax.set_xlabel(f"{short(k)} block (output)")
        ax.set_title(f"CKA {short(f)} x {short(k)}", fontsize=10)
        if (f, k) == (a, b):
            ax.scatter([m["j"] for m in members], [m["i"] for m in members], marker="x", color="red", s=30,
                       label="members")
            ax.legend(fontsize=7, loc="upper left")
    fig.colorbar(im, ax=axes, shrink=0.9, label="CKA")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name

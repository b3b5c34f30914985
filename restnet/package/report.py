"""report.md and its plots: CKA heatmap with the chosen stitch points, accuracy against cost."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _cost_label(m: dict) -> str:
    return {"params": "params (M)", "flops": "MACs (M)", "latency": "latency (ms)"}[m["profile"]["metric"]]


def _cost_value(m: dict, v: dict) -> float:
    return v["cost"] / 1e6 if m["profile"]["metric"] in ("params", "flops") else v["cost"]


def cka_heatmap(cka: dict, m: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=110)
    im = ax.imshow(cka["matrix"], cmap="viridis", vmin=0, vmax=1, origin="upper", aspect="auto")
    fig.colorbar(im, ax=ax, label="linear CKA")
    for v in m["variants"]:
        if v["kind"] == "stitched":
            i, j = v["front"]["blocks"][1], v["back"]["blocks"][0] - 1
            ax.plot(j, i, marker="o", ms=10, mfc="none", mec="red", mew=2)
            ax.annotate(f"{v['accuracy']:.1%}", (j, i), textcoords="offset points", xytext=(6, 6), color="red",
                        fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"back block j ({cka['back']})")
    ax.set_ylabel(f"front block i ({cka['front']})")
    ax.set_title("CKA of block outputs; circles = selected stitch points")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def accuracy_vs_cost(m: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=110)
    for kind, style in (("stitched", dict(marker="o", color="tab:blue")), ("anchor", dict(marker="s",
                                                                                          color="tab:orange"))):
        pts = [(_cost_value(m, v), v["accuracy"] * 100, v) for v in m["variants"] if v["kind"] == kind]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=kind, zorder=3, **style)
            for x, y, v in pts:
                ax.annotate(v["front"]["anchor"] if kind == "anchor" else
                            f"[:{v['front']['blocks'][1] + 1}]→[{v['back']['blocks'][0]}:]", (x, y),
                            textcoords="offset points", xytext=(5, -10), fontsize=8)
    alike = [a for a in m["anchors"].values() if a.get("trained_alike")]
    for k, a in enumerate(alike):  # each anchor trained alike, at that anchor's cost
        v = next((v for v in m["variants"] if v["kind"] == "anchor" and v["front"]["anchor"] == a["name"]), None)
        if v is not None:
            ax.scatter([_cost_value(m, v)], [a["trained_alike"]["accuracy"] * 100], marker="s", facecolors="none",
                       edgecolors="tab:orange", zorder=3, label="anchor trained alike (control)" if k == 0 else None)
    for b in m["profile"]["budgets"]:
        ax.axvline(b / 1e6 if m["profile"]["metric"] != "latency" else b, color="grey", ls=":", lw=1)
    ax.set_xlabel(_cost_label(m) + "  (dotted: budgets)")
    ax.set_ylabel(f"{m['task'].get('accuracy_split', 'val')} top-1 (%)")
    ax.set_title(f"{m['profile']['name']}: accuracy against cost")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _curve_lines(anchors: dict) -> list[str]:
    """Each anchor adapted until converged: its validation curve."""
    from restnet.training.converge import describe_curve

    return [f"Adaptation of {a['name']}: {describe_curve(a['adaptation']['curve'], a['adaptation']['stopped'])}.\n"
            for a in anchors.values() if a.get("adaptation")]


def _control_lines(anchors: dict) -> list[str]:
    """Each anchor given the members' training (restnet.package.fairness): the control the family is measured
    against."""
    rows = [(a["name"], a["accuracy"], a["trained_alike"]) for a in anchors.values() if a.get("trained_alike")]
    if not rows:
        return []
    return ["Control: each anchor cut after its middle block, stitched to itself and trained like the members "
            "(same settings, same images). A member that the small anchor's control beats on the validation "
            "images (McNemar, as for a cheaper member) is not shipped.", "", "| anchor | as shipped | trained alike | gain (points) |", "|---|---|---|---|",
            *(f"| {n} | {acc:.2%} | {t['accuracy']:.2%} (after block {t['after_block']}) | "
              f"{100 * (t['accuracy'] - acc):+.2f} |" for n, acc, t in rows), ""]


def write(root: Path, cka: dict, m: dict) -> None:
    """report.md and its two plots; ``cka``: the pipeline's CKA result (matrix, block names, estimator)."""
    cka_heatmap(cka, m, root / "cka.png")
    accuracy_vs_cost(m, root / "accuracy_vs_cost.png")
    from restnet.package.family import describe

    a, t = m["anchors"], m["task"]
    split = (f"{t.get('test_size')} {t['dataset']} test images, never used for training or decisions"
             if t.get("accuracy_split") == "test" else f"{t['val_size']} validation images")
    lines = [f"# Report: {m['profile']['name']} package", "",
             f"Every top-1 below is on {split}; export checks use the {t['val_size']} validation images.", "",
             describe(m.get("family")) + ".", "",
             f"Anchors (task-adapted): "
             f"front {a['front']['name']} {a['front']['accuracy']:.2%} ({a['front']['weights']}), "
             f"back {a['back']['name']} {a['back']['accuracy']:.2%} ({a['back']['weights']}).", "",
             *_control_lines(a), *_curve_lines(a),
             f"Selection: Algorithm 1, metric {m['profile']['metric']}, budgets "
             + ", ".join(f"{b:.4g}" for b in m["profile"]["budgets"]) + f" {m['profile']['unit']}"
             + (f", band {m['profile']['band']:g} (beyond the paper)" if m["profile"]["band"] else "") + ".",
             f"CKA: {cka['estimator']} estimator, b = {cka['batch_size']} x {cka['repeats']} repeats.", "",
             "| id | stitch point | CKA | cost | top-1 | params | trainable | files verified (max abs diff, "
             "top-1 agreement) |", "|---|---|---|---|---|---|---|---|"]
    for v in m["variants"]:
        point = (f"{v['front']['anchor']}[:{v['front']['blocks'][1] + 1}] → {v['back']['anchor']}"
                 f"[{v['back']['blocks'][0]}:]" if v["kind"] == "stitched" else "anchor")
        cka_txt = "" if v.get("cka") is None else f"{v['cka']:.4f}"
        files = "; ".join(f"{f['format']} ({f['max_abs_diff']:.1e}, {f['top1_agreement']:.2%})" for f in v["files"])
        lines.append(f"| `{v['id']}` | {point} | {cka_txt} "
                     f"| {v['cost']:.4g} | {v['accuracy']:.2%} | {v['params'] / 1e6:.2f} M | "
                     f"{v['trainable_params'] / 1e6:.3f} M | {files} |")
    lines += ["", "![CKA heatmap](cka.png)", "", "![accuracy against cost](accuracy_vs_cost.png)", ""]
    (root / "report.md").write_text("\n".join(lines))

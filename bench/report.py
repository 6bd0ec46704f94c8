"""Tables, JSON shaping and the PNG chart for bench/run.py (standard library; matplotlib only for the chart)."""
from __future__ import annotations

import statistics
import textwrap

COLORS = {"ociruntime": "tab:green", "runc": "tab:blue", "crun": "tab:orange"}
OTHER_COLORS = ["tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]


def summarize(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None, "mean": None, "samples": []}
    return {"n": len(values), "median": statistics.median(values), "min": min(values), "max": max(values),
            "mean": statistics.fmean(values), "samples": [round(v, 4) for v in values]}


def scenario_dict(name, title, metrics, notes, names, baseline) -> dict:
    """JSON form of a scenario: per metric and runtime n/median/min/max/samples/failures, plus ratios of the
    medians to the baseline runtime (e.g. "ociruntime/runc")."""
    out = []
    for m in metrics:
        per = {n: dict(summarize(m.samples[n]), failures=m.failures[n]) for n in names}
        ratios = {}
        base = per.get(baseline, {}).get("median") if baseline else None
        for n in names:
            if base and n != baseline and per[n]["median"] is not None:
                ratios[f"{n}/{baseline}"] = per[n]["median"] / base
        out.append({"label": m.label, "unit": m.unit, "runtimes": per, "ratios": ratios})
    return {"name": name, "title": title, "metrics": out, "notes": notes, "baseline": baseline}


def num(v, unit) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if unit in ("s", "MiB") else f"{v:.1f}"


def header(machine: dict, runtimes: dict) -> str:
    lines = [f"ociruntime bench  {machine['date']}",
             f"machine: {machine['cpu_model']} x{machine['nproc']}, {machine['mem_total_mib']} MiB, "
             f"kernel {machine['kernel']}, {machine['os']}; repo {machine['repo_commit']}",
             f"environment: {machine['environment']}"]
    for name, info in runtimes.items():
        if info.get("status") == "ok":
            lines.append(f"  {name:<11} {info['path']}  ({info['version'].splitlines()[0]})")
        else:
            lines.append(f"  {name:<11} SKIPPED: {info.get('reason')}")
    return "\n".join(lines)


def table(sc: dict) -> str:
    base = sc["baseline"]
    ratio_head = f"/{base}" if base else ""
    lines = [f"\n== {sc['name']}: {sc['title']} ==",
             f"{'metric':<46} {'runtime':<11} {'n':>3} {'median':>9} {'min':>9} {'max':>9} {'fail':>4} "
             f"{ratio_head:>7}"]
    for m in sc["metrics"]:
        label = f"{m['label']} [{m['unit']}]"
        for name, r in m["runtimes"].items():
            ratio = "1.00" if name == base and r["median"] is not None else ""
            if f"{name}/{base}" in m["ratios"]:
                ratio = f"{m['ratios'][f'{name}/{base}']:.2f}"
            lines.append(f"{label[:46]:<46} {name:<11} {r['n']:>3} {num(r['median'], m['unit']):>9} "
                         f"{num(r['min'], m['unit']):>9} {num(r['max'], m['unit']):>9} {r['failures']:>4} "
                         f"{ratio:>7}")
            label = ""
    lines += [f"  note: {n}" for n in sc["notes"]]
    lines.append(f"  ({sc.get('seconds', '?')} s)")
    return "\n".join(lines)


def chart(results: dict, path) -> str | None:
    """One panel per scenario: median bars with min-max whiskers per runtime, ratio to the baseline on top.
    Returns None on success or a message saying why no chart was drawn."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (`make bench` installs it into .venv): chart skipped"
    scenarios = results["scenarios"]
    if not scenarios:
        return "no scenario ran: chart skipped"
    names = [n for n, i in results["runtimes"].items() if i.get("status") == "ok"]
    colors = {n: COLORS.get(n) or OTHER_COLORS[i % len(OTHER_COLORS)] for i, n in enumerate(names)}
    small = [s for s in scenarios if len(s["metrics"]) <= 4]
    wide = [s for s in scenarios if len(s["metrics"]) > 4]
    rows = (len(small) + 1) // 2 + len(wide)
    fig = plt.figure(figsize=(15, 4.3 * rows))
    grid = fig.add_gridspec(rows, 2)
    slots = [grid[i // 2, i % 2] for i in range(len(small))]
    slots += [grid[(len(small) + 1) // 2 + i, :] for i in range(len(wide))]
    base = results.get("baseline")
    for sc, slot in zip(small + wide, slots):
        ax = fig.add_subplot(slot)
        width = 0.8 / len(names)
        tops = []
        for j, name in enumerate(names):
            xs, meds, lo, hi = [], [], [], []
            for i, m in enumerate(sc["metrics"]):
                r = m["runtimes"][name]
                if r["median"] is None:
                    continue
                xs.append(i - 0.4 + width * (j + 0.5))
                meds.append(r["median"])
                lo.append(r["median"] - r["min"])
                hi.append(r["max"] - r["median"])
                tops.append(r["max"])
                ratio = m["ratios"].get(f"{name}/{base}")
                if ratio is not None:
                    ax.annotate(f"{ratio:.2f}x", (xs[-1], r["max"]), ha="center", va="bottom", fontsize=7,
                                xytext=(0, 2), textcoords="offset points")
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, color=colors[name], label=name,
                   error_kw={"elinewidth": 0.8})
        ax.set_xticks(range(len(sc["metrics"])))
        if sc in wide:
            ax.set_xticklabels([m["label"] for m in sc["metrics"]], fontsize=7, rotation=35, ha="right")
        else:
            ax.set_xticklabels([textwrap.fill(m["label"], 26) for m in sc["metrics"]], fontsize=7)
        units = sorted({m["unit"] for m in sc["metrics"]})
        ax.set_ylabel(", ".join(units))
        if tops and min(t for t in tops if t > 0) * 30 < max(tops):
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, max(tops or [1]) * 1.15)
        fails = {n: sum(m["runtimes"][n]["failures"] for m in sc["metrics"]) for n in names}
        failed = ", ".join(f"{n} {f}" for n, f in fails.items() if f)
        ax.set_title(textwrap.fill(f"{sc['name']}: {sc['title']}", 80) + (f"\nfailures: {failed}" if failed else ""),
                     fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    mach = results["machine"]
    fig.suptitle(f"OCI runtime bench {mach['date']} - {mach['cpu_model']} x{mach['nproc']}, kernel {mach['kernel']}"
                 f" - bars: median, whiskers: min-max, labels: ratio to {base}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None

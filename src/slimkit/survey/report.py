"""`run_survey`: every table, then one markdown file and one self-contained HTML report.

The HTML goes through `slimkit.metrics.html` (inline style, every plot a base64 PNG, no
network). The header of both states the host (CPU model and the flags that matter for int8),
the load, the command and the wall time.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any, Sequence

from slimkit.survey.tables import TableOut
from slimkit.errors import UserError

__all__ = ["host_lines", "markdown", "pareto_figure", "render", "run_survey"]


def host_lines() -> list[str]:
    """CPU model, the SIMD flags that decide int8 speed, core count and load."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    return [f"CPU: {model}; flags: {' '.join(shown) or 'none of avx2/avx512/vnni'}; "
            f"{os.cpu_count()} logical cores",
            f"Load average (1, 5, 15 min) at the end of the run: {load}"]


def _md_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return out


def markdown(tables: Sequence[TableOut], header: Sequence[str]) -> str:
    lines = ["# The survey's comparisons, reproduced by `slimkit survey`", ""]
    lines += [f"- {h}" for h in header] + [""]
    for t in tables:
        lines += [f"## {t.title}", "", t.setting, "", "Ours:", ""] + _md_table(t.rows) + [""]
        if t.published:
            lines += ["Published:", ""] + _md_table(t.published) + [""]
        lines += [f"- {n}" for n in t.notes] + [""]
    return "\n".join(lines) + "\n"


def pareto_figure(s34: TableOut):
    """Top-1 vs parameter bytes, vs relative latency (r_T) and vs modelled energy, per task;
    the Pareto front (nothing smaller/faster/cheaper is as accurate) joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from slimkit.survey.tables import pareto

    tasks = list(s34.data)
    fig, axes = plt.subplots(len(tasks), 3, figsize=(13, 3.6 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        d = s34.data[task]
        names = ["original"] + list(d["methods"])
        recs = [d["base"]] + [m["new"] for m in d["methods"].values()]
        lats = [1.0] + [m["ratios"]["r_T"] for m in d["methods"].values()]
        for col, (xs, label) in enumerate((
                ([r["param_bytes"] / 1024 for r in recs], "parameter size (KB)"),
                (lats, "latency relative to the original (r_T)"),
                ([r["energy_uj"]["device1"] for r in recs], "modelled energy, device 1 (uJ)"))):
            ax = axes[row][col]
            ys = [100 * r["top1"] for r in recs]
            pts = [(x, y) for x, y in zip(xs, ys) if x is not None]
            for name, x, y in zip(names, xs, ys):
                if x is None:
                    continue
                ax.scatter(x, y, s=36)
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
            front = sorted(pts[i] for i in pareto(pts))
            if len(front) > 1:
                ax.plot(*zip(*front), "k--", lw=0.8, alpha=0.6)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no overlaps
            ax.set_xlabel(label)
            ax.set_ylabel("top-1 (%)")
            ax.set_title(task, fontsize=9)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        from slimkit.metrics.html import Figure

        return Figure(fig, caption="Section 3.4: accuracy vs size, latency and energy; the "
                      "dashed line joins the Pareto front")
    finally:
        plt.close(fig)


def kd_figure(kd: TableOut):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from slimkit.metrics.html import Figure

    per = kd.data["per_seed"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for i, key in enumerate(("alone", "kd", "teacher")):
        ax.scatter([i] * len(per), [100 * r[key] for r in per], s=30)
    ax.set_xticks([0, 1, 2], ["student alone", "student + KD", "teacher"])
    ax.set_ylabel("top-1 (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        return Figure(fig, caption="Distillation: one point per seed")
    finally:
        plt.close(fig)


def sensitivity_figure(t: TableOut):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from slimkit.metrics.html import Figure

    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs = [100 * sp for sp in t.data["sparsities"]]
    for name, accs in t.data["accuracy"].items():
        ax.plot(xs, [100 * a for a in accs], "o-", label=name)
    ax.axhline(100 * t.data["baseline"], color="k", ls="--", lw=0.8, label="unpruned")
    ax.set_xlabel("weights pruned in that layer (%)")
    ax.set_ylabel("top-1 (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        return Figure(fig, caption="Sensitivity: top-1 with one layer pruned at a time")
    finally:
        plt.close(fig)


def render(tables: Sequence[TableOut], header: Sequence[str], md_path: Path,
           html_path: Path) -> None:
    from slimkit.fileio import atomic_write
    from slimkit.metrics.html import Section, Table, write_html

    atomic_write(md_path, markdown(tables, header).encode())
    sections = [Section("Run", text="\n\n".join(header))]
    for t in tables:
        figs = []
        if t.key == "section34" and t.data:
            figs.append(pareto_figure(t))
        if t.key == "distillation" and t.data.get("per_seed"):
            figs.append(kd_figure(t))
        if t.key == "sensitivity" and t.data.get("accuracy"):
            figs.append(sensitivity_figure(t))
        tabs = [Table(t.rows, caption="Ours")]
        if t.published:
            tabs.append(Table(t.published, caption="Published (survey / paper)"))
        sections.append(Section(t.title, text="\n\n".join([t.setting, *t.notes]),
                                tables=tabs, figures=figs))
    write_html(html_path, "The survey's comparisons, reproduced by slimkit survey", sections)
    html_path.chmod(md_path.stat().st_mode & 0o777)   # same permissions as the markdown


# every table, in report order (`tables=` picks some)
TABLES = ("table6", "table7", "deep_compression", "section34", "table8", "distillation",
          "sensitivity")


def _refuse_missing_checkpoints(s, wanted: set[str]) -> None:
    from slimkit.survey.setup import rebuild_command
    from slimkit.survey.tables import BASELINES

    missing: dict[str, list[str]] = {}
    for name in TABLES:
        for arch, kind, n_field in BASELINES[name] if name in wanted else []:
            file = s.missing_checkpoint(arch or s.budget.t7_arch, kind,
                                        getattr(s.budget, n_field))
            if file is not None:
                missing.setdefault(file, []).append(name)
    if not missing:
        return
    where = s.checkpoints if s.checkpoints is not None else "(no checkpoints folder)"
    lines = [f"{f} (needed by {', '.join(t)}): rebuild it with {rebuild_command(f)}"
             for f, t in missing.items()]
    raise UserError(
        f"budget '{s.budget.name}' starts from trained checkpoints, and {where} lacks "
        + "; ".join(lines) + ". Then pass --checkpoints DIR, or leave those tables out with "
        "--tables, or pass --train-missing to train them here at this budget (hours on a CPU)")


def run_survey(budget: str, out: str | os.PathLike, *, data_root=None, checkpoints=None,
               command: str = "slimkit survey", log=print,
               tables: Sequence[str] | None = None,
               train_missing: bool = False) -> dict[str, Any]:
    """Compute (or read back) every table, or only `tables` (names in `TABLES`; table8 brings
    section34); write ``OUT/survey.md`` and ``OUT/survey.html``.

    At a budget that does not train missing baselines (full), a trained checkpoint missing on
    real data is a `UserError` before any work, naming its rebuild command, unless
    `train_missing` (then it is trained here, for hours)."""
    import torch

    from slimkit.metrics import measure_host
    from slimkit.survey import tables as T
    from slimkit.survey.setup import Survey, default_checkpoints, env_budget

    t0 = time.perf_counter()
    b = env_budget(budget)
    s = Survey(b, Path(out), data_root=data_root,
               checkpoints=checkpoints if checkpoints is not None else default_checkpoints())
    s.cache.on_computed = lambda label, sec: log(f"[survey]   {label}: {sec:.0f} s")
    wanted = set(TABLES if tables is None else tables)
    unknown = wanted - set(TABLES)
    if unknown:
        raise UserError(f"unknown survey table(s) {', '.join(sorted(unknown))}; "
                        f"choose from {', '.join(TABLES)}")
    if "table8" in wanted:
        wanted.add("section34")  # Table 8 ranks section 3.4's methods
    if not (b.trains_missing or train_missing):
        _refuse_missing_checkpoints(s, wanted)
    done: list[TableOut] = []
    s34 = None
    for name in TABLES:
        if name not in wanted:
            continue
        log(f"[survey] {name} ...")
        if name == "table8":
            small = b.name == "smoke"
            host = measure_host(n=256 if small else 1024, copy_mb=8 if small else 64,
                                repeats=2 if small else 5, threads=1)
            done.append(T.table8(s, s34, host=host))
        else:
            done.append(getattr(T, name)(s))
            if name == "section34":
                s34 = done[-1]
    wall = time.perf_counter() - t0
    header = [*host_lines(), f"torch {torch.__version__}, 1 intra-op thread for latency",
              f"Command: `{command}`",
              f"Budget: {b.name}; wall time of this invocation {wall:.0f} s; cells computed "
              f"{s.cache.computed}, read from the cache {s.cache.reused}; the cells' own compute "
              f"time, summed over the runs that computed them: {s.cache.compute_s:.0f} s"
              + (f", refused (damaged, recomputed) {len(s.cache.refused)}"
                 if s.cache.refused else ""),
              "Every number below was measured by this run (or read back from its cell cache); "
              "published values are quoted beside ours, never mixed in."]
    left_out = [name for name in TABLES if name not in wanted]
    if left_out:
        header.append(f"Left out of this run (--tables): {', '.join(left_out)}")
    md, html = Path(out) / "survey.md", Path(out) / "survey.html"
    render(done, header, md, html)
    return {"tables": done, "markdown": md, "html": html, "wall_s": wall,
            "compute_s": s.cache.compute_s,
            "computed": s.cache.computed, "reused": s.cache.reused,
            "refused": list(s.cache.refused)}

"""Turn the results file written by `experiments/reproduce.py` into docs/results.md and PNG plots.

    python experiments/report.py outputs/experiments/grid-cpu/results.jsonl --out docs [--notes docs/results_notes.md]

Every number in the report comes from the results file (and the runs' log_history.jsonl for the curves); `--notes`
appends a hand-written discussion that quotes no number of its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from reproduce import RECOMMENDED  # the main comparison's inhibitor student (next to this file)

REPO = Path(__file__).resolve().parents[1]  # run folders are recorded relative to it

MAIN_METRIC = {"cola": "matthews_correlation", "stsb": "spearmanr"}
METRIC_NAME = {"matthews_correlation": "MCC", "spearmanr": "Spearman", "accuracy": "acc."}
PAPER_DISTILBERT = {"cola": 51.3, "sst2": 91.3, "mrpc": 87.5, "rte": 59.9, "stsb": 86.9, "qnli": 89.2, "imdb": 92.82}
TASK_ORDER = ("sst2", "cola", "mrpc", "rte", "stsb", "qnli", "imdb")
MODELS = (
    "teacher",
    "ts-dot",
    "at-dot",
    RECOMMENDED,
    "at-inhibitor",
    "gt-inhibitor",
    "ts-inhibitor",
    "ta-dot",
    "ta-inhibitor",
    "student-dot",
    "student-at-inhibitor",
    "student-inhibitor",
)
PAIRS = (  # (dot, inhibitor, whether the goal applies); the first is the headline
    ("ts-dot", RECOMMENDED, True),
    ("at-dot", RECOMMENDED, True),
    ("at-inhibitor", RECOMMENDED, False),  # what the scalars' own learning rate does, seed by seed
    ("ts-dot", "at-inhibitor", True),
    ("at-dot", "at-inhibitor", True),
    ("ts-dot", "ts-inhibitor", True),
    ("ta-dot", "ta-inhibitor", True),
    ("student-dot", "student-at-inhibitor", True),
    ("student-dot", "student-inhibitor", True),
)
MODEL_TEXT = {
    "teacher": "teacher: MiniLM fine-tuned (dot product)",
    "ts-dot": "dot-product student, task-specific distillation",
    "at-dot": "dot-product student: attention transfer to the task teacher's attention, then task-specific distillation",
    "at-inhibitor": "inhibitor student: attention transfer (to MiniLM's attention, then to the task teacher's), then "
    "task-specific distillation",
    RECOMMENDED: "inhibitor student, the recommended recipe: `at-inhibitor` with the per-head scalars at their own "
    "learning rate (1e-2)",
    "gt-inhibitor": "inhibitor student: attention transfer to MiniLM's attention only, then task-specific distillation",
    "ts-inhibitor": "inhibitor student, plain conversion then task-specific distillation",
    "ta-dot": "dot-product student, task-agnostic then task distillation",
    "ta-inhibitor": "inhibitor student, task-agnostic then task distillation",
    "student-dot": "dot-product student (quick)",
    "student-at-inhibitor": "inhibitor student after attention transfer (quick)",
    "student-inhibitor": "inhibitor student, plain conversion (quick)",
}
GOAL_MACRO_GAP, GOAL_TASK_GAP = 1.0, 3.0


def main_metric(task: str) -> str:
    return MAIN_METRIC.get(task, "accuracy")


def score(row: dict) -> float:
    return 100 * row["metrics"][f"eval_{main_metric(row['task'])}"]


def mean_std(values: list[float], digits: int = 1) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def load(path: Path) -> list[dict]:
    """The rows of the results file; of a run recorded twice (rebuilt after its folder was lost) the last one counts."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:  # the recommended recipe was a diagnosis variant before it became the main comparison's
        if row["model"] == RECOMMENDED:
            row["group"] = "main"
    return list({row["run_id"]: row for row in rows}.values())


def tasks_of(rows: list[dict]) -> list[str]:
    present = {row["task"] for row in rows if row["task"] != "general"}
    return [t for t in TASK_ORDER if t in present] + sorted(present - set(TASK_ORDER))


def table(rows: list[dict], models: list[str]) -> tuple[str, dict]:
    """Task-by-model table of mean ± std over seeds (n in brackets when > 1), with the macro average of the means."""
    by = defaultdict(list)
    for row in rows:
        by[(row["task"], row["model"])].append(score(row))
    tasks = tasks_of(rows)
    lines = [
        "| model | " + " | ".join(f"{t} ({METRIC_NAME[main_metric(t)]})" for t in tasks) + " | macro |",
        "|---" * (len(tasks) + 2) + "|",
    ]
    macros = {}
    for model in models:
        cells = [by.get((t, model), []) for t in tasks]
        if not any(cells):
            continue
        means = [statistics.mean(c) for c in cells if c]
        macro = statistics.mean(means) if len(means) == len(tasks) else None
        macros[model] = macro
        cells_text = " | ".join(mean_std(c) for c in cells)
        macro_text = f"{macro:.1f}" if macro is not None else "–"
        lines.append(f"| {model} | {cells_text} | {macro_text} |")
    return "\n".join(lines), macros


def paired_gaps(rows: list[dict], dot: str, inh: str) -> dict[str, list[float]]:
    """Per task, inhibitor minus dot-product score for every seed that has both students."""
    scores = {(r["task"], r["model"], r["seed"]): score(r) for r in rows}
    gaps = defaultdict(list)
    for (task, model, seed), value in sorted(scores.items()):
        if model == inh and (task, dot, seed) in scores:
            gaps[task].append(value - scores[(task, dot, seed)])
    return dict(gaps)


def gap_section(rows: list[dict], dot: str, inh: str, goal: bool = True) -> list[str]:
    gaps = paired_gaps(rows, dot, inh)
    if not gaps:
        return []
    tasks = [t for t in tasks_of(rows) if t in gaps]
    lines = [
        f"### {inh} − {dot} (points; mean ± std of the per-seed differences, n seeds)",
        "",
        "| " + " | ".join(tasks) + " | macro |",
        "|---" * (len(tasks) + 1) + "|",
    ]
    means = [statistics.mean(gaps[t]) for t in tasks]
    macro = statistics.mean(means)
    cells = [f"{mean_std(gaps[t], 2)} (n={len(gaps[t])})" for t in tasks]
    lines.append("| " + " | ".join(cells) + f" | {macro:+.2f} |")
    worst_task = min(tasks, key=lambda t: statistics.mean(gaps[t]))
    worst = statistics.mean(gaps[worst_task])
    met = macro >= -GOAL_MACRO_GAP and worst >= -GOAL_TASK_GAP
    verdict = (
        f" Goal (macro within {GOAL_MACRO_GAP:.1f} point, no task worse than {GOAL_TASK_GAP:.0f}): "
        f"**{'met' if met else 'not met'}**."
    )
    lines += [
        "",
        (f"Gap inhibitor − dot ({inh} vs {dot})" if goal else f"{inh} − {dot}")
        + f", macro: {macro:+.2f} points; worst task {worst_task} {worst:+.2f}."
        + (verdict if goal else ""),
        "",
    ]
    return lines


def plot_scores(rows: list[dict], models: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = tasks_of(rows)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks)), 4))
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        values = [[score(r) for r in rows if r["task"] == t and r["model"] == model] for t in tasks]
        means = [statistics.mean(v) if v else 0 for v in values]
        errs = [statistics.stdev(v) if len(v) > 1 else 0 for v in values]
        ax.bar([x + i * width for x in range(len(tasks))], means, width, yerr=errs, label=model, capsize=2)
    ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(tasks))], tasks)
    ax.set_ylabel("dev score (GLUE metric, x100)")
    ax.set_title("Scores by task (error bars: std over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


RESULTS_FILE: Path | None = None  # set by main(): the run logs kept next to it are read first


def read_log(row: dict) -> list[dict]:
    """A run's log_history.jsonl: the copy next to the results file (experiments/reproduce.py keeps one), else the
    run folder's."""
    log = REPO / row["output_dir"] / "log_history.jsonl"  # recorded relative to the repository
    if RESULTS_FILE is not None:
        kept = RESULTS_FILE.with_name(f"{RESULTS_FILE.stem}-logs") / (row["run_id"].replace("/", "__") + ".jsonl")
        log = kept if kept.is_file() else log
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def plot_curves(rows: list[dict], path: Path) -> bool:
    """Training loss and dev score against optimizer steps, dot-product and inhibitor student side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = [r for r in rows if r["role"] == "student" and r["group"] != "ablation" and r["model"] in MODELS]
    students = [r for r in students if r["seed"] == min(s["seed"] for s in students if s["task"] == r["task"])]
    tasks = [t for t in tasks_of(students) if any(read_log(r) for r in students if r["task"] == t)]
    if not tasks:
        return False
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.2 * len(tasks), 5.5), squeeze=False)
    for column, task in enumerate(tasks):
        loss_ax, eval_ax = axes[0][column], axes[1][column]
        for row in students:
            if row["task"] != task:
                continue
            events = read_log(row)
            style = "-" if row["attention"] == "inhibitor" else "--"
            loss = [(e["step"], e["loss"]) for e in events if "loss" in e]
            metric = f"eval_{main_metric(task)}"
            evals = [(e["step"], 100 * e[metric]) for e in events if metric in e]
            color = f"C{MODELS.index(row['model']) % 10}"  # one colour per model in every panel
            if loss:
                loss_ax.plot(*zip(*loss), style, color=color, label=row["model"], linewidth=1)
            if evals:
                eval_ax.plot(
                    *zip(*evals), style, color=color, marker="o", markersize=3, label=row["model"], linewidth=1
                )
        loss_ax.set_title(f"{task} (seed {min(r['seed'] for r in students if r['task'] == task)})")
        loss_ax.set_yscale("log")
        loss_ax.set_ylabel("training loss")
        eval_ax.set_ylabel(f"dev {METRIC_NAME[main_metric(task)]} x100")
        eval_ax.set_xlabel("optimizer step")
    handles = {}
    for ax in axes[0]:  # one legend with every model shown in any panel
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    axes[0][0].legend(handles.values(), handles.keys(), fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run_time(row: dict) -> float:
    """A run's training time: the script's own `train_runtime` (the training loop with its evaluations, summed over
    resumed segments), else the driver's wall time of the run's last segment."""
    return float(row["metrics"].get("train_runtime", row["wall_time_s"]))


def time_table(rows: list[dict]) -> list[str]:
    by = defaultdict(list)
    for row in rows:
        by[(row["task"], row["model"] if row["group"] != "ablation" else "ablations")].append(run_time(row))
    lines = [
        "| task | run | runs | training time per run (s, mean; training loop and its evaluations) |",
        "|---|---|---|---|",
    ]
    for (task, model), times in sorted(by.items()):
        lines.append(f"| {task} | {model} | {len(times)} | {statistics.mean(times):.0f} |")
    return lines


def general_section(rows: list[dict]) -> list[str]:
    """The task-agnostic runs on unlabeled text: their held-out loss at every evaluation."""
    general = [r for r in rows if r["role"] in ("general", "transfer")]
    if not general:
        return []
    lines = [
        "## Task-agnostic runs on the data sets' training texts (no labels)",
        "",
        "Held-out loss: for `general-*` (hidden-state alignment to MiniLM), 1 − cosine similarity between student and "
        "MiniLM hidden states, mean over tokens and layers; for `transfer-inhibitor` (attention transfer: `general/` to "
        "MiniLM on all tasks' texts, `<task>/` to the task's teacher on the task's texts), the squared error of each "
        "layer's inhibitor attention output against the teacher's softmax attention output on the teacher's input to "
        "that layer, relative to the mean square of the softmax output, mean over layers.",
        "",
        "| run | steps | held-out loss at each evaluation (step: loss) | training time (s) |",
        "|---|---|---|---|",
    ]
    for row in sorted(general, key=lambda r: (r["task"] != "general", r["task"], r["model"])):
        key = "eval_loss_hidden" if any("eval_loss_hidden" in e for e in read_log(row)) else "eval_loss"
        evals = [(e["step"], e[key]) for e in read_log(row) if key in e]
        curve = ", ".join(f"{step}: {loss:.4f}" for step, loss in evals) or "–"
        steps = max((step for step, _ in evals), default="–")
        lines.append(f"| {row['task']}/{row['model']} | {steps} | {curve} | {run_time(row):.0f} |")
    return lines + [""]


def settings_line(rows: list[dict]) -> str:
    students = [r for r in rows if r["role"] == "student"]
    scales = sorted({r.get("scale", "full") for r in rows})
    overrides = sorted({json.dumps(r.get("overrides", {}), sort_keys=True) for r in students if r["group"] == "main"})
    workers = sorted({r.get("workers", 1) for r in rows})
    return (
        f"Scale: {', '.join(scales)}; runs at a time: {', '.join(map(str, workers))} (threads shared out); per-run "
        f"overrides of the recipes (main grid): {'; '.join(overrides) or 'none'}."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_file", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--title", default="Results")
    parser.add_argument("--notes", type=Path, help="a hand-written discussion appended to the report")
    args = parser.parse_args(argv)
    global RESULTS_FILE
    RESULTS_FILE = args.results_file
    rows = load(args.results_file)
    args.out.mkdir(parents=True, exist_ok=True)
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    main_rows = [r for r in rows if r["group"] not in ("ablation", "diagnosis") and r["role"] in ("teacher", "student")]
    text, macros = table(main_rows, models)
    hardware = sorted({r["hardware"] for r in rows})
    lines = [
        f"# {args.title}",
        "",
        f"Generated by `python experiments/report.py {args.results_file}` from the results file that "
        "`experiments/reproduce.py` wrote; no number here is typed by hand.",
        "",
        f"Hardware: {'; '.join(hardware) or 'n/a'}. {settings_line(rows)}",
        "",
        "## Scores (dev sets; mean ± std over seeds; IMDB: test set)",
        "",
        "\n".join(f"- `{m}`: {MODEL_TEXT[m]}" for m in models),
        "",
        text,
        "",
        "## Inhibitor against dot-product student, same recipe",
        "",
    ]
    for dot, inh, goal in PAIRS:
        lines += gap_section(main_rows, dot, inh, goal)
    lines += variants_section(
        rows,
        "ablation",
        "Ablations (inhibitor student, one seed): the plain conversion, and after the attention transfer",
    )
    plain = [r for r in rows if not r["model"].startswith("at-")]
    transferred = [r for r in rows if r["group"] != "diagnosis" or r["model"].startswith("at-")]
    lines += variants_section(
        plain, "diagnosis", "Diagnosis: what closes the gap (inhibitor student, task-specific distillation, one seed)"
    )
    lines += variants_section(
        transferred,
        "diagnosis",
        "Diagnosis after the attention transfer: variants of `at-inhibitor` (first seed; a variant run on several seeds "
        "gets its paired gaps below)",
    )
    seeds = defaultdict(set)
    for r in rows:
        if r["group"] == "diagnosis":
            seeds[r["model"]].add(r["seed"])
    seeded = sorted(model for model, found in seeds.items() if len(found) > 1)
    scored = [r for r in rows if r["role"] in ("teacher", "student")]
    for model in seeded:  # a variant run on several seeds: its paired gaps, like the main comparison's
        for dot in ("at-dot", "ts-dot", base_model(model)):  # the last: what the one change did, seed by seed
            lines += gap_section(scored, dot, model, goal=False)
    lines += general_section(rows)
    lines += ["## Comparison with DistilBERT's published scores (Sanh et al. 2019, GLUE dev; IMDB test)", ""]
    tasks = [t for t in tasks_of(main_rows) if t in PAPER_DISTILBERT]
    lines += ["| model | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    lines.append("| DistilBERT (paper) | " + " | ".join(f"{PAPER_DISTILBERT[t]}" for t in tasks) + " |")
    for model in models:
        cells = [[score(r) for r in main_rows if r["task"] == t and r["model"] == model] for t in tasks]
        if any(cells):
            lines.append(f"| {model} (ours) | " + " | ".join(mean_std(c) for c in cells) + " |")
    lines += ["", "## Training time per run", "", *time_table(rows), ""]
    plot_scores(main_rows, models, args.out / "results_scores.png")
    lines += ["## Plots", "", "![scores](results_scores.png)", ""]
    if plot_curves(main_rows, args.out / "results_curves.png"):
        lines += ["![training curves](results_curves.png)", ""]
    if args.notes:
        lines += [args.notes.read_text().strip(), ""]
    (args.out / "results.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'results.md'}")


def variants_section(rows: list[dict], group: str, title: str) -> list[str]:
    """Runs that each change one thing against their base model of the same seed (`base_model`), next to the bases."""
    variants = [r for r in rows if r["group"] == group]
    if not variants:
        return []
    first_seed = min(r["seed"] for r in variants)  # one seed, paired: a variant on several seeds gets gap sections
    variants = [r for r in variants if r["seed"] == first_seed]
    cells = {(r["task"], r["seed"]) for r in variants}
    bases = list(dict.fromkeys(["ts-dot", *(base_model(r["model"]) for r in variants)]))
    if "at-inhibitor" in bases:
        bases.insert(1, "at-dot")
    base = [r for r in rows if r["model"] in bases and (r["task"], r["seed"]) in cells and r["group"] == "main"]
    names = sorted({r["model"] for r in variants}, key=[r["model"] for r in variants].index)
    text, _ = table(variants + base, [*bases, *names])
    changes = "; ".join(dict.fromkeys(f"`{r['model']}`: {json.dumps(diff(r, rows))}" for r in variants))
    return [
        f"## {title}",
        "",
        f"Each changes one thing against its base model (`{'`, `'.join(bases[1:])}`) of the same seed: {changes}",
        "",
        text,
        "",
    ]


def base_model(model: str) -> str:
    """The run a variant changes one thing of: `at-inhibitor-<x>` -> `at-inhibitor`; plain variants -> `ts-inhibitor`."""
    return next((b for b in ("at-inhibitor", "at-dot") if model.startswith(b + "-")), "ts-inhibitor")


def diff(row: dict, rows: list[dict]) -> dict:
    """What a variant changes against its base run of the same task and seed: overrides, and the initialisation."""
    base = next(
        (
            r
            for r in rows
            if r["model"] == base_model(row["model"]) and (r["task"], r["seed"]) == (row["task"], row["seed"])
        ),
        {},
    )
    base_overrides = base.get("overrides", {})
    changed = {k: v for k, v in row.get("overrides", {}).items() if base_overrides.get(k) != v}
    if base and row.get("init") != base.get("init"):
        changed["init"] = row["init"]
    return changed


if __name__ == "__main__":
    main()

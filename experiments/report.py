"""Turn the results files written by `experiments/reproduce.py` into docs/results.md and PNG plots.

    python experiments/report.py results/protocol-cpu.jsonl --first_version results/protocol-cpu-v1.jsonl \
        --earlier results/grid-cpu.jsonl --out docs --notes docs/results_notes.md

The report leads with the protocol's identical-recipe comparison (docs/protocol.md): per task and on the macro, the
mean paired difference inhibitor − dot-product over seeds with a 95% t-interval, and the protocol's verdict rule
applied mechanically (`verdict`). `--first_version` adds the protocol's superseded first version (a dated change in
docs/protocol.md) as such; `--earlier` adds the earlier small-scale grid (2,000 rows, choices made on dev) as
such, with no verdict. Every number comes from the results files (and the runs' log_history.jsonl for the curves);
`--notes` appends a hand-written discussion that quotes no number of its own. Task facts (metrics, names, published
scores, majority class) come from the task registry, `modeling_inhibidistilbert/tasks.py`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from reproduce import (  # next to this file
    PROTOCOL_BASELINE,
    PROTOCOL_COMMUNITY,
    PROTOCOL_CUT,
    PROTOCOL_PAIR,
    PROTOCOL_PAIR_SEEDS,
    PROTOCOL_TASKS,
    RECOMMENDED,
    TEACHER_MARGIN,
    build_protocol_grid,
    log_copy,
    read_rows,
    run_id_of,
    skipped_for_weak_teacher,
    task_registry,
    task_score,
    teacher_margin,
    weak_teacher_tasks,
)
from scipy import stats

REPO = Path(__file__).resolve().parents[1]  # run folders are recorded relative to it


METRICS, get_task = task_registry().METRICS, task_registry().get_task

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
PAIRS = (  # (dot, inhibitor, what the pair is) in the earlier grid; only the first is the identical recipe
    ("at-dot", "at-inhibitor", "the identical recipe"),
    ("at-dot", RECOMMENDED, "not the identical recipe: the inhibitor's per-head scalars at their own learning rate"),
    ("at-inhibitor", RECOMMENDED, "what the scalars' own learning rate does, seed by seed"),
    ("ts-dot", RECOMMENDED, "not the identical recipe: two attention-transfer stages the dot-product student lacks"),
    ("ts-dot", "at-inhibitor", "not the identical recipe: two attention-transfer stages the dot-product student lacks"),
    ("ts-dot", "ts-inhibitor", "the identical recipe, without attention transfer"),
    ("ta-dot", "ta-inhibitor", "the identical recipe, task-agnostic then task distillation"),
    ("student-dot", "student-at-inhibitor", "quick job; not the identical recipe"),
    ("student-dot", "student-inhibitor", "quick job; the identical recipe"),
)
MODEL_TEXT = {
    "teacher": "teacher: MiniLM fine-tuned (dot product)",
    "ts-dot": "dot-product student, task-specific distillation",
    "at-dot": "dot-product student: attention transfer to the task teacher's attention, then task-specific distillation",
    "at-inhibitor": "inhibitor student: attention transfer (to MiniLM's attention, then to the task teacher's), then "
    "task-specific distillation",
    RECOMMENDED: "inhibitor student, the earlier grid's headline (chosen on dev): `at-inhibitor` with the per-head scalars at their own "
    "learning rate (1e-2)",
    "gt-inhibitor": "inhibitor student: attention transfer to MiniLM's attention only, then task-specific distillation",
    "ts-inhibitor": "inhibitor student, plain conversion then task-specific distillation",
    "ta-dot": "dot-product student, task-agnostic then task distillation",
    "ta-inhibitor": "inhibitor student, task-agnostic then task distillation",
    "student-dot": "dot-product student (quick)",
    "student-at-inhibitor": "inhibitor student after attention transfer (quick)",
    "student-inhibitor": "inhibitor student, plain conversion (quick)",
}
GOAL_MACRO_GAP, GOAL_TASK_GAP = 1.0, 3.0  # the protocol's verdict rule (docs/protocol.md)
CONFIDENCE = 0.95


score = task_score  # GLUE's task score, x100 (reproduce.py)


def selection_score(row: dict) -> float:
    """The score every choice is made on: GLUE's task score on the held-out training rows (`heldout_*`, the protocol's
    runs), else (the earlier grid, which chose on dev) the dev score."""
    keys = [f"heldout_{m}" for m in get_task(row["task"]).metrics]
    if all(k in row["metrics"] for k in keys):
        return 100 * statistics.mean(row["metrics"][k] for k in keys)
    return score(row)


def hardware_label(row: dict) -> str:
    """The machine a row ran on; rows written before the CPU's model name was recorded say only `CPU (...)`."""
    label = row["hardware"]
    return "CPU, model not recorded" + label[len("CPU") :] if label.startswith("CPU (") else label


def machines(rows: list[dict]) -> str:
    """Every machine the rows ran on, one label each."""
    return "; ".join(sorted({hardware_label(r) for r in rows})) or "n/a"


def score_label(task: str) -> str:
    """The column label of a task score: `mrpc (acc./F1)`."""
    return f"{task} ({'/'.join(METRICS[m].short_name for m in get_task(task).metrics)})"


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided t-interval (NaN bounds when fewer than two values, or no spread to estimate)."""

    mean: float
    low: float
    high: float
    n: int
    df: float

    def text(self, digits: int = 2) -> str:
        if math.isnan(self.low):
            return f"{self.mean:+.{digits}f} (no interval: n={self.n})"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t interval over independent values (here: paired differences, one per seed)."""
    n = len(values)
    mean = statistics.mean(values)
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, 0.0)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, float(n - 1))


def macro_interval(gaps: dict[str, list[float]], confidence: float = CONFIDENCE) -> Interval:
    """The macro gap (mean over tasks of each task's mean paired difference) with a t-interval.

    Tasks are independent and have their own seed counts, so the macro's variance is sum_t s_t^2 / n_t / K^2, with
    Welch-Satterthwaite degrees of freedom; a task with one seed leaves the interval undefined.
    """
    tasks = list(gaps)
    mean = statistics.mean(statistics.mean(gaps[t]) for t in tasks)
    n = min(len(gaps[t]) for t in tasks)
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, 0.0)
    parts = [statistics.variance(gaps[t]) / len(gaps[t]) for t in tasks]
    variance = sum(parts) / len(tasks) ** 2
    if variance == 0:
        return Interval(mean, mean, mean, n, math.inf)
    df = sum(parts) ** 2 / sum(p**2 / (len(gaps[t]) - 1) for p, t in zip(parts, tasks))
    half = stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(variance)
    return Interval(mean, mean - half, mean + half, n, df)


def verdict(task_intervals: dict[str, Interval], macro: Interval) -> tuple[str, str]:
    """The protocol's rule, mechanically: "shown" only if the macro interval lies within [-1, +1] and no task's interval
    lies wholly below -3; "not shown" if the macro interval lies wholly outside [-1, +1]; else "inconclusive".
    Returns (verdict, the reason in words)."""
    if math.isnan(macro.low):
        return "inconclusive", f"no macro interval (a task has {macro.n} seed)"
    inside = -GOAL_MACRO_GAP <= macro.low and macro.high <= GOAL_MACRO_GAP
    below = [t for t, i in task_intervals.items() if not math.isnan(i.high) and i.high < -GOAL_TASK_GAP]
    where = f"macro {macro.text()}"
    if inside and not below:
        return (
            "shown",
            f"{where} lies within [-{GOAL_MACRO_GAP:g}, +{GOAL_MACRO_GAP:g}] and no task lies wholly below -{GOAL_TASK_GAP:g}",
        )
    if macro.high < -GOAL_MACRO_GAP or macro.low > GOAL_MACRO_GAP:
        return "not shown", f"{where} lies wholly outside [-{GOAL_MACRO_GAP:g}, +{GOAL_MACRO_GAP:g}]"
    if below:
        return (
            "inconclusive",
            f"{where} lies within the band, but {', '.join(below)} lie wholly below -{GOAL_TASK_GAP:g}",
        )
    return "inconclusive", f"{where} overlaps the edge of [-{GOAL_MACRO_GAP:g}, +{GOAL_MACRO_GAP:g}]"


def mean_std(values: list[float], digits: int = 1) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def load(path: Path) -> list[dict]:
    """The rows of the results file; of a run recorded twice (rebuilt after its folder was lost) the last one counts."""
    rows = read_rows(path)
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
        "| model | " + " | ".join(score_label(t) for t in tasks) + " | macro |",
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


def gap_section(rows: list[dict], dot: str, inh: str, what: str = "") -> list[str]:
    """Paired differences of one pair of the earlier grid: per task and macro, with 95% t-intervals; no verdict."""
    gaps = paired_gaps(rows, dot, inh)
    if not gaps:
        return []
    tasks = [t for t in tasks_of(rows) if t in gaps]
    lines = [
        f"### {inh} − {dot}" + (f" ({what})" if what else ""),
        "",
        "Points; mean paired difference over seeds [95% t-interval], n seeds.",
        "",
        "| " + " | ".join(tasks) + " | macro |",
        "|---" * (len(tasks) + 1) + "|",
    ]
    cells = [t_interval(gaps[t]).text() + (f" (n={len(gaps[t])})" if len(gaps[t]) > 1 else "") for t in tasks]
    lines += ["| " + " | ".join(cells) + f" | {macro_interval(gaps).text()} |", ""]
    return lines


def teacher_check(rows: list[dict], task: str) -> tuple[bool | None, str]:
    """Whether the task's teacher beats its majority class by the protocol's margin (None: no teacher row or no
    majority score in the registry) and the text for the table."""
    checks = [c for r in rows if r["task"] == task and r["role"] == "teacher" and (c := teacher_margin(r))]
    if not checks:
        return None, "–"
    best, majority = max(checks)
    ok = best >= majority + TEACHER_MARGIN
    return ok, f"{best:.1f} vs {majority:.1f}: {'in the macro' if ok else 'left out of the macro'}"


def metric_table(rows: list[dict], models: list[str], tasks: list[str]) -> list[str]:
    """Every GLUE metric of every task (x100; mean ± std over seeds, n), then the registry's published scores in the
    column of the metric they are (a score whose metric the source does not name is listed below the table)."""
    columns = [(t, m) for t in tasks for m in get_task(t).metrics]
    lines = [
        "| model | " + " | ".join(f"{t} {METRICS[m].short_name}" for t, m in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for model in models:
        cells = []
        for task, metric in columns:
            values = [100 * r["metrics"][f"eval_{metric}"] for r in rows if r["task"] == task and r["model"] == model]
            cells.append(f"{mean_std(values)} (n={len(values)})" if values else "–")
        if any(c != "–" for c in cells):
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    published, unnamed = defaultdict(dict), []
    for task in tasks:
        for entry in get_task(task).published:
            if entry.metric is None:
                unnamed.append(f"{entry.model} on {task}: {entry.value} ({entry.note}; {entry.source})")
            else:
                published[entry.model][(task, entry.metric)] = entry
    sources, notes = [], []
    for model, cells in published.items():
        lines.append(f"| {model} (published) | " + " | ".join(
            f"{cells[c].value}" if c in cells else "–" for c in columns) + " |")  # fmt: skip
        sources += sorted({f"{model}: {e.source}" for e in cells.values()})
        notes += [f"{model} on {t}: {e.note}" for (t, _), e in cells.items() if e.note]
    lines += ["", *(f"- Source, {s}." for s in dict.fromkeys(sources)), *(f"- Note, {n}." for n in notes)]
    lines += [f"- Not placed in a column (metric not named by the source): {u}." for u in unnamed]
    return lines + [""]


def protocol_section(rows: list[dict], results_file: Path) -> list[str]:
    """The protocol's headline: the identical-recipe pair, its paired differences with intervals, and the verdict."""
    dot, inh = PROTOCOL_PAIR
    lines = [f"## The identical-recipe comparison: `{inh}` against `{dot}` (protocol)", ""]
    scored = [r for r in rows if r["role"] in ("teacher", "student")]
    if rows and not scored:
        return lines + [
            f"No teacher or student of the protocol has finished yet ({len(rows)} finished runs in `{results_file}`: "
            f"{', '.join(sorted(r['run_id'] for r in rows))}): no comparison and no verdict. Until the grid has run, "
            "this project makes no claim about how close the inhibitor student comes to the dot-product student.",
            "",
        ]
    if not scored:
        return lines + [
            f"The protocol grid (docs/protocol.md) has not run yet: `{results_file}` holds no finished run. It needs "
            "the training engine of the one-place redesign and about the CPU time the protocol estimates. Until it "
            "has run, this project makes no claim about how close the inhibitor student comes to the dot-product "
            "student.",
            "",
        ]
    community = [r for r in rows if r["role"] == "community"]
    tasks = tasks_of(scored + community)
    models = ["teacher", dot, inh, PROTOCOL_BASELINE, *PROTOCOL_COMMUNITY]
    subsets = sorted({f"{r['task']} ({r['metrics']['eval_samples']} of {get_task(r['task']).eval_size} rows)"
                      for r in scored + community if r["metrics"].get("eval_samples", get_task(r["task"]).eval_size)
                      != get_task(r["task"]).eval_size})  # fmt: skip
    if subsets:
        lines += [f"**Evaluated on a subset, not the full split:** {', '.join(subsets)}.", ""]
    lines += [
        f"Both students go through the identical pipeline (docs/protocol.md); `{PROTOCOL_BASELINE}` (plain task "
        "distillation of MiniLM) is a second baseline, and the `ft-*` rows are plain `transformers.Trainer` "
        "fine-tunes (no teacher). Every choice was made on the held-out part of the training set; the dev set (IMDB: "
        "the test set) was evaluated once per final model. The `at-dot` side has no first attention-transfer stage "
        "(its attention already is MiniLM's) and no per-head scalars to train.",
        "",
        "### Scores (x100, main evaluation split; mean ± std over seeds)",
        "",
        *metric_table(scored + community, models, tasks),
        "### Paired differences and the verdict",
        "",
        f"Per task: GLUE's task score (the mean of the task's metrics), `{inh}` − `{dot}` of the same seed, mean over "
        f"seeds with a {CONFIDENCE:.0%} t-interval. Macro: the mean of the tasks' mean differences, t-interval with "
        "Welch-Satterthwaite degrees of freedom, over the tasks whose teacher beats the majority class by "
        f"{TEACHER_MARGIN:g} points and whose pair has at least two seeds (one seed has no interval: shown apart).",
        "",
    ]
    gaps = paired_gaps(scored, dot, inh)
    if gaps:
        lines += [
            "| task | seeds | teacher vs majority class (STS-B: a constant prediction) | mean difference [95% interval] |",
            "|---|---|---|---|",
        ]
    else:
        lines.append(f"No seed of any task has both `{dot}` and `{inh}` yet.")
    intervals = {t: t_interval(g) for t, g in gaps.items()}
    in_macro = {}
    for task in [t for t in tasks if t in gaps]:
        ok, text = teacher_check(scored, task)
        in_macro[task] = ok is not False and len(gaps[task]) >= 2
        if len(gaps[task]) < 2:
            text = text.replace(": in the macro", "") + ("; " if ok is False else ": ") + "one seed, not in the macro"
        lines.append(f"| {task} | {len(gaps[task])} | {text} | {intervals[task].text()} |")
    lines += ["", still_improving_line(scored + community, models)]
    weak = weak_teacher_tasks({r["run_id"]: r for r in scored})  # their pair runs on its first seed only
    missing = unfinished_pairs(gaps, {**PROTOCOL_PAIR_SEEDS, **PROTOCOL_CUT, **{t: 1 for t in weak}})
    lines += ["", progress_line(rows, weak)]
    counted = {t: gaps[t] for t in gaps if in_macro.get(t)}
    if not counted:
        lines += ["", "No task has a paired difference that counts in the macro yet: no verdict.", ""]
    else:
        macro = macro_interval(counted)
        word, reason = verdict({t: intervals[t] for t in counted}, macro)
        lines += ["", f"Macro over {', '.join(counted)}: {macro.text()}.", ""]
        if missing:
            lines.append(
                f"**Interim: the grid is unfinished** (pair seeds still to run: {missing}). The rule applied to the "
                f'runs so far reads "{word}" ({reason}); it is not the protocol\'s answer until every task has its '
                "seeds."
            )
        else:
            lines.append(
                f"**Verdict (the protocol's rule): inhibitor within {GOAL_MACRO_GAP:g} point of the dot-product "
                f"student: {word}** ({reason})."
            )
        lines.append("")
    lines += teacher_builds(results_file)
    ft_dot, ft_inh = PROTOCOL_COMMUNITY
    lines += gap_section(
        community,
        ft_dot,
        ft_inh,
        "the community row: plain `transformers.Trainer` fine-tuning of "
        "MiniLM and of the general-purpose inhibitor encoder, the same recipe, no teacher; no verdict",
    )
    for stage in sorted({r["group"] for r in rows if r["group"].startswith("stage-")}):
        lines += stage_section(rows, stage)
    return lines + exports_block(results_file)


def teacher_builds(results_file: Path) -> list[str]:
    """Tasks whose teacher was built more than once (rebuilt after its folder was lost): each build's dev score and
    hardware, and which seeds' students distilled from it (a student distils from the last build recorded before it;
    `reproduce.py: one_teacher_build` keeps a task and seed on one build)."""
    raw = read_rows(results_file)
    last = {row["run_id"]: index for index, row in enumerate(raw)}  # the row that counts
    lines = []
    for task in tasks_of(raw):
        builds = [i for i, row in enumerate(raw) if row["task"] == task and row["role"] == "teacher"]
        if len(builds) < 2:
            continue
        seeds = defaultdict(set)
        for index, row in enumerate(raw):
            if row["task"] == task and row["role"] == "student" and last[row["run_id"]] == index:
                seeds[sum(b < index for b in builds)].add(row["seed"])
        parts = [f"build {n} ({'counts' if n == len(builds) else 'superseded'}): dev {score(raw[b]):.1f}, "
                 f"{hardware_label(raw[b]).split(' (')[0]}, students of seeds "
                 f"{', '.join(map(str, sorted(seeds[n]))) or 'none'}" for n, b in enumerate(builds, 1)]  # fmt: skip
        lines.append(f"- {task}: teacher built {len(builds)} times; {'; '.join(parts)}.")
    if not lines:
        return []
    return ["**Teacher builds** (a teacher is rebuilt when its folder was lost; a task and seed distil from one "
            "build, docs/protocol.md):", "", *lines, ""]  # fmt: skip


def exports_block(results_file: Path) -> list[str]:
    """experiments/export_best.py --evaluate's output kept next to the results file: the exported folders rescored
    by experiments/evaluate_folder.py in a fresh process."""
    exports = results_file.with_name(f"{results_file.stem}-exports.txt")
    if not exports.is_file():
        return []
    return ["### The exported Hub folders, rescored by `experiments/evaluate_folder.py` in a fresh process",
            "", "```", *exports.read_text().strip().splitlines(), "```", ""]  # fmt: skip


def first_version_section(rows: list[dict], results_file: Path) -> list[str]:
    """The protocol's first version: its runs, kept in their own results file when a dated change superseded them
    (docs/protocol.md, Changes), with their held-out curves and the logged stages that ran on it; no verdict."""
    dot, inh = PROTOCOL_PAIR
    scored = [r for r in rows if r["role"] in ("teacher", "student")]
    lines = [
        f"## The protocol's first version, superseded (`{results_file}`; no verdict)",
        "",
        "The runs of the protocol as first written, before the dated change in docs/protocol.md that superseded them, "
        "kept as they ran. Their teachers and transfers are their own, so no run here pairs with a run above.",
        "",
        "### Scores (x100, main evaluation split; mean ± std over seeds)",
        "",
        *metric_table(scored, ["teacher", dot, inh, PROTOCOL_BASELINE], tasks_of(scored)),
        "| task | seed | model | epochs run | held-out curve | dev (GLUE task score) |",
        "|---|---|---|---|---|---|",
    ]
    protocol = [r for r in scored if r["group"] == "protocol"]
    for row in sorted(protocol, key=lambda r: (r["task"], r["seed"], r["model"])):
        lines.append(curve_row(row))
    lines += ["", still_improving_line(protocol, ["teacher", dot, inh, PROTOCOL_BASELINE]), ""]
    lines += gap_section(protocol, dot, inh, "the identical-recipe pair of the first version")
    for stage in sorted({r["group"] for r in rows if r["group"].startswith("stage-")}):
        lines += stage_section(rows, stage)
    return lines + exports_block(results_file)


def curve_row(row: dict) -> str:
    """One run's line of a curve table: task, seed, model, epochs run, held-out curve (x100), dev task score."""
    curve = ", ".join(f"{100 * v:.1f}" for v in heldout_curve(row)) or "–"
    epochs = row["metrics"].get("epoch")
    return (f"| {row['task']} | {row['seed']} | {row['model']} | {'–' if epochs is None else f'{float(epochs):g}'} | "
            f"{curve} | {score(row):.1f} |")  # fmt: skip


def progress_line(rows: list[dict], weak: dict[str, str]) -> str:
    """How much of the grid that runs (the protocol's cut, less what the weak-teacher rule drops) has finished, and the
    training time its finished runs recorded."""
    planned = {run_id_of(r) for r in build_protocol_grid(list(PROTOCOL_TASKS), pair_seeds=PROTOCOL_CUT)
               if not skipped_for_weak_teacher(r, weak)}  # fmt: skip
    finished = [r for r in rows if r["run_id"] in planned]
    hours = sum(run_time(r) for r in finished) / 3600
    return (f"Grid progress: {len(finished)} of the {len(planned)} runs of the grid that runs have finished "
            f"({hours:.1f} hours of training recorded, one thread per run).")  # fmt: skip


def heldout_curve(row: dict) -> list[float]:
    """The run's selection score (held-out rows, main metric) at each logged evaluation."""
    metric = get_task(row["task"]).main_metric
    return [e[f"heldout_{metric}"] for e in read_log(row) if f"heldout_{metric}" in e]


def stage_section(rows: list[dict], stage: str) -> list[str]:
    """A logged stage (experiments/reproduce.py PROTOCOL_STAGES): its runs beside the protocol's runs of the same task
    and seed, with their held-out curves; its own results, not the protocol's answer, and no verdict."""
    runs = [r for r in rows if r["group"] == stage]
    keys = {(r["task"], r["seed"]) for r in runs}
    reference = [r for r in rows if r["model"] in PROTOCOL_PAIR and (r["task"], r["seed"]) in keys]
    lines = [
        f"### Logged stage `{stage.removeprefix('stage-')}` (its own results, not the protocol's answer; no verdict)",
        "",
        "Both students of the pair with one change (experiments/reproduce.py `PROTOCOL_STAGES`), beside the protocol's "
        "runs of the same task and seed. Held-out curve: the selection score (main metric, x100) at each evaluation.",
        "",
        "| task | seed | model | epochs run | held-out curve | dev (GLUE task score) |",
        "|---|---|---|---|---|---|",
    ]
    for row in sorted(reference + runs, key=lambda r: (r["task"], r["seed"], r["group"] != "protocol", r["model"])):
        lines.append(curve_row(row))
    return lines + [""]


def improving_at_end(row: dict) -> bool | None:
    """Whether the run's selection score (held-out rows) was best at its last evaluation, i.e. still improving when
    training ended (None: fewer than two evaluations logged). `finetune_trainer.py` logs its held-out evaluations
    during training as Trainer's `eval_*` and the final ones after `train_runtime`."""
    if row["role"] == "community":
        events, metric = read_log(row), get_task(row["task"]).main_metric
        end = next((i for i, e in enumerate(events) if "train_runtime" in e), len(events))
        values = [e[f"eval_{metric}"] for e in events[:end] if f"eval_{metric}" in e]
    else:
        values = heldout_curve(row)
    if len(values) < 2:
        return None
    return values[-1] > max(values[:-1])


def still_improving_line(rows: list[dict], models: list[str]) -> str:
    """How many runs per model ended while their held-out score was still improving (protocol: read from the logs)."""
    parts = []
    for model in models:
        flags = [improving_at_end(r) for r in rows if r["model"] == model]
        known = [f for f in flags if f is not None]
        if known:
            parts.append(f"`{model}` {sum(known)} of {len(known)}")
    if not parts:
        return "Held-out curves: no run has two logged held-out evaluations yet."
    return (
        "Runs whose held-out score was best at their last evaluation (still improving when the epochs ran out): "
        + ", ".join(parts)
        + "."
    )


def unfinished_pairs(gaps: dict[str, list[float]], planned: dict[str, int] | None = None) -> str:
    """The tasks whose pair has fewer finished seeds than the protocol plans ("" when none), e.g. "mrpc 3 of 5".
    A task of the plan with no finished pair yet counts too; the plan is the grid that runs (the protocol's cut)."""
    planned = planned or {**PROTOCOL_PAIR_SEEDS, **PROTOCOL_CUT}
    short = [f"{t} {len(gaps.get(t, []))} of {n}" for t, n in planned.items() if len(gaps.get(t, [])) < n]
    return ", ".join(short)


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
        kept = log_copy(RESULTS_FILE, row["run_id"])
        log = kept if kept.is_file() else log
    return read_rows(log) if log.exists() else []


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
            keys = get_task(task).metric_keys  # the dev evaluations logged during training (earlier grid)
            evals = [
                (e["step"], 100 * statistics.mean(e[k] for k in keys)) for e in events if all(k in e for k in keys)
            ]
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
        eval_ax.set_ylabel(f"dev {score_label(task)} x100")
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
        "### Task-agnostic runs on the data sets' training texts (no labels)",
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


EARLIER_CAVEAT = (
    "The earlier small-scale experiment, kept as it ran: the first 2,000 training rows of each task (all of CoLA), "
    "2 epochs, IMDB at 128 tokens on 2,000 training and 2,000 test reviews (a subset, not the 25,000-review test "
    "set), one teacher and one set of attention transfers (seed 42) shared by every seed, three seeds on the small "
    "tasks and one on SST-2 and IMDB. Every choice (the checkpoint, the scalar learning rate of "
    f"`{RECOMMENDED}`) was made on the same dev sets that are scored here, and the teachers trail published "
    "MiniLM-class scores by far. The identical-recipe pair is `at-dot` against `at-inhibitor` (MRPC and STS-B "
    "only); the other pairs differ in more than the attention, as their headings say. No verdict is drawn from it."
)


def earlier_section(rows: list[dict], results_file: Path, out: Path) -> list[str]:
    """The earlier grid (results/grid-cpu.jsonl) with its caveat, its pairs described, no verdict."""
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    main_rows = [r for r in rows if r["group"] not in ("ablation", "diagnosis") and r["role"] in ("teacher", "student")]
    text, _ = table(main_rows, models)
    lines = [
        f"## Earlier small-scale experiment (`{results_file}`)",
        "",
        EARLIER_CAVEAT,
        "",
        f"Hardware: {machines(rows)}. {settings_line(rows)}",
        "",
        "### Scores (dev sets, GLUE's task score x100; mean ± std over seeds; IMDB: a 2,000-review test subset)",
        "",
        "\n".join(f"- `{m}`: {MODEL_TEXT[m]}" for m in models),
        "",
        text,
        "",
        "### Paired differences, inhibitor − dot-product (earlier experiment)",
        "",
    ]
    for dot, inh, what in PAIRS:
        lines += gap_section(main_rows, dot, inh, what)
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
            lines += gap_section(scored, dot, model, "a diagnosis variant")
    lines += general_section(rows)
    lines += [
        "### Every metric, next to published scores (earlier experiment; not comparable in scale: 2,000 rows)",
        "",
        *metric_table(main_rows, models, tasks_of(main_rows)),
        "### Training time per run (earlier experiment)",
        "",
        *time_table(rows),
        "",
    ]
    plot_scores(main_rows, models, out / "results_scores.png")
    lines += ["### Plots (earlier experiment)", "", "![scores](results_scores.png)", ""]
    if plot_curves(main_rows, out / "results_curves.png"):
        lines += ["![training curves](results_curves.png)", ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_file", type=Path, help="the protocol's results file (it may not exist yet)")
    parser.add_argument("--earlier", type=Path, help="the earlier small-scale grid's results file, reported as such")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--title", default="Results")
    parser.add_argument("--notes", type=Path, help="a hand-written discussion appended to the report")
    parser.add_argument(
        "--first_version",
        type=Path,
        help="the rows of the protocol's first version, superseded by a dated change (docs/protocol.md), reported apart",
    )
    args = parser.parse_args(argv)
    global RESULTS_FILE
    rows = load(args.results_file) if args.results_file.is_file() else []
    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python experiments/report.py", str(args.results_file)] + (
        ["--first_version", str(args.first_version)] if args.first_version else []) + (
        ["--earlier", str(args.earlier)] if args.earlier else []))  # fmt: skip
    lines = [
        f"# {args.title}",
        "",
        f"Generated by `{command}` from the results files that `experiments/reproduce.py` wrote; no number here is "
        "typed by hand. The protocol (models, selection split, seeds, statistics, verdict rule) is docs/protocol.md.",
        "",
    ]
    if rows:
        lines += [f"Hardware: {machines(rows)}.", ""]
    RESULTS_FILE = args.results_file
    lines += protocol_section(rows, args.results_file)
    if args.first_version:
        RESULTS_FILE = args.first_version  # its runs' curves are kept next to its own results file
        lines += first_version_section(load(args.first_version), args.first_version)
    if args.earlier:
        RESULTS_FILE = args.earlier  # the earlier runs' curves are kept next to their results file
        lines += earlier_section(load(args.earlier), args.earlier, args.out)
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
        f"### {title}",
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

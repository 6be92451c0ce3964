"""Save the best inhibitor student of every task as a Hub-ready folder with a model card built from its results.

    python experiments/export_best.py results/grid-cpu.jsonl --out outputs/hub --owner OWNER

For each task, the inhibitor student (any recipe or seed, including the diagnosis variants that try to close the
gap; the ablations, which remove a part on purpose, excluded) with the best selection score in the results file (the
held-out score of the protocol's runs; the earlier grid, which has none, falls back to dev), among the runs whose
folder is here, is copied (its files, not its checkpoints) to `OUT/inhibidistilbert-minilm-<task>/`; the
general-purpose encoder (the protocol's general attention transfer, seed 42, which the `ft-general-inhibitor` rows
fine-tune) to `OUT/inhibidistilbert-minilm-general/`.
The folder is checked as `hub_upload.py` would check it, and its README.md is the model card that `hub_upload.py`
generates, with the teacher and the dot-product student of the same seed and recipe in the comparison table. The
command that publishes it is printed; nothing is uploaded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # run folders are recorded relative to it

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import reproduce  # noqa: E402
from report import load, score, selection_score  # noqa: E402

from modeling_inhibidistilbert.hub import CODE_FILES, PACKAGE_DIR, publish  # noqa: E402
from modeling_inhibidistilbert.tasks import get_task  # noqa: E402


def has_model(row: dict) -> bool:
    return reproduce.has_model(REPO / row["output_dir"])


def best_students(rows: list[dict], available=lambda row: True) -> dict[str, dict]:
    """task -> the best inhibitor student run (no ablation) among the `available` ones (ties: the first)."""
    best: dict[str, dict] = {}
    for row in rows:
        if row["role"] != "student" or row["attention"] != "inhibitor" or row["group"] == "ablation":
            continue
        if not available(row):
            continue
        if row["task"] not in best or selection_score(row) > selection_score(best[row["task"]]):
            best[row["task"]] = row
    return best


def scores(run: dict) -> str:
    """The score the choice was made on and the reported one, named: `selection 82.9, validation 80.7`."""
    return f"selection {selection_score(run):.1f}, {get_task(run['task']).eval_splits['']} {score(run):.1f}"


def partner(rows: list[dict], run: dict, model: str) -> dict | None:
    """The run named `model` of the same task and seed (the teacher: of the same task, seed 42 if it has several)."""
    same = [r for r in rows if r["task"] == run["task"] and r["model"] == model]
    exact = [r for r in same if r["seed"] == run["seed"]]
    return (exact or same or [None])[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_file", type=Path)
    parser.add_argument("--out", type=Path, default=Path("outputs/hub"))
    parser.add_argument("--owner", default="OWNER", help="Hub namespace for the repo ids in the cards")
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="rescore every exported task folder with experiments/evaluate_folder.py in a fresh process and keep its "
        "output next to the results file (RESULTS-exports.txt, which experiments/report.py shows)",
    )
    parser.add_argument("--data_dir", default=None, help="for --evaluate: GLUE-layout data folder")
    args = parser.parse_args(argv)
    evaluations = []
    rows = load(args.results_file)
    overall, exportable = best_students(rows), best_students(rows, has_model)
    for task in sorted(set(overall) - set(exportable)):
        print(f"{task}: no inhibitor student of the results file has its model folder here; nothing exported")
    for task, run in sorted(exportable.items()):
        if overall[task] is not run:  # a fresh checkout has the results file, not the weights
            print(
                f"{task}: the best run, {overall[task]['run_id']} ({scores(overall[task])}), has no model folder "
                f"here (rebuild it: experiments/reproduce.py ... --rebuild_missing); exporting the best one that has"
            )
        target = copy_folder(REPO / run["output_dir"], args.out / f"inhibidistilbert-minilm-{task}")
        teacher = partner(rows, run, "teacher")
        # the dot-product student of the same recipe (at-dot for at-inhibitor), else the plain task-specific one
        same_recipe = partner(rows, run, run["model"].replace("inhibitor", "dot"))
        baseline = same_recipe or partner(rows, run, "ts-dot")
        extra = {}  # the comparison rows of the card come from the results file (run folders may be gone)
        for key, partner_run in (("teacher_results", teacher), ("baseline_results", baseline)):
            if partner_run:
                path = args.out / f"{target.name}.{key}.json"  # next to the folder, not uploaded with it
                path.write_text(json.dumps(partner_run["metrics"], indent=2))
                extra[key] = str(path)
        print(f"{task}: {run['run_id']} ({scores(run)}) -> {target}")
        write_card(target, f"{args.owner}/{target.name}", extra)
        if args.evaluate:
            evaluations.append(evaluate(target, task, run, args.data_dir))
    if args.evaluate:
        log = exports_log(args.results_file)
        log.write_text("\n".join(evaluations) + "\n")
        print(f"evaluate_folder.py outputs -> {log}")
    general = [r for r in rows if r["run_id"] == GENERAL_ENCODER and has_model(r)]
    if general:  # the general-purpose encoder that the community rows fine-tune (no task head, no task score)
        target = copy_folder(REPO / general[0]["output_dir"], args.out / "inhibidistilbert-minilm-general")
        print(f"general: {GENERAL_ENCODER} -> {target}")
        write_card(target, f"{args.owner}/{target.name}", {})


def exports_log(results_file: Path) -> Path:
    return results_file.with_name(f"{results_file.stem}-exports.txt")


def evaluate(folder: Path, task: str, run: dict, data_dir: str | None) -> str:
    """evaluate_folder.py's output for one exported folder (a fresh process), with the command and its exit status."""
    command = [sys.executable, str(REPO / "experiments" / "evaluate_folder.py"), str(folder), "--task", task]
    command += ["--data_dir", data_dir] if data_dir else []
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    shown = " ".join(["python experiments/evaluate_folder.py", folder.name, "--task", task])
    output = "\n".join(line for line in done.stdout.splitlines() if line.strip())
    print(output)
    return f"$ {shown}   # {run['run_id']}\n{output}\nexit status {done.returncode}\n"


GENERAL_ENCODER = "general/transfer-inhibitor/seed42"  # the protocol's ft-general-inhibitor rows start from it


def copy_folder(source: Path, target: Path) -> Path:
    """The run's files (not its checkpoints) and the installed package's model code, in a fresh folder."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file():
            shutil.copy2(path, target / path.name)
    # The installed package's code, which reads every config an earlier revision wrote (options added since
    # default to the earlier behaviour); the checks below load and run the model with it.
    for name in CODE_FILES:
        shutil.copy2(PACKAGE_DIR / name, target / name)
    return target


def write_card(target: Path, repo_id: str, extra: dict) -> None:
    """The upload's own checks and model card (nothing uploaded), and the command that publishes the folder."""
    result = publish(target, repo_id, dry_run=True, **extra)
    (target / "README.md").write_text(str(result.card), encoding="utf-8")
    flags = " ".join(f"--{k} {v}" for k, v in extra.items())
    print(f"    python hub_upload.py {target} --repo_id {repo_id} {flags}")


if __name__ == "__main__":
    main()

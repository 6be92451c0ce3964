"""The experiment driver builds the grid the results issue asks for, and the report reads only the results file."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import report  # noqa: E402
import reproduce  # noqa: E402


def test_grid_has_three_seeds_on_small_tasks_one_on_large_and_ablations():
    runs = reproduce.build_grid(["sst2", "cola", "mrpc", "rte", "stsb", "imdb"], [1, 2, 3], quick=False)
    students = [r for r in runs if r.role == "student" and r.group == "main"]
    for task in ("cola", "mrpc", "rte", "stsb"):
        for name in (
            "ts-dot",
            "at-dot",
            reproduce.RECOMMENDED,
            "at-inhibitor",
            "ts-inhibitor",
            "ta-dot",
            "ta-inhibitor",
        ):
            assert sorted(r.seed for r in students if r.task == task and r.name == name) == [1, 2, 3]
    for task in ("sst2", "imdb"):
        assert len([r for r in students if r.task == task and r.name == "ts-inhibitor"]) == 1
    ablations = {(r.task, r.name) for r in runs if r.group == "ablation"}
    assert {t for t, _ in ablations} == {"sst2", "mrpc"} and len(ablations) == 2 * len(reproduce.ABLATIONS)
    assert {r.name for r in runs if r.role == "general"} == {"general-dot", "general-inhibitor", "transfer-inhibitor"}
    # the scalars' own learning rate wherever an inhibitor student distils after a conversion step (a no-op for dot)
    for run in runs:
        if run.name in (reproduce.RECOMMENDED, "ta-dot", "ta-inhibitor", "general-dot", "general-inhibitor"):
            assert run.args["scalar_learning_rate"] == "1e-2", run
        elif run.name in ("ts-dot", "ts-inhibitor", "at-inhibitor", "at-dot"):
            assert "scalar_learning_rate" not in run.args, run
    teachers = sorted((r.task, r.seed) for r in runs if r.role == "teacher")  # at full scale, one per seed
    for attention in ("inhibitor", "dot"):  # one attention transfer per teacher and student attention
        transfers = [(r.task, r.seed) for r in runs if r.role == "transfer" and r.attention == attention]
        assert sorted(transfers) == teachers


def test_commands_use_recipes_and_identical_flags_for_both_students(tmp_path):
    runs = reproduce.build_grid(["mrpc"], [7], quick=False)
    by_name = {r.name: r for r in runs if r.task == "mrpc"}
    dot = reproduce.command_for(by_name["ts-dot"], tmp_path, "/data", "/minilm")
    inh = reproduce.command_for(by_name["ts-inhibitor"], tmp_path, "/data", "/minilm")
    assert "configuration/mrpc.yaml" in " ".join(dot)
    differing = [(a, b) for a, b in zip(dot, inh) if a != b]
    assert differing == [
        ("dot", "inhibitor"),
        (str(tmp_path / "mrpc/ts-dot-seed7"), str(tmp_path / "mrpc/ts-inhibitor-seed7")),
    ]
    ta = reproduce.command_for(by_name["ta-inhibitor"], tmp_path, "/data", "/minilm")
    assert str(tmp_path / "general/general-inhibitor-seed42") in ta
    # the attention-transferred student: ts-dot's recipe and flags, started from the task's attention transfer, which
    # fits the general transfer's attention to the task teacher's on the task's texts
    at = reproduce.command_for(by_name["at-inhibitor"], tmp_path, "/data", "/minilm")
    task_transfer_dir = str(tmp_path / "mrpc/transfer-inhibitor-seed7")
    assert [(a, b) for a, b in zip(dot, at) if a != b] == [
        ("/minilm", task_transfer_dir),
        ("dot", "inhibitor"),
        (str(tmp_path / "mrpc/ts-dot-seed7"), str(tmp_path / "mrpc/at-inhibitor-seed7")),
    ]
    assert reproduce.dependencies(by_name["at-inhibitor"], runs) == [
        "mrpc/teacher/seed7",
        "mrpc/transfer-inhibitor/seed7",
    ]
    task_transfer = next(r for r in runs if r.name == "transfer-inhibitor" and r.task == "mrpc")
    assert reproduce.dependencies(task_transfer, runs) == ["mrpc/teacher/seed7", "general/transfer-inhibitor/seed42"]
    command = reproduce.command_for(task_transfer, tmp_path, "/data", "/minilm")
    assert "configuration/attention_transfer.yaml" in " ".join(command)
    value = dict(zip(command, command[1:]))
    assert value["--teacher_name_or_path"] == str(tmp_path / "mrpc/teacher-seed7")
    assert value["--model_name_or_path"] == str(tmp_path / "general/transfer-inhibitor-seed42")
    assert value["--text_sources"] == "mrpc" and value["--output_dir"] == task_transfer_dir
    # the dot-product side: its task transfer starts from MiniLM itself (its attention already is MiniLM's)
    at_dot = reproduce.command_for(by_name["at-dot"], tmp_path, "/data", "/minilm")
    assert [(a, b) for a, b in zip(at, at_dot) if a != b] == [
        (task_transfer_dir, str(tmp_path / "mrpc/transfer-dot-seed7")),
        ("inhibitor", "dot"),
        (str(tmp_path / "mrpc/at-inhibitor-seed7"), str(tmp_path / "mrpc/at-dot-seed7")),
    ]
    dot_transfer = next(r for r in runs if r.name == "transfer-dot" and r.task == "mrpc")
    assert reproduce.dependencies(dot_transfer, runs) == ["mrpc/teacher/seed7"]
    value = dict(zip(*[iter(reproduce.command_for(dot_transfer, tmp_path, "/data", "/minilm")[2:])] * 2))
    assert value["--model_name_or_path"] == "/minilm" and value["--student_attention"] == "dot"
    # the first stage alone (diagnosis): the general transfer's checkpoint, no task stage
    gt = reproduce.command_for(by_name["gt-inhibitor"], tmp_path, "/data", "/minilm")
    assert str(tmp_path / "general/transfer-inhibitor-seed42") in gt
    assert reproduce.dependencies(by_name["gt-inhibitor"], runs) == [
        "mrpc/teacher/seed7",
        "general/transfer-inhibitor/seed42",
    ]
    general = next(r for r in runs if r.name == "transfer-inhibitor" and r.task == "general")
    value = dict(zip(*[iter(reproduce.command_for(general, tmp_path, "/data", "/minilm")[2:])] * 2))
    assert value["--teacher_name_or_path"] == value["--model_name_or_path"] == "/minilm"


def test_report_tables_come_from_the_results_file(tmp_path):
    pytest.importorskip("matplotlib")
    rows = []
    for seed, (t, d, i) in enumerate([(0.90, 0.85, 0.84), (0.92, 0.86, 0.83)]):
        for model, acc in (("teacher", t), ("ts-dot", d), ("ts-inhibitor", i)):
            rows.append(
                {
                    "run_id": f"mrpc/{model}/seed{seed}",
                    "task": "mrpc",
                    "model": model,
                    "role": "student",
                    "attention": "dot",
                    "seed": seed,
                    "group": "main",
                    "metrics": {"eval_accuracy": acc, "eval_f1": acc},
                    "wall_time_s": 10.0,
                    "hardware": "test",
                    "output_dir": str(tmp_path),
                }
            )
    general_dir = tmp_path / "general"
    general_dir.mkdir()
    log = [{"step": 10, "loss": 0.5}, {"step": 20, "eval_loss_hidden": 0.25}, {"step": 40, "eval_loss_hidden": 0.125}]
    (general_dir / "log_history.jsonl").write_text("\n".join(json.dumps(e) for e in log))
    rows.append(
        {
            "run_id": "general/general-inhibitor/seed42",
            "task": "general",
            "model": "general-inhibitor",
            "role": "general",
            "attention": "inhibitor",
            "seed": 42,
            "group": "main",
            "metrics": {"eval_loss_hidden": 0.125},
            "wall_time_s": 30.0,
            "hardware": "test",
            "output_dir": str(general_dir),
        }
    )
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(json.dumps(r) for r in rows))
    report.main([str(tmp_path / "no-protocol-rows.jsonl"), "--earlier", str(results), "--out", str(tmp_path / "docs")])
    text = (tmp_path / "docs/results.md").read_text()
    assert "| ts-inhibitor | 83.5 ± 0.7 | 83.5 |" in text
    assert "| -2.00 [-14.71, +10.71] (n=2) | -2.00 [-14.71, +10.71] |" in text  # t(1) = 12.706, sd 1.414
    assert (
        "| general/general-inhibitor | 40 | 20: 0.2500, 40: 0.1250 | 30 |" in text
    )  # the task-agnostic student's curve
    assert (tmp_path / "docs/results_scores.png").stat().st_size > 0


def test_cpu_scale_keeps_three_student_seeds_and_runs_teachers_first():
    runs = reproduce.build_grid(["sst2", "mrpc", "imdb"], [1, 2, 3], scale="cpu")
    students = [r for r in runs if r.role == "student" and r.group == "main"]
    assert sorted(r.seed for r in students if r.task == "mrpc" and r.name == "ts-inhibitor") == [1, 2, 3]
    assert [r.seed for r in runs if r.role == "teacher" and r.task == "mrpc"] == [1]  # one teacher per task
    assert all(r.teacher_seed == 1 for r in students)
    order = [reproduce.run_priority(r) for r in runs]
    assert order == sorted(order) and {runs[0].role, runs[1].role} == {"teacher", "general"}  # and the transfer
    names = [r.name for r in runs]
    assert names.index("general-inhibitor") < names.index("ta-inhibitor")  # the task-agnostic init exists first
    imdb = next(r for r in students if r.task == "imdb")
    assert imdb.args["max_eval_samples"] == 2000 and imdb.args["max_train_samples"] == 2000
    # every student of a task distils from the one teacher, with identical flags for both attentions
    by = {(r.name, r.seed): r for r in runs if r.task == "mrpc"}
    dot = reproduce.command_for(by[("ts-dot", 3)], Path("/o"), None, "/minilm")
    inh = reproduce.command_for(by[("ts-inhibitor", 3)], Path("/o"), None, "/minilm")
    assert "/o/mrpc/teacher-seed1" in dot
    assert [(a, b) for a, b in zip(dot, inh) if a != b] == [
        ("dot", "inhibitor"),
        ("/o/mrpc/ts-dot-seed3", "/o/mrpc/ts-inhibitor-seed3"),
    ]


def test_export_best_writes_a_checked_hub_folder_with_a_card_from_the_results(tmp_path, capsys):
    import export_best
    from transformers import BertTokenizer

    from modeling_inhibidistilbert import (
        InhibiDistilBertConfig,
        InhibiDistilBertForSequenceClassification,
        InhibiDistilBertModel,
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    rows = []
    for model, attention, acc in (
        ("teacher", "dot", 0.9),
        ("ts-dot", "dot", 0.85),
        ("ts-inhibitor", "inhibitor", 0.84),
    ):
        for seed, shift in ((1, 0.0), (2, 0.02)):
            folder = tmp_path / "runs" / f"{model}-{seed}"
            metrics = {"task_name": "sst2", "eval_accuracy": acc + shift, "eval_samples": 8}
            if attention == "inhibitor":
                config = InhibiDistilBertConfig(
                    vocab_size=len(words), dim=16, hidden_dim=32, n_layers=1, n_heads=2, max_position_embeddings=16,
                    id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
                )  # fmt: skip
                InhibiDistilBertForSequenceClassification(config).save_pretrained(folder)
                BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder)
                (folder / "checkpoints").mkdir()
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "all_results.json").write_text(json.dumps(metrics))
            rows.append(
                {"run_id": f"sst2/{model}/seed{seed}", "task": "sst2", "model": model, "role": "student" if model != "teacher" else "teacher",
                 "attention": attention, "seed": seed, "group": "main", "metrics": metrics, "output_dir": str(folder)}
            )  # fmt: skip
    gone = {**rows[-1], "run_id": "sst2/ts-inhibitor/seed3", "seed": 3, "output_dir": str(tmp_path / "gone")}
    rows.append({**gone, "metrics": {**gone["metrics"], "eval_accuracy": 0.95}})  # the best, but its weights are gone
    for folder in (tmp_path / "runs").glob("t*-[12]"):  # teacher-*, ts-dot-*: the card's comparison rows come
        if "inhibitor" not in folder.name:  # from the results file
            (folder / "all_results.json").unlink()
    general = tmp_path / "runs" / "general"  # the general-purpose encoder (the protocol's general transfer, seed 42)
    InhibiDistilBertModel(config).save_pretrained(general)
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(general)
    (general / "all_results.json").write_text(json.dumps({"task_name": "general", "eval_loss": 0.4}))
    (general / "training_args.json").write_text(json.dumps({"task_name": "general", "objective": "attention_transfer"}))
    rows.append({"run_id": export_best.GENERAL_ENCODER, "task": "general", "model": "transfer-inhibitor",
                 "role": "general", "attention": "inhibitor", "seed": 42, "group": "protocol",
                 "metrics": {"task_name": "general"}, "output_dir": str(general)})  # fmt: skip
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(json.dumps(r) for r in rows))
    export_best.main([str(results), "--out", str(tmp_path / "hub"), "--owner", "me"])
    encoder = tmp_path / "hub" / "inhibidistilbert-minilm-general"
    assert (encoder / "model.safetensors").is_file() and (encoder / "modeling_inhibidistilbert.py").is_file()
    assert "a general-purpose encoder" in (encoder / "README.md").read_text()
    assert (
        "sst2/ts-inhibitor/seed3 (selection 95.0, validation 95.0), has no model folder here" in capsys.readouterr().out
    )
    out = tmp_path / "hub" / "inhibidistilbert-minilm-sst2"
    assert (out / "model.safetensors").is_file() and not (out / "checkpoints").exists()
    card = (out / "README.md").read_text()
    assert "me/inhibidistilbert-minilm-sst2" in card and "inhibitor-attention" in card
    assert "0.86" in card  # the best inhibitor run is seed 2 (0.84 + 0.02), its own metrics in the card
    assert "0.87" in card and "0.92" in card  # the dot-product student and the teacher of that seed


def test_run_logs_are_kept_next_to_the_results_file_and_the_report_reads_them(tmp_path):
    run_folder = tmp_path / "outputs" / "mrpc" / "ts-dot-seed42"
    run_folder.mkdir(parents=True)
    events = [{"step": 10, "loss": 0.5}, {"step": 20, "eval_accuracy": 0.75}]
    (run_folder / "log_history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    results_file = tmp_path / "results" / "grid.jsonl"
    row = {"run_id": "mrpc/ts-dot/seed42", "output_dir": str(run_folder)}
    reproduce.sync_logs(results_file, {row["run_id"]: row})
    assert (tmp_path / "results" / "grid-logs" / "mrpc__ts-dot__seed42.jsonl").is_file()
    for path in run_folder.iterdir():  # the run folders (weights) are not committed; the report needs none
        path.unlink()
    report.RESULTS_FILE = results_file
    try:
        assert report.read_log(row) == events
    finally:
        report.RESULTS_FILE = None


def test_quick_job_runs_both_transfer_stages_before_the_transferred_student():
    runs = reproduce.build_grid(["sst2"], [42], quick=True)
    ids = [reproduce.run_id_of(r) for r in runs]
    assert ids == [
        "sst2/teacher/seed42",
        "general/transfer-inhibitor/seed42",
        "sst2/transfer-inhibitor/seed42",
        "sst2/student-dot/seed42",
        "sst2/student-inhibitor/seed42",
        "sst2/student-at-inhibitor/seed42",
    ]
    for index, run in enumerate(runs):  # every input is built earlier in the list
        assert all(dep in ids[:index] for dep in reproduce.dependencies(run, runs)), run
    by_id = dict(zip(ids, runs))
    assert by_id["general/transfer-inhibitor/seed42"].args["text_sources"] == "sst2"
    assert by_id["sst2/transfer-inhibitor/seed42"].args["text_sources"] == "sst2:2000"
    # the transferred student is the recommended recipe: the per-head scalars at their own learning rate
    assert by_id["sst2/student-at-inhibitor/seed42"].args["scalar_learning_rate"] == "1e-2"
    assert "scalar_learning_rate" not in by_id["sst2/student-inhibitor/seed42"].args
    assert reproduce.dependencies(by_id["sst2/student-at-inhibitor/seed42"], runs) == [
        "sst2/teacher/seed42",
        "sst2/transfer-inhibitor/seed42",
    ]


def test_missing_model_folders_of_finished_inputs_are_rebuilt_first(tmp_path):
    """A fresh checkout keeps the results file but not the weights: the inputs a pending run needs run again."""
    runs = reproduce.build_grid(["stsb"], [42, 43], scale="cpu")
    by_id = {reproduce.run_id_of(r): r for r in runs}
    done = {
        i: {} for i in ("stsb/teacher/seed42", "general/transfer-inhibitor/seed42", "stsb/transfer-inhibitor/seed42")
    }
    pending = [by_id["stsb/at-inhibitor/seed43"], by_id["stsb/ts-dot/seed43"]]
    teacher = reproduce.output_dir(tmp_path, by_id["stsb/teacher/seed42"])
    teacher.mkdir(parents=True)
    (teacher / "config.json").write_text("{}")  # the teacher's folder is there; both transfers' are not
    rebuild = {reproduce.run_id_of(r) for r in reproduce.missing_inputs(pending, runs, done, tmp_path)}
    assert rebuild == {"stsb/transfer-inhibitor/seed42", "general/transfer-inhibitor/seed42"}
    (teacher / "config.json").unlink()
    rebuild = {reproduce.run_id_of(r) for r in reproduce.missing_inputs(pending[1:], runs, done, tmp_path)}
    assert rebuild == {"stsb/teacher/seed42"}  # ts-dot needs only its teacher
    assert reproduce.missing_inputs([], runs, done, tmp_path) == []  # nothing pending: nothing rebuilt


def test_a_rebuilt_teacher_reruns_what_distilled_from_its_earlier_build_where_the_seed_has_runs_to_do(tmp_path):
    """A pair never distils from two builds of its teacher: seed 43 (its pair unfinished) runs again; seed 42 (all
    done) keeps its build; rows that do not depend on the teacher (ft-*, the general transfer) stay."""
    grid = reproduce.build_protocol_grid(["stsb"], pair_seeds={"stsb": 2})
    by_id = {reproduce.run_id_of(r): r for r in grid}
    pending = [by_id["stsb/at-inhibitor/seed43"]]
    done = {i: {} for i in by_id if i not in {"stsb/at-inhibitor/seed43"}}
    rebuilt = reproduce.missing_inputs(pending, grid, done, tmp_path)  # no folder is there: all inputs again
    assert {reproduce.run_id_of(r) for r in rebuilt} == {
        "stsb/teacher/seed42", "stsb/transfer-inhibitor/seed43", "general/transfer-inhibitor/seed43"}  # fmt: skip
    again = {reproduce.run_id_of(r) for r in reproduce.one_teacher_build(pending, grid, done, rebuilt)}
    assert again == {"stsb/transfer-dot/seed43", "stsb/at-dot/seed43", "stsb/transfer-inhibitor/seed43"}
    assert reproduce.one_teacher_build(pending, grid, done, rebuilt[1:]) == []  # the teacher not rebuilt: nothing


def test_the_driver_reruns_a_split_pair_after_a_fresh_checkout(tmp_path, capsys, monkeypatch):
    grid = reproduce.build_protocol_grid(["stsb"], pair_seeds={"stsb": 1})
    finished = [r for r in grid if r.name not in ("at-inhibitor", "ts-dot")]
    results = tmp_path / "protocol.jsonl"
    results.write_text(
        "".join(
            json.dumps(_row(r.task, r.name, r.seed, {"eval_pearson": 0.8, "eval_spearmanr": 0.8}, role=r.role)) + "\n"
            for r in finished
        )
    )
    monkeypatch.setattr(reproduce, "minilm_folder", lambda: "/minilm")
    argv = ["--protocol", "--tasks", "stsb", "--protocol_seeds", "stsb=1", "--dry_run", "--results_file",
            str(results), "--output_root", str(tmp_path)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["reproduce.py", *argv])
    reproduce.main()
    out = capsys.readouterr().out
    assert "stsb/teacher/seed42: in the results file, but its model folder is missing: run again" in out
    assert "stsb/at-dot/seed42: distilled from an earlier build of its teacher" in out
    assert "stsb/ft-minilm/seed42: done, skipped" in out


def test_variants_of_the_transferred_student_and_their_report(tmp_path):
    runs = reproduce.build_grid(["stsb"], [42, 43], diagnose=True, scale="cpu")
    by_id = {reproduce.run_id_of(r): r for r in runs}
    variants = [r for r in runs if r.group == "diagnosis" and r.name.startswith("at-")]
    assert {r.name for r in variants} == {f"at-inhibitor-{n}" for n in reproduce.AT_DIAGNOSIS} | {"at-dot-4-epochs"}
    long = by_id["stsb/at-inhibitor-long-transfer/seed42"]
    assert reproduce.dependencies(long, runs) == ["stsb/teacher/seed42", "stsb/transfer-inhibitor-long/seed42"]
    command = reproduce.command_for(by_id["stsb/transfer-inhibitor-long/seed42"], tmp_path, None, "/minilm")
    assert command[command.index("--max_train_steps") + 1] == str(reproduce.LONG_TRANSFER_STEPS)
    assert str(tmp_path / "general/transfer-inhibitor-seed42") in command  # from the general transfer, as the 300
    hidden = reproduce.command_for(by_id["stsb/at-inhibitor-hidden-cosine/seed42"], tmp_path, None, "/minilm")
    assert str(tmp_path / "stsb/transfer-inhibitor-seed42") in hidden and "--hidden_loss" in hidden
    # the architecture ablations of at-inhibitor: their own task transfer, from the shared general transfer
    unsigned = by_id["stsb/at-inhibitor-unsigned/seed42"]
    assert unsigned.group == "ablation" and unsigned.args["inhibitor_signed"] == "false"
    assert reproduce.dependencies(unsigned, runs) == ["stsb/teacher/seed42", "stsb/transfer-inhibitor-unsigned/seed42"]
    command = reproduce.command_for(by_id["stsb/transfer-inhibitor-unsigned/seed42"], tmp_path, None, "/minilm")
    assert command[command.index("--inhibitor_signed") + 1] == "false"
    assert str(tmp_path / "general/transfer-inhibitor-seed42") in command
    # the variants come right after the task's main cells, before its other seeds
    assert reproduce.run_priority(long) < reproduce.run_priority(by_id["stsb/at-inhibitor/seed43"])

    def row(model, seed, spearman, init="minilm", overrides=None, group="main"):
        return {
            "run_id": f"stsb/{model}/seed{seed}", "task": "stsb", "model": model, "role": "student",
            "attention": "dot" if "dot" in model else "inhibitor", "seed": seed, "group": group, "init": init,
            "overrides": overrides or {}, "metrics": {"eval_spearmanr": spearman, "eval_pearson": spearman},
            "wall_time_s": 1.0,
            "hardware": "test", "output_dir": str(tmp_path),
        }  # fmt: skip

    rows = [
        row("ts-dot", 42, 0.5),  # recorded twice (rebuilt): the last row counts
        row("ts-dot", 42, 0.7),
        row("at-dot", 42, 0.74, init="transfer-dot"),
        row("at-inhibitor", 42, 0.64, init="transfer-inhibitor"),
        row("at-inhibitor-long-transfer", 42, 0.69, init="transfer-inhibitor-long", group="diagnosis"),
        row("at-inhibitor-hidden-cosine", 42, 0.66, "transfer-inhibitor", {"hidden_loss": "cosine"}, "diagnosis"),
        row("at-dot", 43, 0.72, init="transfer-dot"),
        row("at-inhibitor-hidden-cosine", 43, 0.68, "transfer-inhibitor", {"hidden_loss": "cosine"}, "diagnosis"),
        {**row("transfer-inhibitor", 42, 0.0), "role": "transfer", "metrics": {"eval_loss": 0.07}},  # no score
        # the recommended recipe: recorded as a diagnosis variant before it became the main comparison's student
        row(reproduce.RECOMMENDED, 42, 0.69, "transfer-inhibitor", {"scalar_learning_rate": "1e-2"}, "diagnosis"),
        row(reproduce.RECOMMENDED, 43, 0.71, "transfer-inhibitor", {"scalar_learning_rate": "1e-2"}),
        row("ts-dot", 43, 0.68),
    ]  # fmt: skip
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(json.dumps(r) for r in rows))
    report.main([str(tmp_path / "no-protocol-rows.jsonl"), "--earlier", str(results), "--out", str(tmp_path / "docs")])
    text = (tmp_path / "docs/results.md").read_text()
    assert "| ts-dot | 69.0 ± 1.4 | 69.0 |" in text
    # the earlier grid: every pair says what it is; the first is the identical recipe; no verdict anywhere
    main, section = text.split("Diagnosis after the attention transfer")
    assert f"| {reproduce.RECOMMENDED} | 70.0 ± 1.4 | 70.0 |" in main
    pairs = main.split("### Paired differences, inhibitor − dot-product (earlier experiment)")[1].split("### ")
    assert pairs[1].startswith("at-inhibitor − at-dot (the identical recipe)")
    old_headline = next(p for p in pairs if p.startswith(f"{reproduce.RECOMMENDED} − ts-dot"))
    assert "not the identical recipe" in old_headline and "| +1.00 [-24.41, +26.41] (n=2) |" in old_headline
    assert "goal" not in text.lower() and "verdict (the protocol" not in text.lower()
    assert f"`{reproduce.RECOMMENDED}`" not in section  # no longer a variant
    assert '`at-inhibitor-long-transfer`: {"init": "transfer-inhibitor-long"}' in section
    assert '`at-inhibitor-hidden-cosine`: {"hidden_loss": "cosine"}' in section
    assert "| at-inhibitor-long-transfer | 69.0 | 69.0 |" in section and "| at-dot | 74.0 | 74.0 |" in section
    # a variant on several seeds gets its paired gaps (no goal verdict: it is not the main comparison)
    gaps = section.split("### at-inhibitor-hidden-cosine − at-dot")[1].split("###")[0]
    assert "| -6.00 [-31.41, +19.41] (n=2) |" in gaps and "Goal" not in gaps


def test_rebuild_missing_reruns_finished_runs_whose_folder_is_gone(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results.jsonl"
    row = {"run_id": "sst2/teacher/seed42", "output_dir": str(tmp_path / "gone")}
    results.write_text(json.dumps(row) + "\n")
    monkeypatch.setattr(reproduce, "minilm_folder", lambda: "/minilm")
    argv = ["--scale", "cpu", "--tasks", "sst2", "--seeds", "42", "--models", "teacher", "--dry_run"]
    monkeypatch.setattr(
        sys, "argv", ["reproduce.py", *argv, "--results_file", str(results), "--output_root", str(tmp_path)]
    )
    reproduce.main()
    assert "sst2/teacher/seed42: done, skipped" in capsys.readouterr().out  # by default a finished run stays finished
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--rebuild_missing"])
    reproduce.main()
    out = capsys.readouterr().out
    assert "sst2/teacher/seed42: done, but its model folder is missing: run again" in out
    assert "run_glue_distill.py" in out and "--mode finetune" in out  # the teacher's command, printed by --dry_run


def _row(task, model, seed, metrics, role="student", attention="dot"):
    return {"run_id": f"{task}/{model}/seed{seed}", "task": task, "model": model, "role": role, "seed": seed,
            "attention": attention, "group": "protocol", "metrics": metrics, "wall_time_s": 1.0, "hardware": "test",
            "output_dir": "x"}  # fmt: skip


def test_t_interval_and_macro_interval_match_scipy():
    from scipy import stats

    values = [-0.5, 0.3, 0.1, -0.2, 0.4]
    interval = report.t_interval(values)
    low, high = stats.t.interval(0.95, 4, loc=sum(values) / 5, scale=stats.sem(values))
    assert interval.low == pytest.approx(low) and interval.high == pytest.approx(high) and interval.n == 5
    one = report.t_interval([1.5])
    assert one.mean == 1.5 and one.low != one.low  # NaN: no interval from one seed
    # equal seed counts and spreads: the macro's variance is the tasks' mean variance / K, df from Welch-Satterthwaite
    gaps = {"a": [0.0, 1.0, 2.0], "b": [1.0, 2.0, 3.0]}
    macro = report.macro_interval(gaps)
    assert macro.mean == pytest.approx(1.5) and macro.df == pytest.approx(4.0)
    half = stats.t.ppf(0.975, 4) * (2 * 1.0 / 3) ** 0.5 / 2
    assert (macro.low, macro.high) == pytest.approx((1.5 - half, 1.5 + half))
    assert report.macro_interval({"a": [0.0, 1.0], "b": [2.0]}).low != report.macro_interval({"a": [0.0, 1.0]}).low


def test_verdict_rule_each_outcome():
    I = report.Interval  # noqa: E741
    tight = {"cola": I(-0.2, -0.9, 0.5, 5, 4), "mrpc": I(0.1, -1.0, 1.2, 5, 4)}
    assert report.verdict(tight, I(-0.05, -0.6, 0.5, 5, 8))[0] == "shown"
    assert report.verdict(tight, I(-2.0, -2.8, -1.2, 5, 8))[0] == "not shown"
    assert report.verdict(tight, I(1.8, 1.2, 2.4, 5, 8))[0] == "not shown"  # ahead by more than a point
    assert report.verdict(tight, I(-0.8, -1.6, 0.0, 5, 8))[0] == "inconclusive"  # overlaps the edge
    one_bad = {**tight, "rte": I(-5.0, -7.0, -3.5, 5, 4)}  # a task wholly below -3 forbids "shown"
    word, reason = report.verdict(one_bad, I(-0.05, -0.6, 0.5, 5, 8))
    assert word == "inconclusive" and "rte" in reason
    assert report.verdict(tight, I(-0.05, float("nan"), float("nan"), 1, 0))[0] == "inconclusive"


def test_protocol_report_applies_the_rule_and_leaves_weak_teachers_out_of_the_macro(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "PROTOCOL_PAIR_SEEDS", {"mrpc": 3, "rte": 3})  # this test's grid is the whole plan
    monkeypatch.setattr(report, "PROTOCOL_CUT", {})
    rows = [
        _row("mrpc", "teacher", 42, {"eval_accuracy": 0.86, "eval_f1": 0.90}, role="teacher"),
        _row("rte", "teacher", 42, {"eval_accuracy": 0.55}, role="teacher"),  # majority class 52.7: not 5 points
    ]
    for seed, (dot, inh) in enumerate([(0.84, 0.835), (0.85, 0.845), (0.83, 0.83)], start=42):
        rows.append(_row("mrpc", "at-dot", seed, {"eval_accuracy": dot, "eval_f1": dot + 0.04}))
        rows.append(
            _row("mrpc", "at-inhibitor", seed, {"eval_accuracy": inh, "eval_f1": inh + 0.04}, attention="inhibitor")
        )
        rows.append(_row("rte", "at-dot", seed, {"eval_accuracy": 0.60}))
        rows.append(_row("rte", "at-inhibitor", seed, {"eval_accuracy": 0.50}, attention="inhibitor"))
    for seed, (minilm, inhibitor) in enumerate([(0.80, 0.70), (0.82, 0.74)], start=42):  # the community row
        rows.append(_row("mrpc", "ft-minilm", seed, {"eval_accuracy": minilm, "eval_f1": minilm}, role="community"))
        rows.append(_row("mrpc", "ft-general-inhibitor", seed, {"eval_accuracy": inhibitor, "eval_f1": inhibitor},
                         role="community", attention="inhibitor"))  # fmt: skip
    results = tmp_path / "protocol.jsonl"
    results.write_text("\n".join(json.dumps(r) for r in rows))
    report.main([str(results), "--out", str(tmp_path / "docs")])
    text = (tmp_path / "docs/results.md").read_text()
    assert text.index("## The identical-recipe comparison: `at-inhibitor` against `at-dot`") < text.index("Verdict")
    assert "| ft-general-inhibitor | 72.0 ± 2.8 (n=2) |" in text  # beside the pair, labelled, with no verdict
    community = text[text.index("### ft-general-inhibitor − ft-minilm") :]
    assert "| -9.00 [-21.71, +3.71] (n=2) |" in community and "Verdict" not in community  # t(1) = 12.706, se 1
    assert "| mrpc | 3 | 88.0 vs 74.8: in the macro | -0.33 [" in text  # GLUE's task score: mean of acc. and F1
    assert "| rte | 3 | 55.0 vs 52.7: left out of the macro | -10.00 [-10.00, -10.00] |" in text
    assert "Macro over mrpc: -0.33 [-1.05, +0.38]" in text  # t(2) = 4.303, sd 0.289, n 3
    assert "within 1 point of the dot-product student: inconclusive**" in text  # the interval crosses -1
    assert "| mrpc acc. | mrpc F1 |" in text.replace(" | rte acc.", "")  # every GLUE metric gets a column
    assert "goal met" not in text.lower() and "subset" not in text
    next(r for r in rows if r["run_id"] == "rte/at-inhibitor/seed44")["metrics"]["eval_samples"] = 100  # flagged
    results.write_text("\n".join(json.dumps(r) for r in rows))
    report.main([str(results), "--out", str(tmp_path / "docs")])
    assert (
        "Evaluated on a subset, not the full split:** rte (100 of 277 rows)"
        in (tmp_path / "docs/results.md").read_text()
    )
    # a task with one seed stays out of the macro; a plan with seeds still to run gives an interim reading only
    rows += [_row("imdb", "teacher", 42, {"eval_accuracy": 0.88}, role="teacher"),
             _row("imdb", "at-dot", 42, {"eval_accuracy": 0.86}),
             _row("imdb", "at-inhibitor", 42, {"eval_accuracy": 0.80}, attention="inhibitor")]  # fmt: skip
    monkeypatch.setattr(report, "PROTOCOL_PAIR_SEEDS", {"mrpc": 5, "rte": 3})
    monkeypatch.setattr(report, "PROTOCOL_CUT", {"imdb": 1})
    results.write_text("\n".join(json.dumps(r) for r in rows))
    report.main([str(results), "--out", str(tmp_path / "docs")])
    text = (tmp_path / "docs/results.md").read_text()
    assert "| imdb | 1 | 88.0 vs 50.0: one seed, not in the macro | -6.00" in text
    assert "Macro over mrpc: -0.33 [-1.05, +0.38]" in text
    assert "**Interim: the grid is unfinished** (pair seeds still to run: mrpc 3 of 5)" in text
    assert "Verdict (the protocol's rule)" not in text


def test_the_report_lists_a_rebuilt_teachers_builds_and_the_seeds_of_each(tmp_path):
    def teacher(pearson, hardware):
        return {**_row("stsb", "teacher", 42, {"eval_pearson": pearson, "eval_spearmanr": pearson}, role="teacher"),
                "hardware": f"{hardware} (avx2; 2 cores), torch"}  # fmt: skip

    student = _row("stsb", "at-dot", 42, {"eval_pearson": 0.8, "eval_spearmanr": 0.8})
    rows = [teacher(0.86, "AMD EPYC"), student, _row("stsb", "at-dot", 43, {}), teacher(0.87, "Intel Xeon"), student]
    results = tmp_path / "protocol.jsonl"
    results.write_text("\n".join(json.dumps(r) for r in rows))
    assert report.teacher_builds(results)[2] == (
        "- stsb: teacher built 2 times; build 1 (superseded): dev 86.0, AMD EPYC, students of seeds 43; "
        "build 2 (counts): dev 87.0, Intel Xeon, students of seeds 42."
    )
    results.write_text("\n".join(json.dumps(r) for r in rows[:3]))
    assert report.teacher_builds(results) == []  # built once: nothing to say


def test_rows_from_before_the_cpu_name_was_recorded_say_so():
    rows = [{"hardware": "CPU (2 cores), torch 2.13.0+cpu, x86_64"}, {"hardware": "AMD EPYC (avx2; 2 cores), torch"}]
    assert report.machines(rows) == (
        "AMD EPYC (avx2; 2 cores), torch; CPU, model not recorded (2 cores), torch 2.13.0+cpu, x86_64"
    )


def test_protocol_report_says_when_the_grid_has_not_run(tmp_path):
    earlier = tmp_path / "grid.jsonl"
    earlier.write_text(json.dumps(_row("sst2", "ts-dot", 42, {"eval_accuracy": 0.8})) + "\n")
    report.main([str(tmp_path / "absent.jsonl"), "--earlier", str(earlier), "--out", str(tmp_path / "docs")])
    text = (tmp_path / "docs/results.md").read_text()
    assert "has not run yet" in text and "## Earlier small-scale experiment" in text
    assert "goal met" not in text.lower() and "Verdict" not in text


def test_the_protocols_first_version_is_reported_apart_with_its_stages_and_exports(tmp_path):
    protocol, first = tmp_path / "protocol.jsonl", tmp_path / "protocol-v1.jsonl"
    protocol.write_text(json.dumps({**_row("general", "transfer-inhibitor", 42, {}), "role": "general"}) + "\n")
    rows = [_row("stsb", "teacher", 42, {"eval_pearson": 0.85, "eval_spearmanr": 0.85}, role="teacher"),
            _row("stsb", "at-dot", 42, {"eval_pearson": 0.84, "eval_spearmanr": 0.84}),
            _row("stsb", "at-inhibitor", 42, {"eval_pearson": 0.55, "eval_spearmanr": 0.55}),
            {**_row("stsb", "at-inhibitor-long", 42, {"eval_pearson": 0.82, "eval_spearmanr": 0.82}),
             "group": "stage-long"}]  # fmt: skip
    first.write_text("".join(json.dumps(r) + "\n" for r in rows))
    logs = tmp_path / "protocol-v1-logs"  # the curves kept next to the first version's own results file
    logs.mkdir()
    (logs / "stsb__at-inhibitor__seed42.jsonl").write_text(
        "".join(json.dumps({"heldout_spearmanr": v}) + "\n" for v in (0.3, 0.5, 0.58))
    )
    (tmp_path / "protocol-v1-exports.txt").write_text(
        "$ python experiments/evaluate_folder.py x --task stsb\nexit status 0\n"
    )
    report.main([str(protocol), "--first_version", str(first), "--out", str(tmp_path / "docs")])
    text = (tmp_path / "docs/results.md").read_text()
    head, tail = text.split("## The protocol's first version, superseded")
    assert "No teacher or student of the protocol has finished yet (1 finished runs" in head and "Verdict" not in text
    assert "| stsb | 42 | at-inhibitor | – | 30.0, 50.0, 58.0 | 55.0 |" in tail
    assert "| -29.00 (no interval: n=1) |" in tail  # the first version's pair, no verdict
    assert "Logged stage `long`" in tail and "| stsb | 42 | at-inhibitor-long |" in tail
    assert "exit status 0" in tail and "exit status 0" not in head


def test_protocol_grid_is_the_identical_recipe_seeded_per_seed(tmp_path):
    runs = reproduce.build_protocol_grid(["stsb", "rte", "sst2", "imdb"])
    ids = [reproduce.run_id_of(r) for r in runs]
    assert len(ids) == len(set(ids))
    pair = {(r.task, r.name): [] for r in runs}
    for r in runs:
        pair[(r.task, r.name)].append(r.seed)
    assert pair[("stsb", "at-dot")] == pair[("stsb", "at-inhibitor")] == [42, 43, 44, 45, 46]
    assert pair[("sst2", "at-inhibitor")] == pair[("imdb", "at-dot")] == [42, 43, 44]
    assert pair[("stsb", "ts-dot")] == pair[("imdb", "ts-dot")] == [42]  # the second baseline: one seed
    assert pair[("stsb", "ft-minilm")] == pair[("stsb", "ft-general-inhibitor")] == [42, 43, 44]
    assert pair[("general", "transfer-inhibitor")] == [42, 43, 44, 45, 46]  # the first stage, per seed
    assert pair[("stsb", "teacher")] == [42]
    by = {reproduce.run_id_of(r): r for r in runs}
    for seed in (42, 45):  # the two students of a seed: the same command but for the attention and its own stages
        dot = reproduce.command_for(by[f"stsb/at-dot/seed{seed}"], tmp_path, "/d", "/minilm")
        inh = reproduce.command_for(by[f"stsb/at-inhibitor/seed{seed}"], tmp_path, "/d", "/minilm")
        assert [(a, b) for a, b in zip(dot, inh) if a != b] == [
            (str(tmp_path / f"stsb/transfer-dot-seed{seed}"), str(tmp_path / f"stsb/transfer-inhibitor-seed{seed}")),
            ("dot", "inhibitor"),
            (str(tmp_path / f"stsb/at-dot-seed{seed}"), str(tmp_path / f"stsb/at-inhibitor-seed{seed}")),
        ]
        value = dict(zip(inh, inh[1:]))
        assert value["--selection_split"] == "heldout" and value["--teacher_name_or_path"].endswith("teacher-seed42")
        transfer = reproduce.command_for(by[f"stsb/transfer-inhibitor/seed{seed}"], tmp_path, "/d", "/minilm")
        value = dict(zip(transfer, transfer[1:]))
        assert value["--model_name_or_path"] == str(tmp_path / f"general/transfer-inhibitor-seed{seed}")
        assert value["--seed"] == str(seed) and value["--teacher_name_or_path"].endswith("stsb/teacher-seed42")
        assert reproduce.dependencies(by[f"stsb/at-inhibitor/seed{seed}"], runs) == [
            "stsb/teacher/seed42", f"stsb/transfer-inhibitor/seed{seed}"]  # fmt: skip
    imdb_command = reproduce.command_for(by["imdb/at-dot/seed42"], tmp_path, None, "/m")
    imdb = dict(zip(imdb_command, imdb_command[1:]))
    assert imdb["--max_seq_length"] == "256" and int(imdb["--max_train_samples"]) >= 5000
    assert "--max_eval_samples" not in imdb  # the full 25,000-review test set
    rte = reproduce.command_for(by["rte/teacher/seed42"], tmp_path, None, "/m")  # the intermediate task first
    assert str(tmp_path / "mrpc/teacher-seed42") in rte and "--ignore_mismatched_sizes" in rte
    community = reproduce.command_for(by["stsb/ft-general-inhibitor/seed43"], tmp_path, None, "/m")
    assert community[1].endswith("finetune_trainer.py") and community[2] == str(
        tmp_path / "general/transfer-inhibitor-seed42"
    )
    # the schedule (docs/protocol.md, Changes): teachers, transfers' students and ts-dot up to 8 epochs on the small
    # tasks with early stopping on the held-out rows, 3 on SST-2 and IMDB; the ft-* rows Trainer's default 3
    for r in runs:
        epochs = r.args.get("num_train_epochs")
        if r.role == "community" or r.task in ("sst2", "imdb") and r.role != "transfer":
            assert epochs == 3, reproduce.run_id_of(r)
        elif r.role in ("teacher", "student"):
            assert epochs == 8 and r.args["early_stopping_patience"] == 2, reproduce.run_id_of(r)
    assert reproduce.PROTOCOL_CUT == {"cola": 3, "mrpc": 3, "rte": 3, "stsb": 3, "imdb": 1}
    cut = reproduce.build_protocol_grid(["sst2"], pair_seeds={"sst2": 1})
    assert [r.seed for r in cut if r.name == "at-inhibitor"] == [42]
    # every stage of every model batches rows of similar length; IMDB runs after every other task's seeds
    assert all(r.args.get("group_by_length") is True for r in runs)
    assert all("--group_by_length" in reproduce.command_for(r, tmp_path, None, "/m") for r in runs)
    tasks_in_order = [r.task for r in runs if r.task != "general"]
    assert tasks_in_order.index("imdb") > max(i for i, t in enumerate(tasks_in_order) if t != "imdb")
    assert [r.seed for r in runs if r.task == "stsb" and r.name == "at-dot"] == [42, 43, 44, 45, 46]


def test_the_protocol_chooses_on_heldout_scores_and_falls_back_to_dev_for_the_earlier_grid():
    chosen_on_heldout = _row("sst2", "at-inhibitor", 42, {"eval_accuracy": 0.80, "heldout_accuracy": 0.90})
    best_on_dev = _row("sst2", "at-inhibitor", 43, {"eval_accuracy": 0.85, "heldout_accuracy": 0.88})
    assert report.selection_score(chosen_on_heldout) == pytest.approx(90.0)
    assert report.selection_score(_row("sst2", "ts-dot", 42, {"eval_accuracy": 0.8})) == pytest.approx(80.0)
    assert max([best_on_dev, chosen_on_heldout], key=report.selection_score) is chosen_on_heldout


def test_still_improving_reads_the_held_out_curve_of_each_kind_of_run(tmp_path):
    def run(name, role, events):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "log_history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
        return {"task": "sst2", "model": name, "role": role, "output_dir": str(folder), "run_id": f"sst2/{name}/seed42"}

    rising = run("at-dot", "student", [{"heldout_accuracy": 0.70}, {"loss": 0.3}, {"heldout_accuracy": 0.74}])
    flat = run("at-inhibitor", "student", [{"heldout_accuracy": 0.74}, {"heldout_accuracy": 0.74}])
    # Trainer's log: held-out evaluations named eval_* during training; after train_runtime, the final held-out and
    # the dev evaluations (not part of the curve)
    trainer = run("ft-minilm", "community", [{"eval_accuracy": 0.70}, {"eval_accuracy": 0.69}, {"train_runtime": 9},
                                             {"heldout_accuracy": 0.70}, {"eval_accuracy": 0.90}])  # fmt: skip
    assert [report.improving_at_end(r) for r in (rising, flat, trainer)] == [True, False, False]
    assert report.improving_at_end(run("teacher", "teacher", [{"heldout_accuracy": 0.7}])) is None
    line = report.still_improving_line([rising, flat, trainer], ["at-dot", "at-inhibitor", "ft-minilm", "ts-dot"])
    assert "`at-dot` 1 of 1, `at-inhibitor` 0 of 1, `ft-minilm` 0 of 1." in line


def test_a_logged_stage_reuses_the_protocols_inputs_and_is_reported_apart(tmp_path, monkeypatch):
    stage = {"tasks": ("stsb",), "seeds": (42,), "args": {"num_train_epochs": 12}}
    monkeypatch.setitem(reproduce.PROTOCOL_STAGES, "long", stage)
    runs = reproduce.build_protocol_stage("long")
    grid = reproduce.build_protocol_grid(["stsb"]) + runs
    assert [reproduce.run_id_of(r) for r in runs] == ["stsb/at-dot-long/seed42", "stsb/at-inhibitor-long/seed42"]
    for run in runs:  # the protocol's student but for the stage's change, from the protocol's teacher and transfer
        protocol = next(r for r in grid if r.group == "protocol" and r.name == run.name.removesuffix("-long")
                        and r.seed == run.seed)  # fmt: skip
        assert {k: v for k, v in run.args.items() if protocol.args.get(k) != v} == {"num_train_epochs": 12}
        assert reproduce.dependencies(run, grid) == reproduce.dependencies(protocol, grid)
    dot, inh = (reproduce.command_for(r, tmp_path, None, "/m") for r in runs)
    assert [(a, b) for a, b in zip(dot, inh) if a != b] == [
        (str(tmp_path / "stsb/transfer-dot-seed42"), str(tmp_path / "stsb/transfer-inhibitor-seed42")),
        ("dot", "inhibitor"),
        (str(tmp_path / "stsb/at-dot-long-seed42"), str(tmp_path / "stsb/at-inhibitor-long-seed42")),
    ]

    def row(model, group, pearson, curve):
        folder = tmp_path / model
        folder.mkdir()
        (folder / "log_history.jsonl").write_text("".join(json.dumps({"heldout_spearmanr": v}) + "\n" for v in curve))
        return {**_row("stsb", model, 42, {"eval_pearson": pearson, "eval_spearmanr": pearson, "epoch": len(curve)}),
                "group": group, "output_dir": str(folder)}  # fmt: skip

    rows = [row("at-dot", "protocol", 0.84, [0.82, 0.84, 0.84]), row("at-inhibitor", "protocol", 0.56, [0.3, 0.6]),
            row("at-inhibitor-long", "stage-long", 0.70, [0.3, 0.6, 0.7, 0.72])]  # fmt: skip
    text = "\n".join(report.stage_section(rows, "stage-long"))
    assert "Logged stage `long` (its own results, not the protocol's answer; no verdict)" in text
    assert "| stsb | 42 | at-inhibitor-long | 4 | 30.0, 60.0, 70.0, 72.0 | 70.0 |" in text
    assert "| stsb | 42 | at-dot | 3 | 82.0, 84.0, 84.0 | 84.0 |" in text  # the protocol's runs beside it


@pytest.mark.parametrize("accuracy, dropped", [(0.54, True), (0.70, False)])
def test_a_task_whose_teacher_misses_the_margin_runs_its_pair_on_the_first_seed_only(
    tmp_path, capsys, monkeypatch, accuracy, dropped
):
    teacher = tmp_path / "rte" / "teacher-seed42"  # finished, its model folder in place
    teacher.mkdir(parents=True)
    (teacher / "config.json").write_text("{}")
    row = {**_row("rte", "teacher", 42, {"eval_accuracy": accuracy}, role="teacher"), "output_dir": str(teacher)}
    results = tmp_path / "protocol.jsonl"
    results.write_text(json.dumps(row) + "\n")
    assert reproduce.weak_teacher_tasks({row["run_id"]: row}) == (
        {"rte": f"teacher {100 * accuracy:.1f} vs majority class 52.7"} if dropped else {}
    )
    monkeypatch.setattr(reproduce, "minilm_folder", lambda: "/minilm")
    argv = ["--protocol", "--tasks", "rte", "--dry_run", "--results_file", str(results), "--output_root", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", ["reproduce.py", *argv])
    reproduce.main()
    out = capsys.readouterr().out
    skipped = [line.split(":")[0].split("] ")[1] for line in out.splitlines() if ": not run, teacher" in line]
    if dropped:  # the later seeds' transfers and students of the pair; the first seed, ts-dot and ft-* rows still run
        assert sorted(skipped) == sorted(
            f"rte/{name}/seed{seed}"
            for seed in (43, 44)
            for name in (*reproduce.PROTOCOL_PAIR, *reproduce.TRANSFERS.values())
        )
        assert "below the macro's margin, the pair runs on its first seed only" in out
    else:
        assert skipped == []
    assert "rte/at-inhibitor/seed42: " in out and "rte/ft-general-inhibitor/seed44: " in out
    # the report plans one seed for such a task: its verdict is not "interim" for want of seeds it will not run
    planned = {**reproduce.PROTOCOL_PAIR_SEEDS, **reproduce.PROTOCOL_CUT, "rte": 1}
    assert "rte" not in report.unfinished_pairs({"rte": [1.0]}, planned)


def test_the_report_says_how_much_of_the_grid_has_run():
    rows = [
        {**_row("general", "transfer-inhibitor", 42, {"train_runtime": 3600.0}), "role": "general"},
        _row("stsb", "teacher", 42, {"train_runtime": 1800.0}, role="teacher"),
        _row("stsb", "at-dot-long", 42, {"train_runtime": 900.0}),
    ]  # fmt: skip  (a stage's run: not in the grid)
    full = report.progress_line(rows, {})
    assert full.startswith("Grid progress: 2 of the 107 runs of the grid that runs have finished (1.5 hours")
    # a weak RTE teacher drops two seeds' transfers and students of the pair: 8 runs fewer to go
    assert report.progress_line(rows, {"rte": "teacher 55.0 vs majority class 52.7"}).startswith(
        "Grid progress: 2 of the 99 runs"
    )

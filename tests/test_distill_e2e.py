"""End-to-end runs of run_glue_distill.py and run_distill_general.py on tiny models and a few dozen real rows.

Each run is in-process (`main(argv)`) except the two-process test, which goes through `accelerate launch`.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import run_distill_general
import run_glue_distill
from modeling_inhibidistilbert.distill import engine
from modeling_inhibidistilbert.distill.data import DataError, load_task_splits
from modeling_inhibidistilbert.distill.metrics import compute_task_metrics
from modeling_inhibidistilbert.distill.models import ModelSetupError
from modeling_inhibidistilbert.distill.training import NonFiniteLossError, OutputDirError
from modeling_inhibidistilbert.tasks import get_task

from .distill_fixtures import (
    REPO_ROOT,
    TINY,
    build_tiny_assets,
    free_port,
    interrupted_at,
    make_student_init,
    make_teacher,
    make_tokenizer,
    reset_accelerate_state,
    subprocess_env,
    tiny_args,
)

HUB_TOKEN = "hf_FakeE2ETestToken0123456789abcdef"
RESULT_KEYS = {"task_name", "eval_samples", "train_samples", "train_runtime", "epoch", "best_step"}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return build_tiny_assets(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def fresh_accelerator(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")  # no progress bars in the test log
    reset_accelerate_state()
    yield
    reset_accelerate_state()


def run(argv):
    reset_accelerate_state()
    return run_glue_distill.main([str(a) for a in argv])


def read_log(folder):
    return [json.loads(line) for line in (folder / "log_history.jsonl").read_text().splitlines()]


def snapshot(folder):
    return {p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def teachers(assets, tmp_path_factory):
    """Dot-product teachers fine-tuned by the script itself (`--mode finetune --student_attention dot`)."""
    out = {}
    for task in ("sst2", "mrpc", "stsb"):
        folder = tmp_path_factory.mktemp(f"teacher-{task}")
        reset_accelerate_state()
        run(tiny_args(task, folder, assets, mode="finetune", student_attention="dot", num_train_epochs=6))
        out[task] = folder
    reset_accelerate_state()
    return out


@pytest.mark.parametrize("task_name", ["sst2", "stsb", "mrpc"])
def test_distillation_writes_a_hub_folder_with_metrics_and_the_loss_goes_down(assets, teachers, tmp_path, task_name):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    task = get_task(task_name)
    teacher_config = json.loads((teachers[task_name] / "config.json").read_text())
    assert teacher_config["model_type"] == "distilbert" and "auto_map" not in teacher_config  # plain DistilBERT
    out = tmp_path / "student"
    results = run(
        tiny_args(
            task_name,
            out,
            assets,
            teacher_name_or_path=teachers[task_name],
            num_train_epochs=6,
            hidden_loss="cosine",
            alpha_hidden=0.5,
        )
    )

    for name in (
        "config.json",
        "model.safetensors",
        "configuration_inhibidistilbert.py",
        "modeling_inhibidistilbert.py",
    ):
        assert (out / name).is_file(), name
    assert (out / "tokenizer_config.json").is_file()
    all_results = json.loads((out / "all_results.json").read_text())
    metric_keys = {f"eval_{m}" for m in task.metrics}
    assert set(all_results) == RESULT_KEYS | metric_keys and all_results == pytest.approx(results)
    assert all_results["task_name"] == task_name and all_results["train_samples"] == 48
    assert all_results["eval_samples"] == 24 and all_results["epoch"] == 6.0
    assert set(json.loads((out / "eval_results.json").read_text())) == metric_keys
    training_args = json.loads((out / "training_args.json").read_text())
    assert training_args["mode"] == "distill" and training_args["student_attention"] == "inhibitor"
    assert training_args["teacher_name_or_path"] == str(teachers[task_name])
    assert training_args["model_name_or_path"] == str(assets["student"]) and "recipe" in training_args

    log = read_log(out)
    train_log = [r for r in log if "loss" in r]
    assert {"loss_kd", "loss_ce", "loss_hidden", "learning_rate", "epoch"} <= set(train_log[0])
    first, last = train_log[:4], train_log[-4:]
    assert sum(r["loss"] for r in last) < sum(r["loss"] for r in first)
    evals = [r for r in log if any(k.startswith("eval_") for k in r)]
    assert len(evals) == 6 and all(metric_keys <= set(r) for r in evals)
    best = max(evals, key=lambda r: r[f"eval_{task.main_metric}"])
    assert all_results["best_step"] == best["step"]

    # The folder is the best model: loading it through the Auto class and re-scoring the dev rows gives its metrics.
    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
    assert type(model).__name__ == "InhibiDistilBertForSequenceClassification"
    assert model.config.id2label == task.id2label
    tokenizer = AutoTokenizer.from_pretrained(out)
    dev = load_task_splits(task, data_dir=assets["data"], need_train=False)["validation"]
    encoded = tokenizer(*[list(dev[c]) for c in task.text_columns], truncation=True, max_length=64, padding=True)
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor(encoded["input_ids"]), attention_mask=torch.tensor(encoded["attention_mask"])
        ).logits
    predictions = logits[:, 0].numpy() if task.is_regression else logits.argmax(-1).numpy()
    rescored = compute_task_metrics(task_name, predictions, list(dev["label"]))
    assert {f"eval_{k}": v for k, v in rescored.items()} == pytest.approx(
        {k: all_results[k] for k in metric_keys}, abs=1e-5
    )


@pytest.mark.parametrize("group_by_length", [False, True], ids=["shuffled", "grouped-by-length"])
def test_resume_after_an_interruption_reaches_the_same_weights(assets, tmp_path, monkeypatch, group_by_length):
    common = dict(
        group_by_length=group_by_length,
        num_train_epochs=3,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        checkpointing_steps=3,
        checkpoints_total_limit=2,
        eval_steps=4,
    )
    full, part = tmp_path / "full", tmp_path / "part"
    run(tiny_args("sst2", full, assets, **common))

    with interrupted_at(monkeypatch, 11):
        run(tiny_args("sst2", part, assets, **common))
    assert sorted(p.name for p in (part / "checkpoints").glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-9"]
    state = json.loads((part / "checkpoints" / "checkpoint-9" / "trainer_state.json").read_text())
    assert state["epoch"] == 1 and state["step_in_epoch"] == 6  # mid-epoch, mid-accumulation cycle boundary

    # experiments/reproduce.py reruns an interrupted command with `--resume_from_checkpoint latest
    # --overwrite_output_dir`: that resumes (18 of the 36 micro-batches left), it does not wipe and restart.
    calls, original = [], engine.check_finite_loss

    def count_micro_batches(accelerator, loss, components, where, last_checkpoint):
        calls.append(where)
        return original(accelerator, loss, components, where, last_checkpoint)

    monkeypatch.setattr(engine, "check_finite_loss", count_micro_batches)
    run(tiny_args("sst2", part, assets, resume_from_checkpoint="latest", overwrite_output_dir=True, **common))
    assert len(calls) == 18 and calls[0].startswith("step 10,")
    assert sorted(p.name for p in (part / "checkpoints").glob("checkpoint-*")) == ["checkpoint-15", "checkpoint-18"]
    assert not list((part / "checkpoints").glob(".tmp-*"))
    for name in ("checkpoints/checkpoint-18/model.safetensors", "model.safetensors"):
        a, b = load_file(full / name), load_file(part / name)
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), name
    results = [json.loads((f / "all_results.json").read_text()) for f in (full, part)]
    for r in results:
        r.pop("train_runtime")
    assert results[0] == results[1]
    full_log, part_log = read_log(full), read_log(part)
    assert [r["step"] for r in full_log] == [r["step"] for r in part_log]  # no event lost or repeated
    assert all(a == pytest.approx(b, abs=1e-6) for a, b in zip(full_log, part_log))
    # evaluation every 4 optimizer steps and at the end; the best of them is the exported model
    evals = [r for r in full_log if "eval_accuracy" in r]
    assert [r["step"] for r in evals] == [4, 8, 12, 16, 18]
    best = max(evals, key=lambda r: r["eval_accuracy"])  # the first of equals wins (strictly better replaces)
    assert results[0]["best_step"] == best["step"] and results[0]["eval_accuracy"] == best["eval_accuracy"]


def test_a_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(assets, tmp_path, monkeypatch):
    class NaNAfterFiveSteps(run_glue_distill.DistillationLoss):
        calls = 0

        def __call__(self, *args, **kwargs):
            total, parts = super().__call__(*args, **kwargs)
            NaNAfterFiveSteps.calls += 1
            return (total * float("nan") if NaNAfterFiveSteps.calls == 5 else total), parts

    monkeypatch.setattr(run_glue_distill, "DistillationLoss", NaNAfterFiveSteps)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"Non-finite loss \(nan\) at step 5.*checkpoint-3"):
        run(tiny_args("sst2", out, assets, checkpointing_steps=3))
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-3"]
    assert json.loads((out / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())["completed_steps"] == 3
    assert not (out / "all_results.json").exists() and not (out / "model.safetensors").exists()
    monkeypatch.undo()
    run(tiny_args("sst2", out, assets, checkpointing_steps=3, resume_from_checkpoint="latest"))
    assert json.loads((out / "all_results.json").read_text())["epoch"] == 2.0


def test_the_teacher_is_frozen_in_eval_mode_under_no_grad_and_never_prepared(assets, tmp_path, monkeypatch):
    seen = []
    original = run_glue_distill.load_teacher

    def watched_teacher(*args, **kwargs):
        teacher = original(*args, **kwargs)
        teacher.register_forward_hook(
            lambda module, inputs, outputs: seen.append(
                (module.training, torch.is_grad_enabled(), outputs.logits.requires_grad)
            )
        )
        watched_teacher.model = teacher
        return teacher

    monkeypatch.setattr(run_glue_distill, "load_teacher", watched_teacher)
    before = {k: v.clone() for k, v in load_file(assets["teacher_sst2"] / "model.safetensors").items()}
    run(tiny_args("sst2", tmp_path / "out", assets, num_train_epochs=1))
    teacher = watched_teacher.model
    assert type(teacher).__name__ == "DistilBertForSequenceClassification"  # not wrapped (no DDP, no prepare)
    assert not any(p.requires_grad for p in teacher.parameters())
    assert len(seen) == 6 and all(state == (False, False, False) for state in seen)  # 48 rows / batch 8
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k in after)


def test_bad_inputs_fail_before_training_and_touch_nothing(assets, tmp_path, capsys):
    from transformers import AutoTokenizer

    def fresh():
        fresh.count += 1
        return tmp_path / f"out{fresh.count}"

    fresh.count = 0
    with pytest.raises(SystemExit):
        run(tiny_args("squad", fresh(), assets))
    assert "Unknown task 'squad'" in capsys.readouterr().err
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("text,label\ngood,1\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("sentence,label\n")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("sentence,label\ngood,1\nbad,7\n")
    cases = [
        (DataError, "missing column", dict(train_file=wrong, validation_file=wrong)),
        (DataError, "empty", dict(train_file=empty, validation_file=empty)),
        (DataError, "labels the model does not have.*7", dict(train_file=unknown, validation_file=unknown)),
        (ModelSetupError, "teacher has 1 label", dict(teacher_name_or_path=assets["teacher_stsb"])),
        (ModelSetupError, "teacher's labels", dict(teacher_name_or_path=assets["teacher_mrpc"])),
    ]
    for error, message, overrides in cases:
        out = fresh()
        with pytest.raises(error, match=message):
            run(tiny_args("sst2", out, assets, **overrides))
        assert not out.exists() or not any(out.iterdir())

    other_words = make_tokenizer(tmp_path / "other_tok", ["completely different words here"])
    other_teacher = make_teacher(tmp_path / "other_teacher", other_words, 2, {0: "negative", 1: "positive"})
    with pytest.raises(ModelSetupError, match="vocabulary"):
        run(tiny_args("sst2", fresh(), assets, teacher_name_or_path=other_teacher))
    same_words = AutoTokenizer.from_pretrained(assets["tokenizer"])
    wide_teacher = make_teacher(
        tmp_path / "wide_teacher", same_words, 2, {0: "negative", 1: "positive"}, dim=48, hidden_dim=96
    )
    with pytest.raises(ModelSetupError, match="hidden sizes"):
        run(tiny_args("sst2", fresh(), assets, teacher_name_or_path=wide_teacher, hidden_loss="cosine"))

    # An output folder that holds another run: nothing in it changes.
    done = tmp_path / "done"
    run(tiny_args("sst2", done, assets, mode="finetune", num_train_epochs=1))
    before = snapshot(done)
    with pytest.raises(OutputDirError, match="not empty"):
        run(tiny_args("sst2", done, assets, mode="finetune", num_train_epochs=1))
    with pytest.raises(OutputDirError, match="another run"):
        run(tiny_args("mrpc", done, assets, resume_from_checkpoint="latest"))
    assert snapshot(done) == before
    # A student checkpoint trained for other labels.
    with pytest.raises(ModelSetupError, match="label.*ignore_mismatched_sizes"):
        run(tiny_args("stsb", fresh(), assets, model_name_or_path=done, mode="finetune"))
    # --overwrite_output_dir replaces the previous run
    run(tiny_args("mrpc", done, assets, mode="finetune", num_train_epochs=1, overwrite_output_dir=True))
    assert json.loads((done / "all_results.json").read_text())["task_name"] == "mrpc"


def test_student_variants_dot_layer_map_bf16_and_tensorboard(assets, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # dot-product student under the identical recipe: a plain DistilBERT folder (no remote code needed)
    dot = tmp_path / "dot"
    run(tiny_args("sst2", dot, assets, student_attention="dot", num_train_epochs=1))
    assert (
        type(AutoModelForSequenceClassification.from_pretrained(dot)).__name__ == "DistilBertForSequenceClassification"
    )
    # a shallower inhibitor student (1 layer) aligned to the 2-layer teacher through the layer map, with overrides
    shallow = make_student_init(
        tmp_path / "shallow_init", AutoTokenizer.from_pretrained(assets["tokenizer"]), n_layers=1
    )
    out = tmp_path / "shallow"
    run(
        tiny_args(
            "sst2",
            out,
            assets,
            model_name_or_path=shallow,
            hidden_loss="cosine+mse",
            layer_map="1:2",
            center_scores="false",
            output_scale_init=0.1,
            classifier_pooling="mean",
            scalar_learning_rate=1e-2,
            num_train_epochs=1,
            mixed_precision="bf16",
            report_to="tensorboard",
        )
    )
    config = json.loads((out / "config.json").read_text())
    assert config["n_layers"] == 1 and config["center_scores"] is False and config["output_scale_init"] == 0.1
    assert config["classifier_pooling"] == "mean"
    log = [r for r in read_log(out) if "loss" in r]
    assert "loss_hidden" in log[0] and log[0]["learning_rate_inhibitor_scalars"] != log[0]["learning_rate"]
    assert json.loads((out / "training_args.json").read_text())["resolved_mixed_precision"] == "bf16"
    assert list((out / "runs").rglob("events.out.tfevents.*"))


def test_general_distillation_then_task_finetuning(assets, tmp_path):
    from transformers import (
        AutoModelForMaskedLM,
        AutoTokenizer,
        DistilBertConfig,
        DistilBertForMaskedLM,
        DistilBertModel,
    )

    tokenizer = AutoTokenizer.from_pretrained(assets["tokenizer"])
    torch.manual_seed(0)
    teachers = {}
    for name, cls in (("mlm", DistilBertForMaskedLM), ("encoder", DistilBertModel)):
        teachers[name] = tmp_path / f"teacher_{name}"
        cls(DistilBertConfig(vocab_size=len(tokenizer), **TINY)).save_pretrained(teachers[name])
        tokenizer.save_pretrained(teachers[name])
    common = [
        "--text_sources", "sst2,mrpc", "--data_dir", assets["data"], "--max_seq_length", "64",
        "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--num_train_epochs", "2",
        "--logging_steps", "2", "--validation_split_percentage", "10",
    ]  # fmt: skip
    for name, components in (("mlm", {"loss_kd", "loss_mlm", "loss_hidden"}), ("encoder", {"loss_hidden"})):
        out = tmp_path / f"general_{name}"
        reset_accelerate_state()
        results = run_distill_general.main(
            [str(a) for a in ["--teacher_name_or_path", teachers[name], "--output_dir", out, *common]]
        )
        assert {f"eval_{c}" for c in components} | {"eval_loss"} == {k for k in results if k.startswith("eval_")} - {
            "eval_samples"
        }
        assert components <= set(read_log(out)[0])
        assert json.loads((out / "training_args.json").read_text())["has_mlm_head"] is (name == "mlm")
    student = AutoModelForMaskedLM.from_pretrained(tmp_path / "general_mlm", trust_remote_code=True)
    assert type(student).__name__ == "InhibiDistilBertForMaskedLM"
    # the general-purpose checkpoint is what the task script starts from
    task_out = tmp_path / "task"
    run(
        tiny_args(
            "sst2", task_out, assets, mode="finetune", model_name_or_path=tmp_path / "general_mlm", num_train_epochs=1
        )
    )
    assert json.loads((task_out / "config.json").read_text())["architectures"] == [
        "InhibiDistilBertForSequenceClassification"
    ]


def linear_schedule(step, warmup, total):
    """transformers' linear schedule with warmup: the LR factor after `step` scheduler steps."""
    return step / warmup if step < warmup else max(0.0, (total - step) / (total - warmup))


def test_linear_warmup_then_decay_is_counted_in_optimizer_steps(assets, tmp_path):
    # 48 rows / batch 4 = 12 micro-batches, accumulated 2 by 2: 6 optimizer steps, 2 of them warming up
    out = tmp_path / "warmup"
    common = dict(mode="finetune", learning_rate=1e-3, scalar_learning_rate=1e-2, lr_scheduler_type="linear")
    run(
        tiny_args(
            "sst2",
            out,
            assets,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=2,
            num_train_epochs=1,
            num_warmup_steps=2,
            **common,
        )
    )
    training_args = json.loads((out / "training_args.json").read_text())
    assert training_args["max_train_steps"] == 6 and training_args["warmup_steps"] == 2
    log = [r for r in read_log(out) if "loss" in r]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    factors = [linear_schedule(s, 2, 6) for s in range(1, 7)]
    assert factors == [0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    lrs = [r["learning_rate"] for r in log]
    assert lrs == pytest.approx([1e-3 * f for f in factors], abs=1e-12)
    assert [r["learning_rate_inhibitor_scalars"] for r in log] == pytest.approx([1e-2 * f for f in factors], abs=1e-12)
    assert lrs[0] < lrs[1] and all(a > b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] == 0.0

    # --warmup_ratio (when --num_warmup_steps is 0) rounds up: ceil(0.3 * 5) = 2 warmup steps of 5
    out = tmp_path / "ratio"
    run(tiny_args("sst2", out, assets, max_train_steps=5, warmup_ratio=0.3, **common))
    assert json.loads((out / "training_args.json").read_text())["warmup_steps"] == 2
    lrs = [r["learning_rate"] for r in read_log(out) if "loss" in r]
    assert lrs == pytest.approx([1e-3 * linear_schedule(s, 2, 5) for s in range(1, 6)], abs=1e-12)
    assert lrs[-1] == 0.0


def test_gradients_are_clipped_once_per_optimizer_step_to_max_grad_norm(assets, tmp_path, monkeypatch):
    from accelerate import Accelerator

    events = []
    original_clip, original_check = Accelerator.clip_grad_norm_, engine.check_finite_loss

    def recording_clip(self, parameters, max_norm, norm_type=2):
        parameters = list(parameters)
        before = original_clip(self, parameters, max_norm, norm_type)
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters if p.grad is not None]))
        events.append(("clip", max_norm, self.sync_gradients, float(before), float(after)))
        return before

    def recording_check(accelerator, loss, components, where, last_checkpoint):
        events.append(("micro-batch",))
        return original_check(accelerator, loss, components, where, last_checkpoint)

    monkeypatch.setattr(Accelerator, "clip_grad_norm_", recording_clip)
    monkeypatch.setattr(engine, "check_finite_loss", recording_check)
    common = dict(per_device_train_batch_size=4, gradient_accumulation_steps=2, num_train_epochs=1)
    run(tiny_args("sst2", tmp_path / "clipped", assets, max_grad_norm=0.05, **common))
    # 12 micro-batches, 6 optimizer steps: clipping comes after the second micro-batch of each step, never between
    assert [e[0] for e in events] == ["micro-batch", "micro-batch", "clip"] * 6
    clips = [e for e in events if e[0] == "clip"]
    assert all(max_norm == 0.05 and synced for _, max_norm, synced, _, _ in clips)
    assert all(after == pytest.approx(min(before, 0.05), rel=1e-4) for *_, before, after in clips)
    assert any(before > 0.05 for *_, before, _ in clips)  # the clipping did bind

    events.clear()
    run(tiny_args("sst2", tmp_path / "unclipped", assets, max_grad_norm=0, **common))
    assert [e[0] for e in events] == ["micro-batch"] * 12  # --max_grad_norm 0 disables clipping


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """The local FakeHub (tests/fake_hub.py) as huggingface_hub's default endpoint, with a token in HF_TOKEN."""
    from huggingface_hub import constants as hf_constants

    from .fake_hub import FakeHub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)  # plain LFS: the fake Hub speaks no Xet
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # all traffic stays on 127.0.0.1
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr(hf_constants, "ENDPOINT", hub.url)
        yield hub


def test_push_to_hub_publishes_the_best_model_with_its_card_and_results(assets, tmp_path, fake_hub):
    from huggingface_hub import ModelCard

    teacher = Path(shutil.copytree(assets["teacher_sst2"], tmp_path / "teacher"))
    (teacher / "all_results.json").write_text(json.dumps({"task_name": "sst2", "eval_accuracy": 0.875}))
    out = tmp_path / "student"
    argv = tiny_args("sst2", out, assets, teacher_name_or_path=teacher, num_train_epochs=1)
    results = run([*argv, "--push_to_hub", "--hub_model_id", "someone/tiny"])

    repo = fake_hub.repos["someone/tiny"]
    assert not repo.private and len(repo.commits) == 2  # the initial commit, then the whole folder in one commit
    assert set(fake_hub.authorizations) == {f"Bearer {HUB_TOKEN}"}
    files = fake_hub.files("someone/tiny")
    for name in (
        "config.json",
        "model.safetensors",
        "configuration_inhibidistilbert.py",
        "modeling_inhibidistilbert.py",
        "all_results.json",
        "eval_results.json",
        "tokenizer_config.json",
    ):
        assert files.get(name) == (out / name).read_bytes(), name
    assert json.loads(files["all_results.json"]) == pytest.approx(results)
    assert not {"training_args.json", "log_history.jsonl"} & set(files)
    assert not any(path.startswith("checkpoints/") for path in files)
    assert not (out / "README.md").exists()  # the card is generated for the upload; the folder is not modified

    card = ModelCard(files["README.md"].decode("utf-8"))
    assert "knowledge-distillation" in card.data.tags and card.data.pipeline_tag == "text-classification"
    [accuracy] = card.data.eval_results
    assert accuracy.metric_type == "accuracy" and accuracy.metric_value == results["eval_accuracy"]
    # the teacher's all_results.json (next to its weights) gives the comparison column
    assert f"| Accuracy | {results['eval_accuracy']:.4f} | 0.8750 |" in card.text


def test_finetune_push_to_hub_ignores_an_all_results_json_in_the_working_directory(
    assets, tmp_path, fake_hub, monkeypatch
):
    work = tmp_path / "work"
    work.mkdir()
    (work / "all_results.json").write_text(json.dumps({"task_name": "mrpc", "eval_accuracy": 0.5}))  # another run
    monkeypatch.chdir(work)
    out = tmp_path / "finetuned"
    argv = tiny_args("sst2", out, assets, mode="finetune", num_train_epochs=1)
    run([*argv, "--push_to_hub", "--hub_model_id", "someone/finetuned"])
    readme = fake_hub.files("someone/finetuned")["README.md"].decode("utf-8")
    assert "| Metric | This model (inhibitor) |\n" in readme  # no teacher column: a fine-tuned model has no teacher


@pytest.mark.slow
def launch(command: list[str], env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `accelerate launch` in its own process group; on a timeout kill the whole group (no orphaned rank)."""
    process = subprocess.Popen(
        command,
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"accelerate launch did not finish in {timeout} s (killed); stderr tail:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_two_processes_give_the_same_metrics_as_one(assets, tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo) versus one process accumulating the same 2 micro-batches.

    (`accelerate launch --cpu --num_processes 2` starts a single process in accelerate 1.x unless MPI is set up;
    `--multi_gpu` on a machine without GPU, which the scripts turn into a gloo CPU group, starts two. Both are run.)
    """
    common = dict(
        task_name="mrpc",
        model_name_or_path=assets["student_nodrop"],
        teacher_name_or_path=assets["teacher_mrpc"],
        per_device_train_batch_size=4,
        max_eval_samples=23,  # odd: the second process gets a padded last batch that gather_for_metrics drops
    )
    one = tmp_path / "one"
    run(tiny_args("mrpc", one, assets, gradient_accumulation_steps=2, **common))
    two = tmp_path / "two"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), str(REPO_ROOT / "run_glue_distill.py"),
        *tiny_args("mrpc", two, assets, **common),
    ]  # fmt: skip
    env = dict(subprocess_env(), CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="true")  # CPU processes, gloo
    done = launch(command, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((two / "training_args.json").read_text())["num_processes"] == 2
    results = [json.loads((f / "all_results.json").read_text()) for f in (one, two)]
    for r in results:
        r.pop("train_runtime")
    assert results[0] == pytest.approx(results[1], abs=1e-6)
    assert results[1]["eval_samples"] == 23
    a, b = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)

    # The literal `accelerate launch --cpu --num_processes 2`: the same job and metrics, because Accelerate starts one
    # process here (no mpirun); the script says so instead of pretending.
    cpu = tmp_path / "cpu"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(REPO_ROOT / "run_glue_distill.py"), *tiny_args("mrpc", cpu, assets, gradient_accumulation_steps=2, **common),
    ]  # fmt: skip
    done = launch(command, subprocess_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "started one process" in done.stderr
    assert json.loads((cpu / "training_args.json").read_text())["num_processes"] == 1
    cpu_results = json.loads((cpu / "all_results.json").read_text())
    cpu_results.pop("train_runtime")
    assert cpu_results == pytest.approx(results[0], abs=1e-6)

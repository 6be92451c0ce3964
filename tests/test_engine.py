"""The training engine (modeling_inhibidistilbert/distill/engine.py) through its two drivers: behaviour pinned to the
code before the redesign, selection on held-out training rows, early stopping, the gradient guard, resuming with a
changed recipe, and bad inputs that end with one `error:` line."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import run_distill_general
import run_glue_distill
from modeling_inhibidistilbert.distill import engine
from modeling_inhibidistilbert.distill.data import DataError
from modeling_inhibidistilbert.distill.training import NonFiniteGradientError, OutputDirError

from . import distill_fixtures
from .distill_fixtures import TINY, build_tiny_assets, interrupted_at, reset_accelerate_state, tiny_args

# Printed by the same four runs on the code before the redesign (commit 5ed9629, the two scripts with their own
# loops), one thread, on the fixture's synthetic rows; the redesign must give the same numbers.
PINNED = {
    "attention_transfer": {
        "best_step": 8, "epoch": "1.000000", "eval_loss": "0.234907", "eval_loss_layer_0": "0.139491",
        "eval_loss_layer_1": "0.330323", "eval_samples": 6, "eval_steps": [4, 8], "task_name": "general",
        "train_losses": ["0.346420", "0.693359", "0.350343", "0.272563"], "train_samples": 62,
    },
    "distill_sst2": {
        "best_step": 3, "epoch": "2.000000", "eval_accuracy": "0.500000", "eval_samples": 24,
        "eval_steps": [3, 6, 9, 12], "task_name": "sst2",
        "train_losses": ["0.851421", "0.792679", "0.748111", "0.702199", "0.680964", "0.641864", "0.618464",
                         "0.595305", "0.573097", "0.563668", "0.560580", "0.554416"],
        "train_samples": 48,
    },
    "finetune_stsb": {
        "best_step": 3, "epoch": "2.000000", "eval_pearson": "0.170402", "eval_samples": 24,
        "eval_spearmanr": "0.108696", "eval_steps": [3, 6], "task_name": "stsb",
        "train_losses": ["11.791165", "6.742809", "6.412324", "8.270890", "7.140125", "8.505171"],
        "train_samples": 48,
    },
    "hidden_alignment": {
        "best_step": 8, "epoch": "0.571429", "eval_loss": "0.001842", "eval_loss_hidden": "0.001842",
        "eval_samples": 11, "eval_steps": [4, 8], "task_name": "general",
        "train_losses": ["0.053246", "0.050897", "0.045415", "0.049289"], "train_samples": 105,
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The tiny assets on the fixture's synthetic rows (the same data in every checkout, with or without
    ../shared/data)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(distill_fixtures, "SHARED_DATA", Path("/nonexistent-shared-data"))
        return build_tiny_assets(tmp_path_factory.mktemp("engine"))


@pytest.fixture(autouse=True)
def fresh_accelerator(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    reset_accelerate_state()
    yield
    reset_accelerate_state()


def glue(out, task, assets, mode="distill", **overrides):
    reset_accelerate_state()
    return run_glue_distill.main([str(a) for a in tiny_args(task, out, assets, mode=mode, **overrides)])


def general(out, teacher, assets, *extra):
    reset_accelerate_state()
    argv = [
        "--teacher_name_or_path", teacher, "--text_sources", "sst2:20,mrpc", "--data_dir", assets["data"],
        "--output_dir", out, "--max_seq_length", 64, "--per_device_train_batch_size", 8, "--learning_rate", 3e-3,
        "--max_train_steps", 8, "--eval_steps", 4, "--logging_steps", 2, "--validation_split_percentage", 10,
        "--seed", 7, *extra,
    ]  # fmt: skip
    return run_distill_general.main([str(a) for a in argv])


def read_log(folder):
    return [json.loads(line) for line in (folder / "log_history.jsonl").read_text().splitlines()]


def printed(results: dict, folder: Path) -> dict:
    """The run's results and losses as the pinning script printed them (floats to 6 decimals)."""
    log = read_log(folder)
    out = {k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in results.items() if k != "train_runtime"}
    out["train_losses"] = [f"{r['loss']:.6f}" for r in log if "loss" in r]
    out["eval_steps"] = [r["step"] for r in log if any(k.startswith("eval_") for k in r)]
    return out


def test_fixed_seed_runs_give_the_metrics_of_before_the_redesign(assets, tmp_path):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tokenizer = AutoTokenizer.from_pretrained(assets["tokenizer"])
        torch.manual_seed(0)
        encoder = tmp_path / "encoder"
        DistilBertModel(DistilBertConfig(vocab_size=len(tokenizer), **TINY)).save_pretrained(encoder)
        tokenizer.save_pretrained(encoder)
        folders = {name: tmp_path / name for name in PINNED}
        runs = {
            "distill_sst2": glue(
                folders["distill_sst2"], "sst2", assets, hidden_loss="cosine", alpha_hidden=0.5, eval_steps=3
            ),
            "finetune_stsb": glue(
                folders["finetune_stsb"], "stsb", assets, "finetune", gradient_accumulation_steps=2, warmup_ratio=0.2
            ),
            "attention_transfer": general(
                folders["attention_transfer"],
                encoder,
                assets,
                "--objective",
                "attention_transfer",
                "--keep_pairs",
                "true",
                "--scalar_learning_rate",
                3e-2,
            ),  # fmt: skip
            "hidden_alignment": general(folders["hidden_alignment"], encoder, assets),
        }
    finally:
        torch.set_num_threads(threads)
    assert_matches_pinned({name: printed(results, folders[name]) for name, results in runs.items()}, PINNED)


def assert_matches_pinned(got: dict, pinned: dict) -> None:
    """Equal, the printed floats to a relative 1e-3: their last digits differ between CPUs (the pins came from an AMD
    EPYC; an Intel Xeon with AVX-512/AMX kernels gives an STS-B Pearson of 0.170412 for 0.170402), while a change of
    behaviour (a loss, a schedule, an evaluation step) moves them far more."""
    assert got.keys() == pinned.keys()
    for name, expected in pinned.items():
        assert got[name].keys() == expected.keys(), name
        for key, value in expected.items():
            if key == "train_losses":
                assert [float(x) for x in got[name][key]] == pytest.approx([float(x) for x in value], rel=1e-3), name
            elif isinstance(value, str) and key != "task_name":
                assert float(got[name][key]) == pytest.approx(float(value), rel=1e-3, abs=1e-5), (name, key)
            else:
                assert got[name][key] == value, (name, key)


def flipped_dev(assets, tmp_path, name, relabel):
    """SST-2's dev rows with the labels `relabel(label)`, as a validation file."""
    import pandas as pd

    dev = pd.read_csv(assets["data"] / "SST-2" / "dev.tsv", sep="\t", quoting=3, dtype=str, keep_default_na=False)
    dev["label"] = [relabel(int(label)) for label in dev["label"]]
    path = tmp_path / f"{name}.csv"
    dev.to_csv(path, index=False)
    return path


HELDOUT = dict(selection_split="heldout", heldout_min_rows=12, eval_steps=2, mode="finetune")


def test_with_heldout_selection_the_chosen_model_does_not_depend_on_the_dev_labels(assets, tmp_path):
    runs = {}
    for name, relabel in (("same", lambda y: y), ("flipped", lambda y: 1 - y), ("zeros", lambda y: 0)):
        dev = flipped_dev(assets, tmp_path, name, relabel)
        runs[name] = glue(tmp_path / name, "sst2", assets, validation_file=dev, **HELDOUT)
    same = runs["same"]
    # every choice is the same: the step, the held-out metrics, the weights of the exported model
    assert {r["best_step"] for r in runs.values()} == {same["best_step"]}
    assert {r["heldout_accuracy"] for r in runs.values()} == {same["heldout_accuracy"]}
    weights = {name: load_file(tmp_path / name / "model.safetensors") for name in runs}
    for name in ("flipped", "zeros"):
        assert all(torch.equal(weights[name][k], v) for k, v in weights["same"].items()), name
    # dev was scored (on the chosen model), and only reported: flipped labels flip the accuracy
    assert runs["flipped"]["eval_accuracy"] == pytest.approx(1 - same["eval_accuracy"])
    assert same["eval_samples"] == 24 and same["heldout_samples"] == 12 and same["train_samples"] == 36
    assert set(same) >= {"heldout_accuracy", "eval_accuracy", "eval_samples", "heldout_samples", "best_step"}
    assert json.loads((tmp_path / "same" / "all_results.json").read_text()) == pytest.approx(same)
    assert json.loads((tmp_path / "same" / "eval_results.json").read_text()) == {"eval_accuracy": same["eval_accuracy"]}
    log = read_log(tmp_path / "same")
    selections = [r for r in log if "heldout_accuracy" in r]
    assert [r["step"] for r in selections] == [2, 4, 6, 8, 10]
    reported = [r for r in log if "eval_accuracy" in r]  # dev: once, at the end, on the chosen model
    assert len(reported) == 1 and reported[0]["reported_model_step"] == same["best_step"]
    assert not any("eval_accuracy" in r for r in selections)
    # the reported dev accuracy is the exported model's own
    best = [r for r in selections if r["step"] == same["best_step"]][0]
    assert best["heldout_accuracy"] == same["heldout_accuracy"]


def test_the_held_out_rows_depend_on_the_heldout_seed_alone(assets, tmp_path):
    from modeling_inhibidistilbert.distill.data import load_task_splits, split_heldout
    from modeling_inhibidistilbert.tasks import get_task

    train = load_task_splits(get_task("sst2"), assets["data"], need_eval=False)["train"]
    kept, held = split_heldout(train, 0.1, 12, seed=0)
    assert len(held) == 12 and len(kept) == 36
    assert sorted(list(kept["sentence"]) + list(held["sentence"])) == sorted(train["sentence"])
    assert list(split_heldout(train, 0.1, 12, seed=0)[1]["sentence"]) == list(held["sentence"])
    assert list(split_heldout(train, 0.1, 12, seed=1)[1]["sentence"]) != list(held["sentence"])
    assert len(split_heldout(train, 0.5, 12, seed=0)[1]) == 24  # the fraction when it gives more rows
    with pytest.raises(DataError, match="nothing to train on.*--heldout_min_rows"):
        split_heldout(train, 0.1, 48, seed=0)
    # the training seed changes nothing about which rows are held out
    a = glue(tmp_path / "a", "sst2", assets, seed=1, num_train_epochs=1, **HELDOUT)
    b = glue(tmp_path / "b", "sst2", assets, seed=2, num_train_epochs=1, **HELDOUT)
    assert a["heldout_samples"] == b["heldout_samples"] == 12


def test_early_stopping_counts_evaluations_without_a_better_model(assets, tmp_path):
    # learning rate 0: the held-out accuracy never changes, so only the first evaluation is a better model
    out = tmp_path / "stopped"
    results = glue(out, "sst2", assets, learning_rate=0.0, early_stopping_patience=2, **HELDOUT)
    log = read_log(out)
    assert [r["step"] for r in log if "heldout_accuracy" in r] == [2, 4, 6]
    assert max(r["step"] for r in log) == 6 and results["best_step"] == 2 and results["epoch"] < 2
    assert "eval_accuracy" in results  # dev is still scored once, on the chosen model


class NaNGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss with NaN gradients (what a kernel dropping NaN produces)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


def test_nan_gradients_with_a_finite_loss_stop_before_the_optimizer_step(assets, tmp_path, monkeypatch):
    original = engine.FineTuning.loss
    calls = []

    def loss_with_nan_gradient_at_the_third_batch(self, batch, seed):
        loss, components = original(self, batch, seed)
        calls.append(1)
        if len(calls) == 3:
            weight = next(p for p in self.model.parameters() if p.requires_grad)
            loss = loss + 0.0 * NaNGradient.apply(weight).sum()  # the value stays finite
            assert torch.isfinite(loss)
        return loss, components

    monkeypatch.setattr(engine.FineTuning, "loss", loss_with_nan_gradient_at_the_third_batch)
    out = tmp_path / "nan-grad"
    with pytest.raises(NonFiniteGradientError, match=r"Non-finite gradients at step 3.*checkpoint-2"):
        glue(out, "sst2", assets, "finetune", checkpointing_steps=2, max_grad_norm=0)
    # the run stopped before writing NaN into the weights: the last checkpoint, from which it resumes, is finite
    assert all(torch.isfinite(v).all() for v in load_file(out / "checkpoints/checkpoint-2/model.safetensors").values())
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (out / "all_results.json").exists()


def test_resuming_with_a_changed_recipe_is_refused_naming_the_fields(assets, tmp_path, monkeypatch):
    out = tmp_path / "run"
    common = dict(mode="finetune", checkpointing_steps=2, num_train_epochs=1)
    with interrupted_at(monkeypatch, 4):
        glue(out, "sst2", assets, **common)
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    for changed, fields in (
        (dict(learning_rate=1e-2), ["learning_rate"]),
        (dict(seed=8, max_train_samples=40), ["max_train_samples", "seed"]),
        (dict(max_train_steps=3), ["max_train_steps"]),
    ):
        with pytest.raises(OutputDirError, match="changed recipe") as error:
            glue(out, "sst2", assets, resume_from_checkpoint="latest", **common, **changed)
        for field in fields:
            assert f"{field}: folder has" in str(error.value)
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before  # nothing touched
    # what does not change the training (logging, evaluation batch size) may change
    results = glue(out, "sst2", assets, resume_from_checkpoint="latest", logging_steps=2, **common)
    assert results["epoch"] == 1.0


@pytest.mark.parametrize(
    "flag, value", [("max_train_samples", 0), ("max_train_samples", -5), ("max_eval_samples", 0)]
)  # fmt: skip
def test_empty_or_negative_data_limits_are_an_error_at_argument_parsing(assets, tmp_path, capsys, flag, value):
    for parse, argv in (
        (run_glue_distill.parse_args, tiny_args("sst2", tmp_path / "o", assets, mode="finetune")),
        (
            run_distill_general.parse_args,
            ["--teacher_name_or_path", "t", "--text_sources", "sst2", "--output_dir", "o"],
        ),
    ):
        with pytest.raises(SystemExit):
            parse([str(a) for a in argv] + [f"--{flag}", str(value)])
        err = capsys.readouterr().err
        assert "error:" in err and flag in err and "positive" in err
    recipe = tmp_path / "recipe.yaml"  # from a recipe too
    recipe.write_text(f"base: {distill_fixtures.REPO_ROOT / 'configuration' / 'sst2.yaml'}\n{flag}: {value}\n")
    with pytest.raises(SystemExit):
        run_glue_distill.parse_args(["--config", str(recipe), "--model_name_or_path", "m", "--output_dir", "o",
                                     "--mode", "finetune"])  # fmt: skip
    assert "error:" in capsys.readouterr().err


def test_an_unknown_text_source_is_an_error_at_argument_parsing(capsys):
    with pytest.raises(SystemExit):
        run_distill_general.parse_args(
            ["--teacher_name_or_path", "t", "--text_sources", "sst2,squad", "--output_dir", "o"]
        )
    err = capsys.readouterr().err
    assert "error:" in err and "squad" in err and "sst2" in err


def test_a_corrupt_parquet_ends_with_an_error_line_not_a_traceback(assets, tmp_path, capsys):
    bad = tmp_path / "train.parquet"
    bad.write_bytes(b"PAR1 this is not a parquet file")
    argv = [str(a) for a in tiny_args("sst2", tmp_path / "out", assets, mode="finetune", train_file=bad)]
    with pytest.raises(SystemExit) as exit_:
        engine.run_cli(lambda: run_glue_distill.main(argv))
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Cannot read") and "train.parquet" in err[-1] and "Traceback" not in "".join(err)


def test_an_empty_batch_is_a_clear_error():
    engine.check_batch({"input_ids": torch.ones(2, 3, dtype=torch.long)}, "training")
    for empty in (torch.ones(0, 5, dtype=torch.long), torch.ones(4, 0, dtype=torch.long)):
        with pytest.raises(DataError, match="empty batch in training.*--max_train_samples"):
            engine.check_batch({"input_ids": empty}, "training")


def test_overwrite_output_dir_removes_the_old_runs_weights_shards_included(tmp_path):
    """A single-file run written over a sharded one must not leave the old shards and index next to its weights."""
    from modeling_inhibidistilbert.distill.training import clean_output_dir

    stale = ["model.safetensors", "model.safetensors.index.json", "model-00001-of-00002.safetensors"]
    stale += ["model-00002-of-00002.safetensors", "all_results.json"]
    kept = ["config.json", "tokenizer.json", "README.md"]
    for name in stale + kept:
        (tmp_path / name).write_text("{}")
    clean_output_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_group_by_length_orders_by_seed_and_epoch_alone_and_cuts_padding():
    """`--group_by_length` (the protocol's runs use it): every row once per epoch, the order a function of (seed,
    epoch) only (what exact resumption needs), batches of rows of similar length."""
    import random

    rng = random.Random(0)
    rows = {"input_ids": [[1] * rng.randint(3, 120) for _ in range(500)]}
    sampler = engine.LengthGroupedSampler(rows, batch_size=16, seed=42)
    sampler.set_epoch(1)
    first = list(sampler)
    assert sorted(first) == list(range(500)) and len(sampler) == 500
    again = engine.LengthGroupedSampler(rows, batch_size=16, seed=42)
    list(again)  # drawing epoch 0 first changes nothing: no generator state carries over
    again.set_epoch(1)
    assert list(again) == first
    sampler.set_epoch(2)
    assert list(sampler) != first

    def padded_tokens(order):
        lengths = [len(rows["input_ids"][i]) for i in order]
        return sum(max(lengths[k : k + 16]) * len(lengths[k : k + 16]) for k in range(0, len(lengths), 16))

    shuffled = list(range(500))
    rng.shuffle(shuffled)
    assert padded_tokens(first) < 0.7 * padded_tokens(shuffled)

"""Attention transfer (modeling_inhibidistilbert/distill/attention_transfer.py and run_distill_general.py
--objective attention_transfer): the softmax target, what trains, the loss, saving, the script end to end and resume.
"""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import DistilBertConfig, DistilBertModel

import run_distill_general
from modeling_inhibidistilbert import InhibiDistilBertConfig, InhibiDistilBertModel
from modeling_inhibidistilbert.convert import init_student_from_pretrained
from modeling_inhibidistilbert.distill.attention_transfer import (
    AttentionTransfer,
    attention_parameters,
    softmax_attention_output,
)

from .distill_fixtures import TINY, build_tiny_assets, interrupted_at, reset_accelerate_state

DIMS = {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64, "vocab_size": 50, "max_position_embeddings": 64}


def tiny_pair(tmp_path, **student_config):
    """A random dot-product DistilBERT (the teacher) and an inhibitor student converted from it."""
    torch.manual_seed(0)
    DistilBertModel(DistilBertConfig(**DIMS, dropout=0.0, attention_dropout=0.0)).save_pretrained(tmp_path / "dot")
    teacher, _ = init_student_from_pretrained(tmp_path / "dot", head="base", attention="dot")
    student, _ = init_student_from_pretrained(tmp_path / "dot", head="base", **student_config)
    return student, teacher


def padded_batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, DIMS["vocab_size"], (3, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0
    attention_mask[2, 4:] = 0
    return input_ids.masked_fill(attention_mask == 0, 0), attention_mask


def test_softmax_target_is_distilberts_own_attention_with_a_padding_mask(tmp_path):
    torch.manual_seed(0)
    model = DistilBertModel(
        DistilBertConfig(**DIMS, dropout=0.0, attention_dropout=0.0, attn_implementation="eager")
    ).eval()
    input_ids, attention_mask = padded_batch()
    captured = {}  # DistilBERT's own attention output of layer 1, taken from inside its forward
    layer = model.transformer.layer[1]
    hook = layer.attention.register_forward_hook(lambda m, args, out: captured.setdefault("out", out))
    with torch.no_grad():
        hidden = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        ours = softmax_attention_output(layer.attention, hidden[1], attention_mask)
    hook.remove()
    expected = captured["out"][0] if isinstance(captured["out"], tuple) else captured["out"]
    real = attention_mask.bool()
    torch.testing.assert_close(ours[real], expected[real], rtol=1e-5, atol=1e-5)


def test_only_the_attention_projections_and_scalars_train(tmp_path):
    student, teacher = tiny_pair(tmp_path)
    wrapper = AttentionTransfer(student, teacher)
    trainable = {n for n, p in wrapper.named_parameters() if p.requires_grad}
    per_layer = {"q_lin.weight", "q_lin.bias", "k_lin.weight", "k_lin.bias", "v_lin.weight", "v_lin.bias"}
    per_layer |= {"score_scale", "shift", "output_scale"}
    expected = {
        f"student.transformer.layer.{i}.attention.{name}" for i in range(DIMS["n_layers"]) for name in per_layer
    }
    assert trainable == expected
    assert len(attention_parameters(student)) == len(expected)
    frozen, _ = tiny_pair(tmp_path, train_inhibitor_scalars=False)
    assert not any(p is frozen.transformer.layer[0].attention.shift for p in attention_parameters(frozen))


def test_per_layer_losses_are_relative_errors_and_fall_when_fitting(tmp_path):
    student, teacher = tiny_pair(tmp_path)
    wrapper = AttentionTransfer(student, teacher).train()
    assert not wrapper.teacher.training  # the targets never see dropout
    input_ids, attention_mask = padded_batch()
    losses = wrapper(input_ids=input_ids, attention_mask=attention_mask)
    assert losses.shape == (DIMS["n_layers"],) and bool((losses > 0).all())
    # padded positions do not count: changing what sits at padded positions changes no loss
    other_ids = input_ids.masked_fill(attention_mask == 0, 7)
    torch.testing.assert_close(wrapper(input_ids=other_ids, attention_mask=attention_mask), losses)
    optimizer = torch.optim.Adam(attention_parameters(student), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        wrapper(input_ids=input_ids, attention_mask=attention_mask).mean().backward()
        optimizer.step()
    after = wrapper(input_ids=input_ids, attention_mask=attention_mask)
    assert float(after.detach().mean()) < 0.5 * float(losses.detach().mean())
    assert all(p.grad is None for n, p in wrapper.named_parameters() if "ffn" in n or n.startswith("teacher."))


def test_a_teacher_of_another_layout_is_refused_with_the_fix(tmp_path):
    student, _ = tiny_pair(tmp_path)
    other = InhibiDistilBertModel(InhibiDistilBertConfig(**{**DIMS, "n_layers": 3}))
    with pytest.raises(ValueError, match="same layers, width and heads.*Initialise the student"):
        AttentionTransfer(student, other)


def test_save_pretrained_writes_the_student_alone(tmp_path):
    student, teacher = tiny_pair(tmp_path)
    wrapper = AttentionTransfer(student, teacher)
    wrapper.save_pretrained(tmp_path / "out", state_dict=wrapper.state_dict())
    saved = load_file(tmp_path / "out" / "model.safetensors")
    assert not any(k.startswith(("student.", "teacher.")) for k in saved)
    assert set(saved) == set(student.state_dict())
    reloaded = InhibiDistilBertModel.from_pretrained(tmp_path / "out")
    assert type(reloaded).__name__ == "InhibiDistilBertModel"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return build_tiny_assets(tmp_path_factory.mktemp("tiny-transfer"))


def transfer_args(assets, out, teacher, **extra):
    args = {
        "objective": "attention_transfer",
        "teacher_name_or_path": teacher,
        "text_sources": "sst2:20,mrpc",
        "keep_pairs": "true",  # MRPC's rows as pairs
        "data_dir": assets["data"],
        "output_dir": out,
        "max_seq_length": 64,
        "per_device_train_batch_size": 8,
        "learning_rate": 3e-3,
        "scalar_learning_rate": 3e-2,
        "max_train_steps": 8,
        "eval_steps": 4,
        "checkpointing_steps": 4,
        "logging_steps": 2,
        "validation_split_percentage": 10,
        **extra,
    }
    argv = []
    for key, value in args.items():
        argv += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return argv


def test_the_script_fits_the_attention_saves_a_student_and_resumes_to_the_same_weights(assets, tmp_path, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(assets["tokenizer"])
    torch.manual_seed(0)
    teacher = tmp_path / "teacher"
    DistilBertModel(DistilBertConfig(vocab_size=len(tokenizer), **TINY)).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)

    reset_accelerate_state()
    results = run_distill_general.main(transfer_args(assets, tmp_path / "full", teacher))
    layers = {f"eval_loss_layer_{i}" for i in range(TINY["n_layers"])}
    assert layers | {"eval_loss"} <= set(results)
    log = [json.loads(line) for line in (tmp_path / "full" / "log_history.jsonl").read_text().splitlines()]
    evaluations = [r["eval_loss"] for r in log if "eval_loss" in r]
    assert evaluations[-1] < evaluations[0]
    # the saved folder is a plain student: FFN and embeddings are the teacher's, the attention has moved
    saved = load_file(tmp_path / "full" / "model.safetensors")
    original = load_file(teacher / "model.safetensors")
    name = "transformer.layer.0.ffn.lin1.weight"
    torch.testing.assert_close(
        saved[name], original[f"distilbert.{name}"] if f"distilbert.{name}" in original else original[name]
    )
    q = "transformer.layer.0.attention.q_lin.weight"
    assert not torch.equal(saved[q], original.get(q, original.get(f"distilbert.{q}")))
    config = json.loads((tmp_path / "full" / "config.json").read_text())
    assert config["architectures"] == ["InhibiDistilBertModel"]

    # interrupted between checkpoints (at step 6), then rerun as experiments/reproduce.py does: the same weights
    reset_accelerate_state()
    with interrupted_at(monkeypatch, 6):
        run_distill_general.main(transfer_args(assets, tmp_path / "cut", teacher))
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").glob("checkpoint-*")) == ["checkpoint-4"]
    reset_accelerate_state()
    run_distill_general.main(
        transfer_args(assets, tmp_path / "cut", teacher, resume_from_checkpoint="latest", overwrite_output_dir=True)
    )
    resumed = load_file(tmp_path / "cut" / "model.safetensors")
    assert set(resumed) == set(saved)
    for key, value in saved.items():
        torch.testing.assert_close(resumed[key], value, atol=1e-6, rtol=0, msg=key)


def test_a_dot_product_student_fits_its_softmax_attention_the_same_way(tmp_path):
    student, teacher = tiny_pair(tmp_path)
    torch.manual_seed(3)  # a dot-product student whose attention differs from the teacher's
    DistilBertModel(DistilBertConfig(**DIMS, dropout=0.0, attention_dropout=0.0)).save_pretrained(tmp_path / "o")
    dot_student, _ = init_student_from_pretrained(tmp_path / "o", head="base", attention="dot")
    wrapper = AttentionTransfer(dot_student, teacher)
    assert {n.rsplit(".", 2)[-2] for n, p in wrapper.named_parameters() if p.requires_grad} == {
        "q_lin",
        "k_lin",
        "v_lin",
    }
    input_ids, attention_mask = padded_batch()
    # the teacher fitted to itself has zero loss
    itself = AttentionTransfer(copy.deepcopy(teacher), copy.deepcopy(teacher))
    assert float(itself(input_ids=input_ids, attention_mask=attention_mask).detach().max()) == 0.0
    before = wrapper(input_ids=input_ids, attention_mask=attention_mask).detach()
    optimizer = torch.optim.Adam(attention_parameters(dot_student), lr=1e-2)
    for _ in range(40):
        optimizer.zero_grad()
        wrapper(input_ids=input_ids, attention_mask=attention_mask).mean().backward()
        optimizer.step()
    assert float(wrapper(input_ids=input_ids, attention_mask=attention_mask).detach().mean()) < 0.5 * float(
        before.mean()
    )


def test_the_script_transfers_a_dot_product_student_too(assets, tmp_path, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    teacher = assets["teacher_sst2"]  # a DistilBERT classifier: its encoder's attention is the target
    reset_accelerate_state()
    run_distill_general.main(
        transfer_args(assets, tmp_path / "dot", teacher, student_attention="dot", model_name_or_path=assets["student"])
    )
    config = json.loads((tmp_path / "dot" / "config.json").read_text())
    assert config["architectures"] == ["DistilBertModel"]
    log = [json.loads(line) for line in (tmp_path / "dot" / "log_history.jsonl").read_text().splitlines()]
    evaluations = [r["eval_loss"] for r in log if "eval_loss" in r]
    assert evaluations[-1] < evaluations[0]

"""Deployment: torch.export, torch.compile(fullgraph=True), the ONNX exporters and `inhibidistilbert-export`.

Every traced path runs the model file's traceable L1 distance; each test checks the exported model against the eager
PyTorch forward on batch sizes and lengths other than the traced ones, with padding.
"""

import warnings

import numpy as np
import pytest
import torch

from modeling_inhibidistilbert import (
    InhibiDistilBertConfig,
    InhibiDistilBertForMaskedLM,
    InhibiDistilBertForMultipleChoice,
    InhibiDistilBertForQuestionAnswering,
    InhibiDistilBertForSequenceClassification,
    InhibiDistilBertForTokenClassification,
    InhibiDistilBertModel,
    export,
)

from .conftest import perturb_scalars

onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev extra: pip install -e .[dev]")
pytest.importorskip("onnxscript", reason="onnxscript is in the dev extra (the dynamo ONNX exporter needs it)")

HEADS = [
    InhibiDistilBertModel,
    InhibiDistilBertForMaskedLM,
    InhibiDistilBertForSequenceClassification,
    InhibiDistilBertForTokenClassification,
    InhibiDistilBertForQuestionAnswering,
    InhibiDistilBertForMultipleChoice,
]
SHAPES = ((1, 5), (3, 11), (2, 17))  # (batch, length), none of them the traced (2, 8)


def small_config(**kwargs) -> InhibiDistilBertConfig:
    values = dict(vocab_size=64, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=32)
    return InhibiDistilBertConfig(**{**values, "dropout": 0.0, "attention_dropout": 0.0, **kwargs})


def small_model(head=InhibiDistilBertForSequenceClassification, **kwargs):
    torch.manual_seed(0)
    model = head(small_config(**kwargs)).eval()
    perturb_scalars(model)
    return model


def assert_matches_eager(model, run, tolerance=1e-5):
    for seed, (batch, length) in enumerate(SHAPES):
        inputs = export.example_inputs(model, batch, length, seed=seed)
        with torch.no_grad():
            expected = export.ExportWrapper(model)(**inputs)
        outputs = run(inputs)
        assert len(outputs) == len(expected)
        for got, want in zip(outputs, expected):
            got = got.detach() if isinstance(got, torch.Tensor) else torch.as_tensor(got)
            assert got.shape == want.shape and torch.isfinite(got).all()
            torch.testing.assert_close(got, want, rtol=tolerance, atol=tolerance)


def test_torch_export_with_padding_mask_and_dynamic_batch_and_length(tmp_path):
    """Failed before with GuardOnDataDependentSymNode at `bool(mask.all())` in attention_mask_to_allowed."""
    model = small_model()
    path = export.export_program(model, tmp_path / "model.pt2")
    assert_matches_eager(model, export.exported_runner(path, "torch-export"))


def test_torch_compile_fullgraph_dynamic_with_padding_mask():
    """No graph break anywhere in the forward (fullgraph=True raises on one), dynamic batch and length."""
    model = small_model()
    compiled = torch.compile(export.ExportWrapper(model), fullgraph=True, dynamic=True, backend="eager")
    assert_matches_eager(model, lambda inputs: compiled(**inputs))


# every head, and between them every attention setting: signed or not, centred or not, sum or mean
SETTINGS = [
    {"inhibitor_signed": False, "center_scores": False},
    {"output_normalization": "mean"},
    {},
    {"inhibitor_signed": False},
    {"center_scores": False},
    {"output_normalization": "mean"},
]


@pytest.mark.parametrize("head, settings", zip(HEADS, SETTINGS), ids=[head.__name__ for head in HEADS])
def test_dynamo_onnx_export_of_every_head_matches_pytorch_in_onnxruntime(tmp_path, head, settings):
    """Failed before: the dynamo exporter has no translation of aten::_cdist_forward."""
    model = small_model(head, **settings)
    path = export.export_onnx(model, tmp_path / "model.onnx")
    session = export.onnx_session(path)
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in session.get_outputs()] == export.output_names(model)
    assert_matches_eager(model, export.exported_runner(path, "onnx"))


def test_legacy_torchscript_onnx_exporter_gives_the_same_model_not_nan(tmp_path):
    """`torch.onnx.export(..., dynamo=False)` gave a model that returns NaN (its cdist(p=1) rule has no abs).

    Under torch.jit tracing the model runs its traceable L1 distance, so the legacy export is right as well.
    """
    model = small_model()
    inputs = export.example_inputs(model)
    axes = {0: "batch", 1: "length"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            export.ExportWrapper(model),
            (inputs["input_ids"], inputs["attention_mask"]),
            str(tmp_path / "legacy.onnx"),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
        )
    assert_matches_eager(model, export.exported_runner(tmp_path / "legacy.onnx", "onnx"))


def test_traced_formulation_propagates_nan_like_cdist(monkeypatch):
    from modeling_inhibidistilbert import modeling_inhibidistilbert as modeling
    from modeling_inhibidistilbert.reference import random_case

    q, k, v, gamma, delta, eta, key_mask = random_case(seed=4)
    v[1, 0, 2, 1] = float("nan")
    allowed = key_mask[:, None, None, :]
    eager, eager_scores = modeling.inhibitor_attention_cdist(q, k, v, gamma, delta, eta, allowed)
    monkeypatch.setattr(modeling, "is_tracing", lambda: True)
    traced, traced_scores = modeling.inhibitor_attention_cdist(q, k, v, gamma, delta, eta, allowed)
    assert torch.equal(traced.isnan(), eager.isnan()) and traced[1].isnan().any()
    torch.testing.assert_close(traced, eager, equal_nan=True)
    torch.testing.assert_close(traced_scores, eager_scores)


def test_export_command_writes_a_model_that_runs_in_onnxruntime(tmp_path, tiny_tokenizer, capsys):
    model = small_model(InhibiDistilBertForTokenClassification)
    model.save_pretrained(tmp_path / "folder")
    out = tmp_path / "out" / "model.onnx"
    assert export.main([str(tmp_path / "folder"), str(out), "--format", "onnx"]) == 0
    assert "largest relative |exported - PyTorch|" in capsys.readouterr().out
    batch = tiny_tokenizer(["the movie was good", "bad"], padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    expected = model(
        input_ids=torch.as_tensor(batch["input_ids"]), attention_mask=torch.as_tensor(batch["attention_mask"])
    )
    np.testing.assert_allclose(logits, expected.logits.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_export_command_torch_export_format_and_clear_errors(tmp_path, capsys):
    model = small_model()
    model.save_pretrained(tmp_path / "folder")
    out = tmp_path / "model.pt2"
    assert export.main([str(tmp_path / "folder"), str(out), "--format", "torch-export"]) == 0
    assert_matches_eager(model, export.exported_runner(out, "torch-export"))
    with pytest.raises(SystemExit):
        export.main([str(tmp_path / "nowhere"), str(out), "--format", "onnx"])
    assert "has no config.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export.main([str(tmp_path / "folder"), str(out), "--format", "torch-export", "--benchmark"])
    assert "--benchmark times the ONNX model" in capsys.readouterr().err


def test_benchmark_reports_cpu_threads_and_both_latencies(tmp_path, capsys):
    model = small_model()
    path = export.export_onnx(model, tmp_path / "model.onnx")
    result = export.benchmark_onnx(model, path, batch=2, length=8, threads=1, min_run_time=0.1)
    assert result["onnxruntime_ms"] > 0 and result["pytorch_ms"] > 0 and result["threads"] == 1
    printed = capsys.readouterr().out
    assert "CPU: " in printed and "threads: 1" in printed and "ratio" in printed

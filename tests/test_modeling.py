"""The model and its heads: shapes, outputs, losses, padding invariance, checkpointing, unsupported attention."""

import pytest
import torch
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput

from modeling_inhibidistilbert import (
    InhibiDistilBertConfig,
    InhibiDistilBertForMaskedLM,
    InhibiDistilBertForMultipleChoice,
    InhibiDistilBertForQuestionAnswering,
    InhibiDistilBertForSequenceClassification,
    InhibiDistilBertForTokenClassification,
    InhibiDistilBertModel,
)

from .conftest import perturb_scalars


def inputs(batch=3, length=9, vocab=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=gen)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, length - 3 :] = 0
    ids[mask == 0] = 0
    return ids, mask


def test_weights_have_distilbert_names_and_shapes_plus_per_head_scalars(tiny_config):
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    ours = InhibiDistilBertForMaskedLM(tiny_config).state_dict()
    theirs = DistilBertForMaskedLM(
        DistilBertConfig(**{k: v for k, v in tiny_config.to_dict().items() if k in DistilBertConfig().to_dict()})
    ).state_dict()
    extra = set(ours) - set(theirs)
    assert extra == {
        f"distilbert.transformer.layer.{i}.attention.{p}"
        for i in range(2)
        for p in ("score_scale", "shift", "output_scale")
    }
    assert set(theirs) - set(ours) <= {"distilbert.embeddings.position_ids"}
    for name in set(ours) & set(theirs):
        assert ours[name].shape == theirs[name].shape, name
    assert ours["distilbert.transformer.layer.0.attention.shift"].shape == (tiny_config.n_heads,)


def test_scalars_take_config_init_values(tiny_config):
    model = InhibiDistilBertModel(tiny_config)
    attention = model.transformer.layer[1].attention
    assert torch.all(attention.score_scale == tiny_config.score_scale_init)
    assert torch.all(attention.shift == tiny_config.shift_init)
    assert torch.all(attention.output_scale == tiny_config.output_scale_init)
    frozen = InhibiDistilBertModel(
        InhibiDistilBertConfig(**{**tiny_config.to_dict(), "train_inhibitor_scalars": False})
    )
    assert not frozen.transformer.layer[0].attention.shift.requires_grad


def test_base_model_outputs_hidden_states_and_inhibition_scores(tiny_config):
    model = InhibiDistilBertModel(tiny_config).eval()
    ids, mask = inputs()
    out = model(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert isinstance(out, BaseModelOutput)
    assert out.last_hidden_state.shape == (3, 9, 32)
    assert len(out.hidden_states) == tiny_config.n_layers + 1
    assert len(out.attentions) == tiny_config.n_layers and out.attentions[0].shape == (3, 4, 9, 9)
    assert torch.all(out.attentions[0] >= 0)  # Zbar: shifted distances, not probabilities
    assert torch.all(out.attentions[0][1, :, :, -3:] == 0)  # masked keys
    as_tuple = model(ids, attention_mask=mask, return_dict=False)
    assert isinstance(as_tuple, tuple)
    # without `output_attentions` the fused kernel may run instead of the cdist form: equal to float32 rounding
    torch.testing.assert_close(as_tuple[0], out.last_hidden_state, rtol=1e-5, atol=1e-5)


def test_padding_invariance_same_sentence_different_pad_lengths(tiny_config):
    torch.manual_seed(0)
    model = InhibiDistilBertForSequenceClassification(tiny_config).eval()
    perturb_scalars(model)
    sentence = torch.tensor([[2, 10, 11, 12, 13, 3]])
    reference = model(sentence, output_hidden_states=True)
    for pad in (1, 4, 17):
        ids = torch.cat([sentence, torch.full((1, pad), 7)], dim=1)  # padding with a real token id on purpose
        mask = torch.cat([torch.ones(1, 6), torch.zeros(1, pad)], dim=1).long()
        out = model(ids, attention_mask=mask, output_hidden_states=True)
        torch.testing.assert_close(out.logits, reference.logits, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.hidden_states[-1][:, :6], reference.hidden_states[-1], rtol=1e-5, atol=1e-5)


def test_mean_pooling_head_reads_only_real_tokens(tiny_config):
    """classifier_pooling='mean': the head sees the mean over unpadded tokens, so padding changes nothing, and the
    logits differ from first-token pooling's; a full [B, N, N] mask is refused with a clear error."""
    torch.manual_seed(0)
    tiny_config.classifier_pooling = "mean"
    model = InhibiDistilBertForSequenceClassification(tiny_config).eval()
    perturb_scalars(model)
    sentence = torch.tensor([[2, 10, 11, 12, 13, 3]])
    reference = model(sentence)
    hidden = model.distilbert(sentence).last_hidden_state
    expected = model.classifier(torch.relu(model.pre_classifier(hidden.mean(1))))
    torch.testing.assert_close(reference.logits, expected)
    for pad in (1, 9):
        ids = torch.cat([sentence, torch.full((1, pad), 7)], dim=1)
        mask = torch.cat([torch.ones(1, 6), torch.zeros(1, pad)], dim=1).long()
        torch.testing.assert_close(model(ids, attention_mask=mask).logits, reference.logits, rtol=1e-5, atol=1e-6)
    model.config.classifier_pooling = "first"
    assert not torch.allclose(model(sentence).logits, reference.logits)
    model.config.classifier_pooling = "mean"
    with pytest.raises(ValueError, match="padding mask"):
        model(sentence, attention_mask=torch.ones(1, 6, 6, dtype=torch.bool).tril())
    with pytest.raises(ValueError, match="classifier_pooling"):
        InhibiDistilBertConfig(classifier_pooling="cls")


def test_batched_equals_one_by_one(tiny_config):
    model = InhibiDistilBertForSequenceClassification(tiny_config).eval()
    ids, mask = inputs()
    batched = model(ids, attention_mask=mask).logits
    for row in range(3):
        n = int(mask[row].sum())
        single = model(ids[row : row + 1, :n]).logits
        torch.testing.assert_close(batched[row : row + 1], single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "problem_type, labels",
    [
        ("single_label_classification", torch.tensor([0, 1, 1])),
        ("multi_label_classification", torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])),
    ],
)
def test_sequence_classification_losses(tiny_config, problem_type, labels):
    model = InhibiDistilBertForSequenceClassification(tiny_config)
    ids, mask = inputs()
    out = model(ids, attention_mask=mask, labels=labels)
    assert isinstance(out, SequenceClassifierOutput) and out.loss.ndim == 0 and out.logits.shape == (3, 2)
    assert model.config.problem_type == problem_type
    out.loss.backward()
    assert model.distilbert.transformer.layer[0].attention.shift.grad is not None


def test_regression_head(tiny_config):
    config = InhibiDistilBertConfig(
        **{**tiny_config.to_dict(), "num_labels": 1, "id2label": {0: "LABEL_0"}, "label2id": {"LABEL_0": 0}}
    )
    model = InhibiDistilBertForSequenceClassification(config)
    ids, mask = inputs()
    out = model(ids, attention_mask=mask, labels=torch.tensor([0.5, 2.0, 4.5]))
    assert model.config.problem_type == "regression" and out.logits.shape == (3, 1) and out.loss > 0


def test_other_heads(tiny_config):
    ids, mask = inputs()
    mlm = InhibiDistilBertForMaskedLM(tiny_config)
    out = mlm(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
    assert out.logits.shape == (3, 9, 64) and out.loss > 0
    assert mlm.vocab_projector.weight is mlm.distilbert.embeddings.word_embeddings.weight  # tied
    tok = InhibiDistilBertForTokenClassification(tiny_config)
    assert tok(ids, attention_mask=mask, labels=torch.zeros_like(ids)).logits.shape == (3, 9, 2)
    qa = InhibiDistilBertForQuestionAnswering(tiny_config)
    out = qa(ids, attention_mask=mask, start_positions=torch.tensor([1, 2, 3]), end_positions=torch.tensor([2, 3, 4]))
    assert out.start_logits.shape == (3, 9) and out.loss > 0
    mc = InhibiDistilBertForMultipleChoice(tiny_config)
    out = mc(ids[None].expand(2, -1, -1), attention_mask=mask[None].expand(2, -1, -1), labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and out.loss > 0


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config):
    torch.manual_seed(0)
    model = InhibiDistilBertForSequenceClassification(tiny_config)
    ids, mask = inputs()
    labels = torch.tensor([0, 1, 0])
    model.train()
    torch.manual_seed(1)  # same dropout masks in both runs
    model(ids, attention_mask=mask, labels=labels).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert model.distilbert.transformer.layer[0].gradient_checkpointing
    torch.manual_seed(1)
    model(ids, attention_mask=mask, labels=labels).loss.backward()
    for name, grad in plain.items():
        torch.testing.assert_close(model.get_parameter(name).grad, grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("implementation", ["sdpa", "flash_attention_2", "flex_attention"])
def test_other_attention_implementations_are_refused(tiny_config, implementation, tmp_path):
    InhibiDistilBertModel(tiny_config).save_pretrained(tmp_path)
    with pytest.raises((ValueError, ImportError), match="attn_implementation|not supported|flash|flex"):
        InhibiDistilBertModel.from_pretrained(tmp_path, attn_implementation=implementation)


def test_default_path_runs_the_inhibitor_not_softmax(tiny_config):
    model = InhibiDistilBertModel(tiny_config).eval()
    assert model.config._attn_implementation in (None, "eager")
    ids, mask = inputs()
    before = model(ids, attention_mask=mask).last_hidden_state
    with torch.no_grad():  # the output depends on the inhibitor's own parameters
        model.transformer.layer[0].attention.shift.add_(0.5)
    assert not torch.allclose(before, model(ids, attention_mask=mask).last_hidden_state)


def test_sequence_longer_than_positions_is_a_clear_error(tiny_config):
    model = InhibiDistilBertModel(tiny_config)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.ones(1, 65, dtype=torch.long))


def test_bf16_forward_runs_and_stays_close(tiny_config):
    model = InhibiDistilBertModel(tiny_config).eval()
    ids, mask = inputs()
    ref = model(ids, attention_mask=mask).last_hidden_state
    out = model.to(torch.bfloat16)(ids, attention_mask=mask).last_hidden_state
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.1, atol=0.15)


@pytest.mark.parametrize("bad", ["1d_ids", "3d_ids", "embeds_dim"])
def test_wrong_input_shapes_are_clear_errors(tiny_config, bad):
    model = InhibiDistilBertModel(tiny_config)
    if bad == "1d_ids":
        with pytest.raises(ValueError, match=r"\[batch, length\].*input_ids\[None\]"):
            model(torch.ones(7, dtype=torch.long))
    elif bad == "3d_ids":
        with pytest.raises(ValueError, match=r"\[batch, length\]"):
            model(torch.ones(2, 3, 7, dtype=torch.long))
    else:
        with pytest.raises(ValueError, match=rf"\[batch, length, {tiny_config.dim}\]"):
            model(inputs_embeds=torch.randn(2, 7, tiny_config.dim + 1))


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["auto", "cdist"])
def test_torch_compile_gives_the_same_outputs_and_gradients(tiny_config, implementation):
    """`torch.compile` (inductor) of a training step: same logits and same gradients as eager, with padding.

    Eager `auto` runs the first available form of the table; compiled, every choice traces the model file's
    traceable formulation of the cdist form (`l1_distance`).
    """
    tiny_config.inhibitor_implementation = implementation
    torch.manual_seed(0)
    model = InhibiDistilBertForSequenceClassification(tiny_config).eval()  # no dropout: both runs see the same graph
    perturb_scalars(model)
    ids, mask = inputs()
    labels = torch.tensor([0, 1, 0])

    def step(module):
        module.zero_grad()
        out = module(ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    eager_logits, eager_grads = step(model)
    compiled_logits, compiled_grads = step(torch.compile(model))
    torch.testing.assert_close(compiled_logits, eager_logits, rtol=1e-5, atol=1e-5)
    assert compiled_grads.keys() == eager_grads.keys()
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("implementation", ["cdist", "auto"])
def test_mean_output_normalization_divides_each_rows_sum_by_its_real_keys(tiny_config, implementation):
    from modeling_inhibidistilbert.modeling_inhibidistilbert import (
        attention_mask_to_allowed,
        inhibitor_attention_forward,
    )

    tiny_config.inhibitor_implementation = implementation
    torch.manual_seed(0)
    attention = InhibiDistilBertModel(tiny_config).transformer.layer[0].attention
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 4, 9, 8, generator=gen) for _ in range(3))
    _, mask = inputs()  # row 1 has 6 real tokens, the others 9
    allowed = attention_mask_to_allowed(mask, 3, 9)
    summed, _ = inhibitor_attention_forward(attention, q, k, v, allowed)
    tiny_config.output_normalization = "mean"
    mean, _ = inhibitor_attention_forward(attention, q, k, v, allowed)
    n_keys = torch.tensor([9.0, 6.0, 9.0])[:, None, None, None]
    torch.testing.assert_close(mean, summed / n_keys)
    # padding invariance holds with it too
    model = InhibiDistilBertForSequenceClassification(tiny_config).eval()
    sentence = torch.tensor([[2, 10, 11, 12, 13, 3]])
    padded = torch.cat([sentence, torch.full((1, 5), 7)], dim=1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 5)], dim=1).long()
    torch.testing.assert_close(model(padded, attention_mask=mask).logits, model(sentence).logits, rtol=1e-5, atol=1e-6)


def test_unknown_output_normalization_is_a_clear_error():
    with pytest.raises(ValueError, match="output_normalization='max' is unknown; use 'sum'"):
        InhibiDistilBertConfig(output_normalization="max")


# THE TABLE OF ATTENTION IMPLEMENTATIONS AND ITS KNOB #


class FakeEntry:
    """A table entry that computes with the cdist form and records what it was given."""

    def __init__(self, reason=None):
        self.reason, self.calls = reason, []

    def forward(self, query, key, value, score_scale, shift, output_scale, key_mask, signed, center):
        from modeling_inhibidistilbert.modeling_inhibidistilbert import inhibitor_attention_cdist

        self.calls.append({"dtype": query.dtype, "key_mask": key_mask})
        allowed = None if key_mask is None else key_mask[:, None, None, :]
        return inhibitor_attention_cdist(query, key, value, score_scale, shift, output_scale, allowed, signed, center)[
            0
        ]

    def unsupported(self, query, needs_grad):
        return self.reason


@pytest.fixture
def table(monkeypatch):
    """The attention table with fake `fused` (cannot run: 'no kernel here') and `compiled` (can run) entries."""
    from modeling_inhibidistilbert import modeling_inhibidistilbert as modeling

    fakes = {"fused": FakeEntry("no kernel here"), "compiled": FakeEntry(), "int8": FakeEntry("int8 reason")}
    for name, fake in fakes.items():
        monkeypatch.setitem(
            modeling.ATTENTION_IMPLEMENTATIONS, name, modeling.AttentionImplementation(fake.forward, fake.unsupported)
        )
    return fakes


def test_auto_takes_the_first_entry_that_can_run_and_the_dispatcher_casts_and_normalises_once(tiny_config, table):
    tiny_config.output_normalization = "mean"
    model = InhibiDistilBertModel(tiny_config).eval()
    ids, mask = inputs()
    expected = model(ids, attention_mask=mask, output_attentions=True).last_hidden_state  # cdist (scores asked)
    assert not table["compiled"].calls
    torch.testing.assert_close(model(ids, attention_mask=mask).last_hidden_state, expected)  # "mean" applied once
    assert len(table["compiled"].calls) == tiny_config.n_layers and not table["fused"].calls
    out = model.to(torch.bfloat16)(ids, attention_mask=mask).last_hidden_state
    call = table["compiled"].calls[-1]
    assert call["dtype"] == torch.float32 and call["key_mask"].shape == (3, 9)  # cast up once, bool [B, N] key mask
    assert torch.equal(call["key_mask"], mask.bool())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.1, atol=0.15)


def test_scores_and_per_query_masks_go_to_cdist_under_auto(tiny_config, table):
    model = InhibiDistilBertModel(tiny_config).eval()
    ids, mask = inputs()
    model(ids, attention_mask=mask, output_attentions=True)
    model(ids, attention_mask=torch.ones(3, 9, 9, dtype=torch.bool).tril())
    assert not table["compiled"].calls


@pytest.mark.parametrize(
    "choice, kwargs, reason",
    [
        ("fused", {}, "no kernel here"),
        ("int8", {}, "int8 reason"),
        ("compiled", {"output_attentions": True}, "only the cdist form returns the scores"),
        ("compiled", {"attention_mask": torch.ones(3, 9, 9).tril()}, "only the cdist form takes a per-query mask"),
    ],
)
def test_an_explicit_choice_that_cannot_run_raises_with_the_reason_and_the_fix(
    tiny_config, table, choice, kwargs, reason
):
    tiny_config.inhibitor_implementation = choice
    model = InhibiDistilBertModel(tiny_config).eval()
    with pytest.raises(
        RuntimeError, match=rf"inhibitor_implementation='{choice}' cannot run this call: {reason}.*'auto'"
    ):
        model(inputs()[0], **kwargs)


def test_real_entries_without_their_backend_say_why(tiny_config, monkeypatch):
    """The package-backed entries report an unavailable package (the import happens in the probe, never before)."""
    from modeling_inhibidistilbert import modeling_inhibidistilbert as modeling

    monkeypatch.setattr(modeling, "_KERNELS_PACKAGE", {"module": None, "error": "not installed (test)"})
    tiny_config.inhibitor_implementation = "fused"
    with pytest.raises(RuntimeError, match=r"'fused' cannot run this call: not installed \(test\)"):
        InhibiDistilBertModel(tiny_config)(inputs()[0])
    tiny_config.inhibitor_implementation = "auto"
    off = modeling.AttentionImplementation(None, lambda query, needs_grad: "off in this test")
    monkeypatch.setitem(modeling.ATTENTION_IMPLEMENTATIONS, "compiled", off)
    InhibiDistilBertModel(tiny_config)(inputs()[0])  # auto falls back to cdist without an error


def test_the_implementation_that_ran_is_logged_at_debug_level(tiny_config, table, monkeypatch, caplog):
    import logging

    from modeling_inhibidistilbert import modeling_inhibidistilbert as modeling

    monkeypatch.setattr(modeling, "_LOGGED", set())
    model = InhibiDistilBertModel(tiny_config).eval()
    with caplog.at_level(logging.DEBUG, logger=modeling.logger.name):
        model(inputs()[0])
        model(inputs()[0], output_attentions=True)
    messages = [r.getMessage() for r in caplog.records if r.name == modeling.logger.name]
    assert messages == [
        "InhibiDistilBERT attention runs the 'compiled' implementation on cpu",
        "InhibiDistilBERT attention runs the 'cdist' implementation on cpu",
    ]  # once per name and device


def test_a_choice_set_after_construction_is_checked_where_it_is_used(tiny_config):
    """Before, `config.inhibitor_implementation = "bogus"` ran silently as auto (and a bad pooling as 'first')."""
    model = InhibiDistilBertForSequenceClassification(tiny_config).eval()
    for field in ("inhibitor_implementation", "output_normalization", "classifier_pooling"):
        good = getattr(model.config, field)
        setattr(model.config, field, "bogus")
        with pytest.raises(ValueError, match=rf"InhibiDistilBertConfig.{field}='bogus' is unknown; use '"):
            model(inputs()[0])
        setattr(model.config, field, good)


def test_importing_the_model_file_does_not_import_the_kernel_package():
    """The package (which may build C++ code) is imported on the first attention call, not at import."""
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "import modeling_inhibidistilbert as m\n"
        "assert 'inhibidistilbert_kernels' not in sys.modules, 'imported at import time'\n"
        "config = m.InhibiDistilBertConfig(vocab_size=16, dim=8, n_heads=2, n_layers=1, hidden_dim=8)\n"
        "m.InhibiDistilBertModel(config)(torch.ones(1, 3, dtype=torch.long))\n"
        "from modeling_inhibidistilbert.modeling_inhibidistilbert import _KERNELS_PACKAGE\n"
        "assert _KERNELS_PACKAGE, 'the first call asks for the package'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("mask_kind", ["padding", "per_query"])
def test_returned_attentions_are_the_tensors_the_output_was_computed_from(tiny_config, mask_kind):
    """transformers' test_retain_grad_hidden_states_attentions: failed before (the scores were a masked copy)."""
    model = InhibiDistilBertModel(tiny_config)
    ids, mask = inputs()
    if mask_kind == "per_query":
        mask = mask[:, None, :] * torch.ones(9, 9, dtype=torch.long).tril()
    out = model(ids, attention_mask=mask, output_attentions=True)
    attentions = out.attentions[0]
    attentions.retain_grad()
    out.last_hidden_state.flatten()[0].backward()
    assert attentions.grad is not None and attentions.grad.abs().sum() > 0


def test_every_mask_form_gives_the_same_model_output(tiny_config):
    model = InhibiDistilBertModel(tiny_config).eval()
    ids, mask = inputs()
    expected = model(ids, attention_mask=mask).last_hidden_state
    for form in (
        mask.bool(),
        (1.0 - mask.float()) * -10000.0,
        (1.0 - mask.float())[:, None, None, :] * torch.finfo(torch.float32).min,
        mask[:, None, :].expand(-1, 9, -1),  # per-query by shape: the cdist form's per-query path
    ):
        out = model(ids, attention_mask=form).last_hidden_state
        torch.testing.assert_close(out[mask.bool()], expected[mask.bool()], rtol=1e-5, atol=1e-5)
    # an all-ones mask and no mask are the same
    ones = model(ids, attention_mask=torch.ones_like(mask)).last_hidden_state
    torch.testing.assert_close(ones, model(ids).last_hidden_state, rtol=1e-6, atol=1e-6)


def test_from_config_on_a_fresh_config_builds_a_random_model(tiny_config):
    """`AutoModel.from_config(InhibiDistilBertConfig(...), trust_remote_code=True)`, the package imported."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    for auto, cls in (
        (AutoModel, InhibiDistilBertModel),
        (AutoModelForSequenceClassification, InhibiDistilBertForSequenceClassification),
    ):
        for trust in (True, None):
            assert (
                type(auto.from_config(InhibiDistilBertConfig(**tiny_config.to_dict()), trust_remote_code=trust)) is cls
            )

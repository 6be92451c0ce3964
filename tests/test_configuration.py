"""InhibiDistilBertConfig: DistilBERT's fields and names, the inhibitor settings, and clear errors on bad values."""

import re

import pytest
from transformers import DistilBertConfig

from modeling_inhibidistilbert import AUTO_MAP, InhibiDistilBertConfig


def test_defaults_match_distilbert_and_standard_names_map():
    ours, theirs = InhibiDistilBertConfig(), DistilBertConfig()
    for field in (
        "vocab_size",
        "dim",
        "n_layers",
        "n_heads",
        "hidden_dim",
        "dropout",
        "attention_dropout",
        "activation",
        "max_position_embeddings",
        "sinusoidal_pos_embds",
        "pad_token_id",
        "initializer_range",
        "seq_classif_dropout",
        "qa_dropout",
        "tie_word_embeddings",
    ):
        assert getattr(ours, field) == getattr(theirs, field), field
    assert ours.attribute_map == theirs.attribute_map
    assert (ours.hidden_size, ours.num_attention_heads, ours.num_hidden_layers) == (768, 12, 6)
    assert ours.model_type == "inhibidistilbert"
    assert ours.inhibitor_signed is True and ours.center_scores is True


def test_config_round_trips_with_full_auto_map(tmp_path):
    config = InhibiDistilBertConfig(dim=64, n_heads=4, inhibitor_signed=False, shift_init=0.25)
    config.save_pretrained(tmp_path)
    loaded = InhibiDistilBertConfig.from_pretrained(tmp_path)
    assert loaded.inhibitor_signed is False and loaded.shift_init == 0.25 and loaded.dim == 64
    assert loaded.auto_map == AUTO_MAP


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"dim": 100, "n_heads": 12}, "dim"),
        ({"n_layers": 0}, "n_layers"),
        ({"n_heads": 0}, "n_heads"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"max_position_embeddings": 2.5}, "max_position_embeddings"),
        ({"hidden_dim": -5}, "hidden_dim"),
        ({"activation": "softmax"}, "activation"),
        ({"score_scale_init": -1.0}, "score_scale_init"),
        ({"output_scale_init": -0.1}, "output_scale_init"),
        ({"dropout": 1.5}, "dropout"),
        ({"inhibitor_implementation": "flash"}, "inhibitor_implementation"),
        ({"shift_init": float("nan")}, "shift_init must be a finite number"),
        ({"shift_init": float("-inf")}, "shift_init must be a finite number"),
        ({"output_scale_init": float("inf")}, "output_scale_init must be a finite number"),
        ({"score_scale_init": float("inf")}, "score_scale_init must be a finite number"),
    ],
)
def test_invalid_values_raise_a_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        InhibiDistilBertConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, fix",
    [
        ({"dim": 100, "n_heads": 12}, r"nearest: 10 or 20\) or dim to a multiple of n_heads \(e\.g\. 108\)"),
        ({"dim": 768, "n_heads": 7}, r"nearest: 6 or 8\) or dim to a multiple of n_heads \(e\.g\. 770\)"),
        ({"n_layers": 0}, "must be a positive integer"),
        ({"activation": "softmax"}, "use one of gelu, relu"),
        ({"score_scale_init": -1.0}, "must be non-negative"),
    ],
)
def test_error_messages_name_a_fix_that_works(kwargs, fix):
    with pytest.raises(ValueError, match=fix) as info:
        InhibiDistilBertConfig(**kwargs)
    suggested = re.search(r"nearest: (\d+) or (\d+)\) or dim to a multiple of n_heads \(e\.g\. (\d+)", str(info.value))
    if suggested:  # every suggestion gives a valid config
        first, second, dim = map(int, suggested.groups())
        InhibiDistilBertConfig(dim=kwargs["dim"], n_heads=first)
        InhibiDistilBertConfig(dim=kwargs["dim"], n_heads=second)
        InhibiDistilBertConfig(dim=dim, n_heads=kwargs["n_heads"])


def test_every_implementation_value_is_accepted_and_documented():
    from modeling_inhibidistilbert.configuration_inhibidistilbert import INHIBITOR_IMPLEMENTATIONS

    assert INHIBITOR_IMPLEMENTATIONS == ("auto", "cdist", "compiled", "triton", "fused", "int8")
    for value in INHIBITOR_IMPLEMENTATIONS:
        assert InhibiDistilBertConfig(inhibitor_implementation=value).inhibitor_implementation == value
        assert f'`"{value}"`' in InhibiDistilBertConfig.__doc__
    assert InhibiDistilBertConfig(shift_init=-0.5).shift_init == -0.5  # a shift may be negative


def test_a_value_set_after_construction_is_refused_by_checked():
    config = InhibiDistilBertConfig()
    config.inhibitor_implementation = "bogus"
    with pytest.raises(ValueError, match="inhibitor_implementation='bogus' is unknown; use 'auto'"):
        config.checked("inhibitor_implementation")


def test_saved_auto_map_names_only_the_files_next_to_the_config(tmp_path, monkeypatch):
    """A fresh config of a class loaded as remote code points its auto_map at that code's source; saved, it does not."""
    monkeypatch.setattr(InhibiDistilBertConfig, "_code_source", "/some/folder")
    config = InhibiDistilBertConfig()
    assert config.auto_map["AutoModel"] == "/some/folder--modeling_inhibidistilbert.InhibiDistilBertModel"
    config.save_pretrained(tmp_path)
    assert "/some/folder" not in (tmp_path / "config.json").read_text()
    monkeypatch.setattr(InhibiDistilBertConfig, "_code_source", None)
    assert InhibiDistilBertConfig.from_pretrained(tmp_path).auto_map == AUTO_MAP

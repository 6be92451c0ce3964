"""Shared fixtures: tiny random models and a tiny tokenizer built on the fly (nothing is downloaded)."""

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

TINY_WORDS = "the a movie film good bad great awful plot acting is was not very fun boring love hate it this".split()


@pytest.fixture
def tiny_config():
    from modeling_inhibidistilbert import InhibiDistilBertConfig

    return InhibiDistilBertConfig(
        vocab_size=64,
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=64,
        max_position_embeddings=64,
        dropout=0.0,
        attention_dropout=0.0,
        shift_init=0.1,
        output_scale_init=0.1,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )


@pytest.fixture
def tiny_vocab_file(tmp_path) -> Path:
    path = tmp_path / "vocab.txt"
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path.write_text("\n".join(specials + TINY_WORDS + [".", ","]) + "\n")
    return path


@pytest.fixture
def tiny_tokenizer(tiny_vocab_file):
    from transformers import BertTokenizer

    # transformers 5.x ignores `vocab_file=` here (every word would become [UNK]); pass the vocabulary itself.
    words = tiny_vocab_file.read_text().split()
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(words)}, do_lower_case=True)
    assert tokenizer.unk_token_id not in tokenizer("the movie was good")["input_ids"]
    return tokenizer


def perturb_scalars(model, seed: int = 0) -> None:
    """Give every per-head scalar a distinct non-default value, so tests notice if one is lost or re-initialised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("score_scale", "shift", "output_scale")):
                param.add_(0.05 * torch.rand(param.shape, generator=gen))

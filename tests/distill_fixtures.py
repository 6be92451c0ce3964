"""Shared test helpers for the distillation tests: GLUE-layout data fixtures and tiny models, all built locally.

Data: a few dozen rows of the real files when `../shared/data` exists beside the repository (as on CI), synthetic
rows in the same layout otherwise. Models: a tokenizer built from the fixture's own words, a tiny random DistilBERT
teacher (dim 32) and a tiny InhibiDistilBERT student checkpoint with the same vocabulary. Nothing downloads.
"""

from __future__ import annotations

import csv
import os
import random
import re
import socket
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY = {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64, "max_position_embeddings": 128}

# (folder, file, header) of the real files copied into the fixture; CoLA has no header row.
_FILES = {
    "SST-2": ("sentence\tlabel", True),
    "STS-B": ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore", True),
    "MRPC": ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String", True),
    "CoLA": (None, False),
    "RTE": ("index\tsentence1\tsentence2\tlabel", True),
}
_WORDS = "the a film movie good bad great awful plot actor story man woman dog cat runs sleeps is was very not".split()


def _synthetic_row(folder: str, i: int, rng: random.Random) -> str:
    def sentence() -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 12))) + " ."

    if folder == "SST-2":
        return f"{sentence()}\t{i % 2}"
    if folder == "STS-B":
        return f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{sentence()}\t{sentence()}\t{rng.uniform(0, 5):.3f}"
    if folder == "MRPC":
        return f"{i % 2}\t{1000 + i}\t{2000 + i}\t{sentence()}\t{sentence()}"
    if folder == "CoLA":
        return f"gj04\t{i % 2}\t\t{sentence()}"
    return f"{i}\t{sentence()}\t{sentence()}\t{'entailment' if i % 2 else 'not_entailment'}"


def write_glue_fixture(root: Path, n_train: int = 48, n_dev: int = 24, seed: int = 0) -> Path:
    """A folder in the original GLUE layout (SST-2, STS-B, MRPC, CoLA, RTE; train.tsv and dev.tsv)."""
    rng = random.Random(seed)
    for folder, (header, has_header) in _FILES.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, count in (("train.tsv", n_train), ("dev.tsv", n_dev)):
            real = SHARED_DATA / folder / name
            if real.is_file():
                lines = real.read_text(encoding="utf-8").splitlines()
                rows = lines[1 if has_header else 0 :][:count]
                header_line = lines[0] if has_header else None
            else:
                rows = [_synthetic_row(folder, i, rng) for i in range(count)]
                header_line = header
            text = "\n".join(([header_line] if header_line is not None else []) + rows) + "\n"
            (root / folder / name).write_text(text, encoding="utf-8")
    return root


def fixture_texts(root: Path) -> list[str]:
    """Every text of the fixture (to build a vocabulary that covers it)."""
    texts = []
    for folder, (_, has_header) in _FILES.items():
        for name in ("train.tsv", "dev.tsv"):
            frame = pd.read_csv(
                root / folder / name,
                sep="\t",
                quoting=csv.QUOTE_NONE,
                keep_default_na=False,
                header=0 if has_header else None,
                dtype=str,
                encoding="utf-8-sig",
            )
            for column in frame.columns:
                texts.extend(str(value) for value in frame[column])
    return texts


def make_tokenizer(folder: Path, texts: list[str]):
    """A WordPiece tokenizer over the lower-cased words and punctuation of `texts`, saved to `folder`."""
    from transformers import BertTokenizer

    words = sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(SPECIAL_TOKENS + words) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(vocab_file))
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_teacher(folder: Path, tokenizer, num_labels: int, id2label: dict | None = None, seed: int = 0, **config):
    """A tiny random DistilBERT sequence classifier (the teacher), saved with the tokenizer."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(seed)
    values = {**TINY, **config}
    labels = {}
    if id2label:
        labels = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    model = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=len(tokenizer), num_labels=num_labels, **labels, **values)
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_student_init(folder: Path, tokenizer, seed: int = 1, head: str = "base", **config) -> Path:
    """A tiny random InhibiDistilBERT checkpoint (the student's initialisation), saved with the tokenizer."""
    import torch

    from modeling_inhibidistilbert import InhibiDistilBertConfig, InhibiDistilBertForMaskedLM, InhibiDistilBertModel

    torch.manual_seed(seed)
    config = InhibiDistilBertConfig(vocab_size=len(tokenizer), **{**TINY, **config})
    model = (InhibiDistilBertForMaskedLM if head == "masked-lm" else InhibiDistilBertModel)(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_assets(root: Path) -> dict[str, Path]:
    """The GLUE fixture, a tokenizer, random teachers for SST-2/STS-B/MRPC and a student init, under `root`."""
    data = write_glue_fixture(root / "data")
    tokenizer = make_tokenizer(root / "tokenizer", fixture_texts(data))
    return {
        "root": root,
        "data": data,
        "tokenizer": root / "tokenizer",
        "teacher_sst2": make_teacher(root / "teacher_sst2", tokenizer, 2, {0: "negative", 1: "positive"}),
        "teacher_mrpc": make_teacher(root / "teacher_mrpc", tokenizer, 2, {0: "not_equivalent", 1: "equivalent"}),
        "teacher_stsb": make_teacher(root / "teacher_stsb", tokenizer, 1),
        "student": make_student_init(root / "student", tokenizer),
        "student_nodrop": make_student_init(
            root / "student_nodrop", tokenizer, dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0
        ),
    }


def tiny_args(task: str, output_dir: Path, assets: dict, mode: str = "distill", **overrides) -> list[str]:
    """Command-line arguments of a tiny, fast run of run_glue_distill.py (overrides: argument=value, None drops)."""
    args = {
        "task_name": task,
        "mode": mode,
        "model_name_or_path": assets["student"],
        "data_dir": assets["data"],
        "output_dir": output_dir,
        "max_seq_length": 64,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "learning_rate": 3e-3,
        "num_train_epochs": 2,
        "logging_steps": 1,
        "seed": 7,
    }
    if mode == "distill":
        args["teacher_name_or_path"] = assets.get(f"teacher_{task}")
    args.update(overrides)
    argv = []
    for key, value in args.items():
        if value is True:
            argv.append(f"--{key}")
        elif value is not None and value is not False:
            argv += [f"--{key}", str(value)]
    return argv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env() -> dict[str, str]:
    """Environment for script subprocesses: one thread each, offline, the repository importable."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    return env


def reset_accelerate_state() -> None:
    """Let the next in-process run build a fresh Accelerator (its state is a process-wide singleton)."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()


@contextmanager
def interrupted_at(monkeypatch, step: int):
    """A simulated crash (KeyboardInterrupt) at the first micro-batch of optimizer step `step` of the engine's loop."""
    from modeling_inhibidistilbert.distill import engine

    original = engine.check_finite_loss

    def crash(accelerator, loss, components, where, last_checkpoint):
        if where.startswith(f"step {step},"):
            raise KeyboardInterrupt("simulated crash between checkpoints")
        return original(accelerator, loss, components, where, last_checkpoint)

    monkeypatch.setattr(engine, "check_finite_loss", crash)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(engine, "check_finite_loss", original)

"""Initialise an InhibiDistilBERT (or a dot-product DistilBERT) student from a DistilBERT or BERT-layout checkpoint.

Every InhibiDistilBERT weight except the per-head scalars has DistilBERT's name and shape, so a DistilBERT checkpoint
copies one to one. A BERT-layout checkpoint (BERT, MiniLM, ...) maps onto DistilBERT's names; DistilBERT has no
token-type embeddings, so `token_type_embeddings[0]` is folded into the position embeddings (exact for inputs
whose token types are all 0, as in single-segment use). BERT's pooler has no DistilBERT counterpart and is dropped.

Command line: `inhibidistilbert-convert SRC OUT [--head sequence-classification --num_labels 2]`. A checkpoint it
cannot use (no such folder, unreadable weights, a config that is not DistilBERT or BERT-layout) gets one `error:`
line naming the problem and the fix, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import DistilBertConfig, PreTrainedModel

from .configuration_inhibidistilbert import InhibiDistilBertConfig

HEADS = (
    "base",
    "masked-lm",
    "sequence-classification",
    "token-classification",
    "question-answering",
    "multiple-choice",
)

# BERT name (after the optional "bert." prefix) -> DistilBERT name, per layer.
_BERT_LAYER_MAP = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}
_BERT_HEAD_MAP = {
    "cls.predictions.transform.dense": "vocab_transform",
    "cls.predictions.transform.LayerNorm": "vocab_layer_norm",
    "cls.predictions.decoder": "vocab_projector",
}
# Head tensors: their shape depends on the task, so a mismatch can be skipped with ignore_mismatched_sizes.
_HEAD_PREFIXES = ("pre_classifier.", "classifier.", "qa_outputs.", "vocab_projector.bias")


@dataclass
class ConversionReport:
    """What a conversion did: tensors copied, created new (initialised), dropped from the source, and folded."""

    source: str
    source_model_type: str
    copied: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    folded: list[str] = field(default_factory=list)
    skipped_mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"Converted {self.source} ({self.source_model_type}): {len(self.copied)} tensors copied, "
            f"{len(self.new)} new, {len(self.dropped)} dropped, {len(self.folded)} folded."
        ]
        for name in ("new", "dropped", "folded", "skipped_mismatched"):
            if getattr(self, name):
                lines.append(f"  {name}: {', '.join(getattr(self, name))}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return asdict(self)


class CheckpointError(ValueError):
    """A source checkpoint that cannot be converted; the message names the problem and the fix."""


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _resolve_folder(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the checkpoint folder that holds config.json and the weights.")
    name = str(name_or_path)
    if not _HUB_ID.match(name) or name.startswith((".", "~")) or os.path.isabs(name):
        raise FileNotFoundError(
            f"No checkpoint folder at {path}: pass an existing folder with config.json and the weights, or a Hub "
            "model id (OWNER/NAME)."
        )
    from huggingface_hub import snapshot_download  # a Hub id: download config and weights only

    try:
        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as err:  # not found, offline, no access: the cause is in the message
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(
            f"{name} is not a local folder, and the Hub model {name!r} could not be fetched ({reason}). Pass an "
            "existing checkpoint folder, or a Hub model id that is reachable (HF_HUB_OFFLINE=1 allows only ids "
            "already in the local cache)."
        ) from err


def load_checkpoint(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read `config.json` and the weights (safetensors, sharded or not; `pytorch_model.bin` with weights_only)."""
    config = read_source_config(folder)
    state: dict[str, torch.Tensor] = {}
    if (folder / "model.safetensors").is_file():
        state = _load_weights(folder / "model.safetensors")
    elif (folder / "model.safetensors.index.json").is_file():
        index = _read_json(folder / "model.safetensors.index.json")
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(
                f"{folder / 'model.safetensors.index.json'} has no weight_map; re-save or re-download the checkpoint."
            )
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise FileNotFoundError(
                    f"The shard {shard} listed in {folder / 'model.safetensors.index.json'} is missing; copy every "
                    "shard into the folder or re-download the checkpoint."
                )
            state.update(_load_weights(folder / shard))
    elif (folder / "pytorch_model.bin").is_file():
        state = _load_weights(folder / "pytorch_model.bin")
    else:
        raise FileNotFoundError(f"No model.safetensors (or pytorch_model.bin) in {folder}.")
    return config, state


def read_source_config(folder: Path) -> dict:
    """The checkpoint's config.json, checked to describe a DistilBERT or BERT-layout model (before any weight loads)."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"No config.json in {folder}: pass a transformers checkpoint folder.")
    config = _read_json(config_file)
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file} is not a JSON object; re-save or re-download the checkpoint.")
    try:
        student_config_from(config)  # raises for a model type this converter cannot map
    except KeyError as err:
        raise CheckpointError(
            f"{config_file} lacks {err.args[0]!r}, which a {config.get('model_type', 'BERT-layout')} config needs; "
            "re-save or re-download the checkpoint."
        ) from err
    return config


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); re-save or re-download the checkpoint.") from err


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A weights file as a state dict; a truncated or corrupt file raises `CheckpointError` naming it."""
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors' SafetensorError, pickle and zip errors: the file is unusable either way
        raise CheckpointError(
            f"{path} is not a readable {'safetensors' if path.suffix == '.safetensors' else 'PyTorch'} weights file "
            f"({type(err).__name__}: {err}); re-download or re-save the checkpoint."
        ) from err


def _canonical_distilbert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    out, dropped = {}, []
    for name, tensor in state.items():
        key = name.removeprefix("distilbert.")
        if key.startswith(("embeddings.", "transformer.")) and "position_ids" not in key:
            out[key] = tensor
        elif key.startswith(("vocab_transform.", "vocab_layer_norm.", "vocab_projector.") + _HEAD_PREFIXES[:3]):
            out[key] = tensor
        else:
            dropped.append(name)
    return out, dropped, []


def _canonical_bert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    out, dropped, folded = {}, [], []
    bare = {name.removeprefix("bert."): tensor for name, tensor in state.items()}
    for key, tensor in bare.items():
        if key.startswith("embeddings."):
            sub = key.removeprefix("embeddings.")
            if sub in ("word_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias"):
                out[key] = tensor
            elif sub == "position_embeddings.weight":
                token_type = bare.get("embeddings.token_type_embeddings.weight")
                out[key] = tensor + (token_type[0] if token_type is not None else 0)
            elif sub == "token_type_embeddings.weight":
                folded.append("bert.embeddings.token_type_embeddings.weight[0] -> embeddings.position_embeddings")
            else:
                dropped.append(key)
        elif m := re.match(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", key):
            layer, module, kind = m.groups()
            if module in _BERT_LAYER_MAP:
                out[f"transformer.layer.{layer}.{_BERT_LAYER_MAP[module]}.{kind}"] = tensor
            else:
                dropped.append(key)
        elif key == "cls.predictions.bias":
            out["vocab_projector.bias"] = tensor
        elif (m := re.match(r"(cls\.predictions\.[\w.]+)\.(weight|bias)$", key)) and m.group(1) in _BERT_HEAD_MAP:
            out[f"{_BERT_HEAD_MAP[m.group(1)]}.{m.group(2)}"] = tensor
        else:
            dropped.append(key)  # pooler, NSP head, BERT's task heads (they sit on the tanh pooler)
    if "vocab_projector.bias" not in out and "cls.predictions.decoder.bias" in bare:
        out["vocab_projector.bias"] = bare["cls.predictions.decoder.bias"]
    return out, dropped, folded


def student_config_from(source_config: dict, **overrides) -> dict:
    """DistilBERT-field config values from a DistilBERT or BERT-layout `config.json` dict."""
    model_type = source_config.get("model_type", "")
    if model_type in ("distilbert", "inhibidistilbert"):
        keys = [k for k in DistilBertConfig().to_dict() if k in source_config]
        values = {k: source_config[k] for k in keys}
    elif "num_hidden_layers" in source_config and "hidden_size" in source_config:
        activation = source_config.get("hidden_act", "gelu")
        values = {
            "vocab_size": source_config["vocab_size"],
            "max_position_embeddings": source_config.get("max_position_embeddings", 512),
            "n_layers": source_config["num_hidden_layers"],
            "n_heads": source_config["num_attention_heads"],
            "dim": source_config["hidden_size"],
            "hidden_dim": source_config["intermediate_size"],
            "dropout": source_config.get("hidden_dropout_prob", 0.1),
            "attention_dropout": source_config.get("attention_probs_dropout_prob", 0.1),
            "activation": activation if isinstance(activation, str) else "gelu",
            "initializer_range": source_config.get("initializer_range", 0.02),
            "pad_token_id": source_config.get("pad_token_id", 0),
        }
        if source_config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                "Only absolute position embeddings map onto DistilBERT; this checkpoint uses "
                f"{source_config['position_embedding_type']!r}."
            )
    else:
        raise CheckpointError(
            f"Cannot initialise a DistilBERT-layout student from model_type={model_type!r}: "
            "pass a DistilBERT or BERT-layout checkpoint (BERT, MiniLM, ...)."
        )
    for key in ("id2label", "label2id", "problem_type"):
        if key in source_config and key not in overrides:
            values[key] = source_config[key]
    values.update(overrides)
    return values


def model_class_for(head: str, attention: str = "inhibitor") -> type[PreTrainedModel]:
    """The model class of a head, for the inhibitor student or the dot-product DistilBERT baseline."""
    if head not in HEADS:
        raise ValueError(f"Unknown head {head!r}; use one of {', '.join(HEADS)}.")
    suffix = {
        "base": "Model",
        "masked-lm": "ForMaskedLM",
        "sequence-classification": "ForSequenceClassification",
        "token-classification": "ForTokenClassification",
        "question-answering": "ForQuestionAnswering",
        "multiple-choice": "ForMultipleChoice",
    }[head]
    if attention == "inhibitor":
        from . import modeling_inhibidistilbert as module

        return getattr(module, f"InhibiDistilBert{suffix}")
    if attention == "dot":
        import transformers

        return getattr(transformers, f"DistilBert{suffix}")
    raise ValueError(f"Unknown attention {attention!r}; use 'inhibitor' or 'dot'.")


def init_student_from_pretrained(
    name_or_path: str | os.PathLike,
    head: str = "sequence-classification",
    attention: str = "inhibitor",
    ignore_mismatched_sizes: bool = False,
    **config_overrides,
) -> tuple[PreTrainedModel, ConversionReport]:
    """Build a student (inhibitor or `attention="dot"` DistilBERT) initialised from a DistilBERT/BERT checkpoint.

    Returns the model (in train mode, like `from_pretrained`) and a `ConversionReport`. A tensor whose shape differs
    from the student's raises a ValueError naming it; `ignore_mismatched_sizes=True` re-initialises task-head tensors
    (classifier, QA outputs) instead, never encoder tensors.
    """
    folder = _resolve_folder(name_or_path)
    source_config, state = load_checkpoint(folder)
    model_type = source_config.get("model_type", "")
    if model_type in ("distilbert", "inhibidistilbert"):
        canonical, dropped, folded = _canonical_distilbert(state)
    else:
        canonical, dropped, folded = _canonical_bert(state)
    values = student_config_from(source_config, **config_overrides)
    config_class = InhibiDistilBertConfig if attention == "inhibitor" else DistilBertConfig
    if attention == "inhibitor" and model_type == "inhibidistilbert":
        for key in InhibiDistilBertConfig().to_dict():  # keep the source's inhibitor settings unless overridden
            if key.startswith(("inhibitor_", "center_", "score_", "shift_", "output_scale", "train_inhib")):
                values.setdefault(key, source_config.get(key, getattr(InhibiDistilBertConfig(), key)))
    if attention == "dot":
        values.pop("auto_map", None)
    config = config_class(**values)
    model = model_class_for(head, attention)(config)

    report = ConversionReport(source=str(name_or_path), source_model_type=model_type, dropped=dropped, folded=folded)
    target = model.state_dict()
    to_load = {}
    prefix = "" if head == "base" else "distilbert."
    for name, tensor in target.items():
        key = name.removeprefix(prefix) if name.startswith(prefix) else name
        if model_type == "inhibidistilbert" and key in state:  # inhibitor scalars of an inhibitor source
            canonical.setdefault(key, state[key])
        elif model_type == "inhibidistilbert" and f"distilbert.{key}" in state:
            canonical.setdefault(key, state[f"distilbert.{key}"])
        source_tensor = canonical.pop(key, None)
        if source_tensor is None:
            report.new.append(name)
        elif source_tensor.shape != tensor.shape:
            if ignore_mismatched_sizes and key.startswith(_HEAD_PREFIXES):
                report.skipped_mismatched.append(f"{name}: {tuple(source_tensor.shape)} -> {tuple(tensor.shape)}")
                report.new.append(name)
            else:
                raise ValueError(
                    f"Shape mismatch for {name}: checkpoint has {tuple(source_tensor.shape)}, the student needs "
                    f"{tuple(tensor.shape)}. Check the config overrides"
                    + (
                        ", or pass ignore_mismatched_sizes=True to re-initialise this task head."
                        if key.startswith(_HEAD_PREFIXES)
                        else "."
                    )
                )
        else:
            to_load[name] = source_tensor.to(tensor.dtype)
            report.copied.append(name)
    report.dropped.extend(sorted(canonical))  # mapped, but the chosen head does not use them
    model.load_state_dict(to_load, strict=False)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    tied = "vocab_projector.weight"
    if tied in report.new and head == "masked-lm" and config.tie_word_embeddings:
        report.new.remove(tied)
        report.copied.append(f"{tied} (tied to word embeddings)")
    return model, report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="DistilBERT or BERT-layout checkpoint folder (or Hub id)")
    parser.add_argument("output_dir", help="folder to write the InhibiDistilBERT checkpoint to")
    parser.add_argument("--head", default="masked-lm", choices=HEADS)
    parser.add_argument("--attention", default="inhibitor", choices=("inhibitor", "dot"))
    parser.add_argument("--num_labels", type=int, default=None)
    parser.add_argument("--ignore_mismatched_sizes", action="store_true")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. --set output_scale_init=0.1 inhibitor_signed=false",
    )
    parser.add_argument("--overwrite_output_dir", action="store_true")
    args = parser.parse_args(argv)

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key] = (
            json.loads(value.lower() if value.lower() in ("true", "false", "null") else value)
            if re.fullmatch(r"-?[\d.eE+-]+|true|false|null|True|False", value)
            else value
        )
    if args.num_labels is not None:
        overrides["num_labels"] = args.num_labels
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite_output_dir:
        parser.error(f"{out} is not empty; pass --overwrite_output_dir to replace its contents.")
    try:
        model, report = init_student_from_pretrained(
            args.source,
            head=args.head,
            attention=args.attention,
            ignore_mismatched_sizes=args.ignore_mismatched_sizes,
            **overrides,
        )
    except (OSError, ValueError) as err:  # CheckpointError, missing files, shapes, config values: one clear line
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.attention == "inhibitor":
        from . import register_auto_classes

        register_auto_classes()
    model.save_pretrained(out)
    try:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(_resolve_folder(args.source)).save_pretrained(out)
    except (OSError, ValueError) as err:
        print(f"No tokenizer copied ({err}); add one with tokenizer.save_pretrained({str(out)!r}).")
    (out / "conversion_report.json").write_text(json.dumps(report.to_dict(), indent=2))
    print(report.summary())
    print(f"Saved to {out}")


if __name__ == "__main__":
    main()

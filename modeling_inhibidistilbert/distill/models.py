"""Students and teachers: build the student from a checkpoint, load and check the teacher.

Every check here runs before training, so a wrong combination (label count, label names, tokenizer vocabulary, hidden
size) fails with a message instead of a silently wrong run.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

from ..convert import init_student_from_pretrained
from ..tasks import TaskSpec

INHIBITOR_OVERRIDES = (
    "inhibitor_signed",
    "center_scores",
    "train_inhibitor_scalars",
    "score_scale_init",
    "shift_init",
    "output_scale_init",
    "output_normalization",
    "classifier_pooling",
)
_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")


class ModelSetupError(ValueError):
    """Student, teacher and task do not fit together (labels, vocabulary, sizes)."""


def read_config(name_or_path: str | os.PathLike) -> dict:
    """`config.json` of a local folder or a Hub model id, as a dict."""
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSetupError(f"{path} has no config.json: pass a transformers model folder.")
        return json.loads((path / "config.json").read_text())
    if path.exists():
        raise ModelSetupError(f"{path} is a file; pass the model folder.")
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(str(name_or_path), "config.json")).read_text())


def _label_names(config: dict) -> list[str] | None:
    id2label = config.get("id2label")
    if not id2label:
        return None
    names = [id2label[k] for k in sorted(id2label, key=lambda k: int(k))]
    return None if all(_GENERIC_LABEL.match(str(n)) for n in names) else [str(n) for n in names]


def _has_classification_head(config: dict) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def check_labels(config: dict, task: TaskSpec, who: str, allow_mismatch: bool = False) -> bool:
    """Check that a classifier's labels are the task's; returns True when its head must be re-initialised."""
    if not _has_classification_head(config):
        return False
    count = len(config.get("id2label") or {}) or config.get("num_labels", 2)
    names = _label_names(config)
    expected = list(task.label_names) if task.label_names else ["score"]
    if count != task.num_labels:
        if allow_mismatch:
            return True
        raise ModelSetupError(
            f"The {who} has {count} label(s) {names or ''} but task {task.name!r} has {task.num_labels} "
            f"({', '.join(expected)})."
            + (" Pass --ignore_mismatched_sizes to re-initialise the student's head." if who == "student" else "")
        )
    if names is not None and not task.is_regression and names != expected:
        if allow_mismatch:
            return True
        raise ModelSetupError(
            f"The {who}'s labels {names} are not task {task.name!r}'s labels {expected} (Hub order). "
            + (
                "Pass --ignore_mismatched_sizes to re-initialise the student's head."
                if who == "student"
                else "Use a teacher fine-tuned on this task with the Hub's label order."
            )
        )
    return False


def build_student(
    model_name_or_path: str,
    task: TaskSpec,
    attention: str = "inhibitor",
    inhibitor_overrides: dict | None = None,
    ignore_mismatched_sizes: bool = False,
):
    """A sequence-classification student with the task's labels, from a DistilBERT/BERT/InhibiDistilBERT checkpoint.

    `attention="dot"` gives transformers' `DistilBertForSequenceClassification` under the identical initialisation.
    Returns (model, conversion report).
    """
    source = read_config(model_name_or_path)
    reset_head = check_labels(source, task, "student", allow_mismatch=ignore_mismatched_sizes)
    overrides = {
        "num_labels": task.num_labels,
        "id2label": task.id2label,
        "label2id": task.label2id,
        "problem_type": "regression" if task.is_regression else "single_label_classification",
    }
    if attention == "inhibitor":
        overrides.update({k: v for k, v in (inhibitor_overrides or {}).items() if v is not None})
    model, report = init_student_from_pretrained(
        model_name_or_path,
        head="sequence-classification",
        attention=attention,
        ignore_mismatched_sizes=ignore_mismatched_sizes,
        **overrides,
    )
    if reset_head:
        for module in (model.pre_classifier, model.classifier):
            model._init_weights(module)
        report.skipped_mismatched.append("pre_classifier, classifier (labels differ from the task's)")
    return model, report


def load_teacher(name_or_path: str, task: TaskSpec, device, trust_remote_code: bool = False):
    """The frozen teacher: any sequence-classification model with the task's labels, in eval mode, on `device`.

    It is never passed to `accelerator.prepare`: it needs no gradients, no optimizer and no DDP wrapper.
    """
    from transformers import AutoModelForSequenceClassification

    check_labels(read_config(name_or_path), task, "teacher")
    teacher = AutoModelForSequenceClassification.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    if teacher.config.num_labels != task.num_labels:
        raise ModelSetupError(
            f"The teacher has {teacher.config.num_labels} label(s) but task {task.name!r} has {task.num_labels}."
        )
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher.to(device)


def accepts_token_type_ids(model) -> bool:
    """Whether the model's forward takes `token_type_ids` (BERT does, DistilBERT does not)."""
    return "token_type_ids" in inspect.signature(model.forward).parameters


_PROBE = "Hello, World! The café's naïve résumé: 3.14 unbelievable inhibitors [SEP]"


def check_same_vocabulary(student_tokenizer, teacher_name_or_path: str, teacher_config) -> None:
    """The teacher reads the student's token ids, so both must tokenize alike; otherwise a clear error.

    With tokenizer files in the teacher's folder the vocabularies and a probe encoding must agree; without, the
    vocabulary sizes must.
    """
    from transformers import AutoTokenizer

    try:
        teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_name_or_path)
    except (OSError, ValueError, TypeError):
        teacher_tokenizer = None
    if teacher_tokenizer is None:
        if teacher_config.vocab_size != len(student_tokenizer):
            raise ModelSetupError(
                f"The teacher's vocabulary has {teacher_config.vocab_size} tokens and the student's tokenizer "
                f"{len(student_tokenizer)}: distillation on logits needs the same vocabulary."
            )
        return
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise ModelSetupError(
            "The teacher's tokenizer vocabulary differs from the student's "
            f"({len(teacher_tokenizer)} vs {len(student_tokenizer)} tokens): both models must read the same token ids. "
            "Use a student initialised from a checkpoint with the teacher's vocabulary (or --tokenizer_name)."
        )
    if teacher_tokenizer(_PROBE)["input_ids"] != student_tokenizer(_PROBE)["input_ids"]:
        raise ModelSetupError(
            "The teacher's and the student's tokenizers share a vocabulary but tokenize differently (lower-casing or "
            "accent stripping differ); use the teacher's tokenizer for the student (--tokenizer_name)."
        )


def check_hidden_alignment(student, teacher, layer_map) -> None:
    """Hidden-state losses compare tensors directly: the hidden sizes must match (`parse_layer_map` checks that the
    mapped layers exist)."""
    student_size, teacher_size = student.config.hidden_size, teacher.config.hidden_size
    if student_size != teacher_size:
        raise ModelSetupError(
            f"Hidden-state alignment needs equal hidden sizes; the student has {student_size}, the teacher "
            f"{teacher_size}. Use --hidden_loss none."
        )

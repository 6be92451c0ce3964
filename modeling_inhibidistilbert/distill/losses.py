"""Distillation losses: soft targets, hard labels, hidden-state alignment, and masked-LM helpers.

Task-specific (InhibiDistilbert, section "Initialisation and distillation" of docs/method.md):
    loss = alpha_kd * T^2 * KL(softmax(t / T) || softmax(s / T))      (MSE(s, t) for a regression head)
         + alpha_ce * CE(s, y)                                         (MSE(s, y) for a regression head)
         + alpha_hidden * mean over mapped layers of cosine/MSE(h_s, h_t) over real tokens
Attention-map losses are deliberately absent: inhibitor scores are distances, not probabilities.
Every loss is computed in float32, whatever the autocast dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HIDDEN_LOSSES = ("none", "cosine", "mse", "cosine+mse")


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, times T^2 (Hinton et al.), batch mean."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature**2


def hard_label_loss(logits: torch.Tensor, labels: torch.Tensor, is_regression: bool) -> torch.Tensor:
    """Cross-entropy on label ids, or MSE on scores for a regression head."""
    if is_regression:
        return F.mse_loss(logits.float().squeeze(-1), labels.float().view(-1))
    return F.cross_entropy(logits.float(), labels.view(-1))


def parse_layer_map(spec: str | list | dict | None, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """Pairs (student index, teacher index) of hidden states to align; index 0 is the embedding output.

    `spec` is `"1:2,2:4,3:6"`, a list of pairs, a dict, `"last"` (last layer to last layer), or `None` for the default:
    every student layer i (1..n) to teacher layer round(i * m / n), i.e. the identity when the depths match.
    """
    if spec in (None, "", "auto"):
        return [(i, round(i * teacher_layers / student_layers)) for i in range(1, student_layers + 1)]
    if spec == "last":
        return [(student_layers, teacher_layers)]
    if isinstance(spec, dict):
        pairs = list(spec.items())
    elif isinstance(spec, str):
        pairs = []
        for item in spec.replace(" ", "").split(","):
            left, sep, right = item.partition(":")
            if not sep or not left.lstrip("-").isdigit() or not right.lstrip("-").isdigit():
                raise ValueError(f"--layer_map takes 'student:teacher' pairs such as '1:2,2:4', got {spec!r}.")
            pairs.append((left, right))
    else:
        pairs = [tuple(pair) for pair in spec]
    out = []
    for student, teacher in pairs:
        student, teacher = int(student), int(teacher)
        if not 0 <= student <= student_layers or not 0 <= teacher <= teacher_layers:
            raise ValueError(
                f"--layer_map pair {student}:{teacher} is out of range: the student has hidden states 0..{student_layers} "
                f"and the teacher 0..{teacher_layers} (0 is the embedding output)."
            )
        out.append((student, teacher))
    return out


def hidden_state_loss(
    student_hidden: tuple[torch.Tensor, ...],
    teacher_hidden: tuple[torch.Tensor, ...],
    attention_mask: torch.Tensor,
    layer_map: list[tuple[int, int]],
    kind: str = "cosine",
) -> torch.Tensor:
    """Mean over mapped layers of `1 - cos(h_s, h_t)` and/or `MSE(h_s, h_t)`, over real (unpadded) tokens only."""
    if kind not in HIDDEN_LOSSES or kind == "none":
        raise ValueError(f"hidden loss kind must be one of {', '.join(HIDDEN_LOSSES[1:])}, got {kind!r}.")
    real = attention_mask.bool()
    total = student_hidden[0].new_zeros((), dtype=torch.float32)
    for student_index, teacher_index in layer_map:
        s = student_hidden[student_index][real].float()
        t = teacher_hidden[teacher_index][real].float()
        if "cosine" in kind:
            total = total + (1.0 - F.cosine_similarity(s, t, dim=-1)).mean()
        if "mse" in kind:
            total = total + F.mse_loss(s, t)
    return total / len(layer_map)


class DistillationLoss:
    """The task-specific loss: weighted soft-target, hard-label and hidden-state terms.

    Without teacher outputs (fine-tuning) it is the hard-label loss alone, with weight 1. Calling it returns the total
    and a dict of the unweighted components (`loss_kd`, `loss_ce`, `loss_hidden`) for logging.
    """

    def __init__(
        self,
        is_regression: bool,
        alpha_kd: float = 0.5,
        alpha_ce: float = 0.5,
        alpha_hidden: float = 0.0,
        temperature: float = 2.0,
        hidden_loss: str = "none",
        layer_map: list[tuple[int, int]] | None = None,
    ):
        if temperature <= 0:
            raise ValueError(f"--temperature must be positive, got {temperature}.")
        if hidden_loss not in HIDDEN_LOSSES:
            raise ValueError(f"--hidden_loss must be one of {', '.join(HIDDEN_LOSSES)}, got {hidden_loss!r}.")
        self.is_regression = is_regression
        self.alpha_kd, self.alpha_ce, self.alpha_hidden = alpha_kd, alpha_ce, alpha_hidden
        self.temperature = temperature
        self.hidden_loss = hidden_loss
        self.layer_map = layer_map or []

    @property
    def uses_hidden_states(self) -> bool:
        return self.hidden_loss != "none" and self.alpha_hidden > 0

    def __call__(self, student_outputs, labels: torch.Tensor, teacher_outputs=None, attention_mask=None):
        components: dict[str, torch.Tensor] = {}
        ce = hard_label_loss(student_outputs.logits, labels, self.is_regression)
        components["loss_ce"] = ce
        if teacher_outputs is None:  # fine-tuning
            return ce, components
        if self.is_regression:
            kd = F.mse_loss(student_outputs.logits.float(), teacher_outputs.logits.float())
        else:
            kd = soft_target_loss(student_outputs.logits, teacher_outputs.logits, self.temperature)
        components["loss_kd"] = kd
        total = self.alpha_kd * kd + self.alpha_ce * ce
        if self.uses_hidden_states:
            hidden = hidden_state_loss(
                student_outputs.hidden_states,
                teacher_outputs.hidden_states,
                attention_mask,
                self.layer_map,
                self.hidden_loss,
            )
            components["loss_hidden"] = hidden
            total = total + self.alpha_hidden * hidden
        return total, components


def mask_tokens(
    input_ids: torch.Tensor,
    special_tokens_mask: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: pick `probability` of the real tokens; of those 80% -> [MASK], 10% -> random, 10% kept.

    Returns (masked inputs, labels with -100 where nothing is predicted). Drawing from an explicit `generator` (seeded
    per step by the caller) makes the masks independent of data-loader prefetching, so a resumed run sees the same
    masks as an uninterrupted one.
    """
    device = input_ids.device
    ids = input_ids.cpu()
    labels = ids.clone()
    chosen = torch.bernoulli(torch.full(ids.shape, probability), generator=generator).bool()
    chosen &= ~special_tokens_mask.cpu().bool()
    labels[~chosen] = -100
    replace = torch.bernoulli(torch.full(ids.shape, 0.8), generator=generator).bool() & chosen
    randomize = torch.bernoulli(torch.full(ids.shape, 0.5), generator=generator).bool() & chosen & ~replace
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator)
    masked = ids.clone()
    masked[replace] = mask_token_id
    masked[randomize] = random_ids[randomize]
    return masked.to(device), labels.to(device)


def masked_soft_target_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """DistilBERT's soft-target loss for MLM: KL * T^2 averaged over the masked (predicted) positions only."""
    selected = labels != -100
    if not bool(selected.any()):
        return student_logits.float().sum() * 0.0
    return soft_target_loss(student_logits[selected], teacher_logits[selected], temperature)

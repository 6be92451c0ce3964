"""Attention transfer: fit every inhibitor layer to the softmax attention it replaces, one layer at a time.

A student converted from a dot-product checkpoint starts with attention outputs that differ from its teacher's in
every layer, and the differences compound through the stack (cosine about 0.6-0.7 to the teacher's last hidden
states). Fitting each student attention module to the teacher's softmax attention *on the teacher's own input to that
layer* is a local regression: no error compounds, nothing but the attention (q/k/v projections and the per-head
scalars) is trained, and a few hundred steps on unlabeled text bring the whole student far closer to its teacher than
end-to-end hidden-state alignment does in the same time (docs/results.md). This is the "attention transfer" step of
LoLCATs (Zhang et al. 2024, arXiv 2410.10254), which linearises softmax attention the same way.

A dot-product (DistilBERT) student works too: its softmax attention is fitted the same way, so that a comparison of
the two attentions can give both students the identical recipe.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..modeling_inhibidistilbert import attention_mask_to_allowed


def softmax_attention_output(attention: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """DistilBERT's self-attention output `out_lin(softmax(q k^T / sqrt(d) + mask) v)` from a module's projections.

    `attention` is a DistilBERT (or InhibiDistilBERT) attention module: `q_lin`, `k_lin`, `v_lin`, `out_lin`, and the
    head count in `n_heads`; `hidden`: `[B, N, dim]`; `attention_mask`: `[B, N]` with 1 for real tokens.
    """
    batch, length, dim = hidden.shape
    heads = attention.n_heads
    shape = (batch, length, heads, dim // heads)
    q, k, v = (lin(hidden).view(shape).transpose(1, 2) for lin in (attention.q_lin, attention.k_lin, attention.v_lin))
    logits = q @ k.transpose(-1, -2) / math.sqrt(dim // heads)
    logits = logits.masked_fill(~attention_mask.bool()[:, None, None, :], torch.finfo(logits.dtype).min)
    context = (logits.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, dim)
    return attention.out_lin(context)


def attention_parameters(student: nn.Module) -> list[nn.Parameter]:
    """What attention transfer trains: every layer's q/k/v projections and (inhibitor, when trainable) its per-head
    scalars."""
    params = []
    for layer in student.transformer.layer:
        attention = layer.attention
        for lin in (attention.q_lin, attention.k_lin, attention.v_lin):
            params += list(lin.parameters())
        if getattr(student.config, "train_inhibitor_scalars", False):
            params += [attention.score_scale, attention.shift, attention.output_scale]
    return params


class AttentionTransfer(nn.Module):
    """The student and its frozen dot-product teacher (same layout); `forward` returns one loss per layer.

    Layer i's loss is the mean squared error between the student's attention output and the teacher's softmax
    attention output, both on the teacher's input to layer i, at the real (unpadded) positions, divided by the mean
    square of the teacher's output (so that every layer weighs the same). Only `attention_parameters(student)` train.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module):
        super().__init__()
        s, t = student.config, teacher.config
        if (s.n_layers, s.dim, s.n_heads) != (t.n_layers, t.dim, t.n_heads):
            raise ValueError(
                f"Attention transfer pairs layer i of the student with layer i of the teacher, so both need the same "
                f"layers, width and heads; student {s.n_layers}x{s.dim} ({s.n_heads} heads), teacher "
                f"{t.n_layers}x{t.dim} ({t.n_heads} heads). Initialise the student from the teacher's checkpoint."
            )
        self.student, self.teacher = student, teacher
        teacher.requires_grad_(False).eval()
        student.requires_grad_(False)
        for param in attention_parameters(student):
            param.requires_grad_(True)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher's targets never see dropout
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **unused) -> torch.Tensor:
        with torch.no_grad():
            hidden = self.teacher(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        allowed = attention_mask_to_allowed(attention_mask, *attention_mask.shape)
        real = attention_mask.bool()
        losses = []
        for index, layer in enumerate(self.student.transformer.layer):
            x = hidden.hidden_states[index]
            with torch.no_grad():
                target = softmax_attention_output(self.teacher.transformer.layer[index].attention, x, attention_mask)
            if hasattr(layer.attention, "score_scale"):  # inhibitor
                output, _ = layer.attention(x, allowed)
            else:  # a dot-product (DistilBERT) student
                output = softmax_attention_output(layer.attention, x, attention_mask)
            target = target[real].float()
            losses.append((output[real].float() - target).pow(2).mean() / target.pow(2).mean().clamp(min=1e-12))
        return torch.stack(losses)

    def save_pretrained(self, save_directory, state_dict: dict | None = None, **kwargs) -> None:
        """Save the student alone (a normal InhibiDistilBERT folder), as `checkpointing.save_best_model` expects."""
        if state_dict is not None:
            state_dict = {k.removeprefix("student."): v for k, v in state_dict.items() if k.startswith("student.")}
        self.student.save_pretrained(save_directory, state_dict=state_dict, **kwargs)

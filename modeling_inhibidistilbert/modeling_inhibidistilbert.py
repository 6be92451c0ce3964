# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""InhibiDistilBERT: DistilBERT with inhibitor attention (Manhattan-distance scores, ReLU inhibition).

References: Brännvall 2023, "The Inhibitor: ReLU and Addition-Based Attention for Efficient Transformers"
(arXiv 2310.02041); Zhang and Brännvall 2025, "InhibiDistilbert" (arXiv 2503.15983).

This file ships to the Hub next to the weights. It imports torch, the public transformers API and its sibling
configuration file and the third Hub file `kernels_inhibidistilbert.py` (the compiled and Triton forms); the optional
`inhibidistilbert_kernels` package (fused and int8 CPU kernels) is imported on the first attention call that may use
it, inside try/except, and never required.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import PreTrainedModel
from transformers.activations import get_activation
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import logging

from .configuration_inhibidistilbert import InhibiDistilBertConfig
from .kernels_inhibidistilbert import (
    compiled_inhibitor_attention,
    compiled_unsupported,
    triton_inhibitor_attention,
    triton_unsupported,
)

logger = logging.get_logger(__name__)


# ATTENTION MASKS #


def attention_mask_to_allowed(
    attention_mask: torch.Tensor | None, batch_size: int, seq_len: int
) -> torch.Tensor | None:
    """Normalise an attention mask to a boolean `allowed` tensor (True = the key may be attended).

    The form is decided by shape and dtype only (no Python branch on values, so torch.compile and torch.export
    trace it with dynamic shapes):
    - `[B, N]` or `[B, 1, 1, N]`: a key-padding mask, returned as `[B, 1, 1, N]`;
    - `[B, N, N]` or `[B, 1|H, N, N]`: a per-query mask, returned as `[B, 1|H, N, N]` (only the cdist form runs it).
    Values: booleans and integers (the tokenizer's 0/1 mask) allow where non-zero. A float mask is *additive* when it
    has a negative entry or is all zeros, and then every negative entry masks: `finfo.min`, `-inf`, `-1e9` and
    `(1 - m) * -10000.0` alike. Otherwise it is a 0/1 mask and entries above 0.5 allow. The choice is made per mask
    with tensor operations (`torch.where`), not in Python.
    """
    if attention_mask is None:
        return None
    mask = attention_mask
    if mask.dtype.is_floating_point:
        additive = (mask < 0).any() | ~(mask != 0).any()
        mask = torch.where(additive, ~(mask < 0), mask > 0.5)
    else:
        mask = mask.bool()
    if mask.dim() == 2:
        mask = mask[:, None, None, :]
    elif mask.dim() == 3:
        mask = mask[:, None, :, :]
    elif mask.dim() != 4:
        raise ValueError(f"attention_mask must have 2, 3 or 4 dimensions, got shape {tuple(attention_mask.shape)}.")
    if mask.shape[0] not in (1, batch_size) or mask.shape[-1] != seq_len or mask.shape[-2] not in (1, seq_len):
        raise ValueError(
            f"attention_mask of shape {tuple(attention_mask.shape)} does not fit inputs of batch {batch_size} and "
            f"length {seq_len}; pass the tokenizer's `attention_mask` of shape [batch, length]."
        )
    return mask


# INHIBITOR ATTENTION: THE MATH #


TRACED_CHUNK = 8  # entries of the fixed dimension per step of the traced L1 distance


def is_tracing() -> bool:
    """Whether torch.compile, torch.export (and the dynamo ONNX exporter) or torch.jit.trace is tracing the call."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def l1_distance(a: torch.Tensor, b: torch.Tensor, loop_over: str) -> torch.Tensor:
    """`sum_k |a_ik - b_jk|` for `a` `[..., N, K]` and `b` `[..., M, K]`, shape `[..., N, M]`: `torch.cdist(a, b, p=1)`.

    Traced, it is subtractions, `abs` and sums in a Python loop over a dimension the weights fix (`loop_over`: `"K"`
    or `"M"`), `TRACED_CHUNK` entries at a time, so memory stays `O(N * M)` and the lengths stay dynamic: the dynamo
    ONNX exporter has no rule for `cdist(p=1)` and the TorchScript exporter's rule drops the absolute value.
    """
    if not is_tracing():
        return torch.cdist(a, b, p=1)
    if loop_over == "K":
        parts = [
            (a[..., :, None, k : k + TRACED_CHUNK] - b[..., None, :, k : k + TRACED_CHUNK]).abs().sum(-1)
            for k in range(0, a.shape[-1], TRACED_CHUNK)
        ]
        return torch.stack(parts).sum(0) if len(parts) > 1 else parts[0]
    parts = [
        (a[..., :, None, :] - b[..., None, j : j + TRACED_CHUNK, :]).abs().sum(-1)
        for j in range(0, b.shape[-2], TRACED_CHUNK)
    ]
    return torch.cat(parts, dim=-1)


def inhibitor_scores(
    query: torch.Tensor,
    key: torch.Tensor,
    score_scale: torch.Tensor,
    shift: torch.Tensor,
    allowed: torch.Tensor | None = None,
    center: bool = True,
) -> torch.Tensor:
    """Inhibition scores `Zbar = relu(Z - mean_j Z - delta)` with `Z_ij = gamma / sqrt(d) * sum_k |Q_ik - K_jk|`.

    `query`, `key`: `[B, H, N, d]`; `score_scale` (gamma), `shift` (delta): `[H]`; `allowed`: boolean, broadcastable
    to `[B, H, N, N]`. The mean runs over allowed keys only. Returns `[B, H, N, N]`; larger means *less* attention.
    """
    head_dim = query.shape[-1]
    scores = l1_distance(query, key, loop_over="K") * (score_scale / math.sqrt(head_dim))[:, None, None]
    if center:
        if allowed is None:
            scores = scores - scores.mean(dim=-1, keepdim=True)
        else:
            keep = allowed.to(scores.dtype)  # float arithmetic only: exporters mistype bool/int sums
            scores = scores - (scores * keep).sum(dim=-1, keepdim=True) / keep.sum(dim=-1, keepdim=True).clamp(min=1)
    return torch.relu(scores - shift[:, None, None])


def inhibitor_attention_cdist(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    score_scale: torch.Tensor,
    shift: torch.Tensor,
    output_scale: torch.Tensor,
    allowed: torch.Tensor | None = None,
    signed: bool = True,
    center: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inhibitor attention without any `[N, N, d]` tensor. Inputs `[B, H, N, d]`, returns (`[B, H, N, d]`, `Zbar`).

    With relu(x) = (x + |x|) / 2 and min(0, y) = (y - |y|) / 2, the sums over keys become L1 distances:
      unsigned: sum_j relu(V_jl - Zbar_ij) = 0.5 * (sum_j V_jl - sum_j Zbar_ij + sum_j |Zbar_ij - V_jl|)
      signed:   sum_j [relu(V - Zbar) + min(0, V + Zbar)] = 0.5 * (sum_j V_jl + sum_j |Zbar_ij - V+_jl| - sum_j |Zbar_ij - V-_jl|)
    where V+ = relu(V), V- = relu(-V), and sum_j |A_ij - B_jl| is `torch.cdist(A, B^T, p=1)` (`l1_distance`).
    `allowed`: None, a key-padding mask `[B, 1, 1, N]` or a per-query mask `[B, 1|H, N, N]` (True = attend).
    Masked keys: a padded key j gets V_j = 0 and Zbar_ij = 0, so every one of its terms is exactly zero (no rounding).
    A per-query mask cannot zero V_j for some rows only; there a masked pair gets Zbar_ij = C >= max|V| + 1, which
    makes its terms cancel to zero (up to float rounding).
    The returned `Zbar` (0 at masked keys) is the very tensor the output is computed from, so its `.grad` is real.
    """
    scores = inhibitor_scores(query, key, score_scale, shift, allowed, center)
    zbar = scores
    if allowed is not None:
        scores = scores.masked_fill(~allowed, 0.0)
        if allowed.shape[-2] == 1:  # key-padding mask
            value = value * allowed.transpose(-1, -2).to(value.dtype)
            zbar = scores
        else:
            big = value.detach().abs().amax(dim=(-2, -1), keepdim=True) + 1.0
            zbar = torch.where(allowed, scores, big)
    value_sum = value.sum(dim=-2, keepdim=True)
    if signed:
        head_dim = value.shape[-1]
        split = torch.cat([torch.relu(value), torch.relu(-value)], dim=-1)  # one distance for both halves
        dist = l1_distance(zbar, split.transpose(-1, -2), loop_over="M")
        out = 0.5 * (value_sum + dist[..., :head_dim] - dist[..., head_dim:])
    else:
        dist = l1_distance(zbar, value.transpose(-1, -2), loop_over="M")
        out = 0.5 * (value_sum - zbar.sum(dim=-1, keepdim=True) + dist)
    return out * output_scale[:, None, None], scores


# INHIBITOR ATTENTION: THE TABLE OF IMPLEMENTATIONS #


class AttentionImplementation(NamedTuple):
    """One entry: `forward(query, key, value, score_scale, shift, output_scale, key_mask, signed, center)` returns the
    sum form `[B, H, N, d]`; `unsupported(query, needs_grad)` returns None when it can run the call, else the reason;
    `keeps_half`: it reads float16/bfloat16 as they are (the others compute in float32 at least)."""

    forward: Callable
    unsupported: Callable[[torch.Tensor, bool], str | None]
    keeps_half: bool = False


_KERNELS_PACKAGE: dict = {}  # the installed inhibidistilbert_kernels, imported on the first dispatch that asks


def kernels_package():
    """`(module, None)`, or `(None, why not)`: the optional package, imported once, on first use, never at import."""
    if not _KERNELS_PACKAGE:
        try:
            import inhibidistilbert_kernels

            _KERNELS_PACKAGE.update(module=inhibidistilbert_kernels, error=None)
        except ImportError as error:  # remote-code users never have it
            _KERNELS_PACKAGE.update(
                module=None, error=f"the inhibidistilbert_kernels package is not available ({error})"
            )
    return _KERNELS_PACKAGE["module"], _KERNELS_PACKAGE["error"]


def _from_package(forward_name: str, probe_name: str) -> AttentionImplementation:
    def forward(*args):
        return getattr(kernels_package()[0], forward_name)(*args)

    def unsupported(query: torch.Tensor, needs_grad: bool) -> str | None:
        package, error = kernels_package()
        if package is None:
            return error
        if not hasattr(package, probe_name):
            return (
                f"the installed inhibidistilbert_kernels has no {probe_name}; install a release that matches this model"
            )
        return getattr(package, probe_name)(query, needs_grad)

    return AttentionImplementation(forward, unsupported)


ATTENTION_IMPLEMENTATIONS = {
    # cdist: always available; the dispatcher calls it directly (it also takes per-query masks and returns the scores)
    "cdist": AttentionImplementation(inhibitor_attention_cdist, lambda query, needs_grad: None),
    "compiled": AttentionImplementation(compiled_inhibitor_attention, compiled_unsupported),
    "triton": AttentionImplementation(triton_inhibitor_attention, triton_unsupported, keeps_half=True),
    "fused": _from_package("fused_inhibitor_attention", "fused_unsupported"),
    "int8": _from_package("int8_inhibitor_attention", "int8_unsupported"),
}
AUTO_ORDER = {"cuda": ("triton", "cdist"), "cpu": ("fused", "compiled", "cdist")}  # int8 is never automatic
_LOGGED: set = set()


def select_implementation(
    config: InhibiDistilBertConfig,
    query: torch.Tensor,
    allowed: torch.Tensor | None,
    needs_scores: bool,
    needs_grad: bool,
) -> str:
    """The entry of `ATTENTION_IMPLEMENTATIONS` that runs this call (`config.inhibitor_implementation`).

    `auto` takes the first entry of `AUTO_ORDER[device]` that can run it; the scores (`output_attentions`) and
    per-query masks need `cdist`, and so does tracing (its `l1_distance` is the traceable formulation). A form named
    explicitly that cannot run the call is an error naming the reason and the fix.
    """
    choice = config.checked("inhibitor_implementation")
    if is_tracing():
        return "cdist"
    needs_cdist = needs_scores or (allowed is not None and allowed.shape[-2] != 1)  # scores or a per-query mask
    if choice == "auto":
        names = ("cdist",) if needs_cdist else AUTO_ORDER.get(query.device.type, ("cdist",))
        return next(name for name in names if ATTENTION_IMPLEMENTATIONS[name].unsupported(query, needs_grad) is None)
    if needs_cdist and choice != "cdist":
        reason = "only the cdist form " + ("returns the scores" if needs_scores else "takes a per-query mask")
    else:
        reason = ATTENTION_IMPLEMENTATIONS[choice].unsupported(query, needs_grad)
    if reason is not None:
        raise RuntimeError(
            f"inhibitor_implementation={choice!r} cannot run this call: {reason}. Set "
            "config.inhibitor_implementation = 'auto' (the fastest form that can run each call) or 'cdist'."
        )
    return choice


def inhibitor_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor | None,
    output_attentions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the selected implementation; the one place that casts, normalises and returns the input dtype.

    Inputs `[B, H, N, d]` and the `allowed` mask of `attention_mask_to_allowed`. Returns the output in the input
    dtype and, with `output_attentions`, the scores `Zbar` the output was computed from (in the compute dtype,
    float32 at least, so that they are the very tensors of the computation).
    """
    config = module.config
    params = (module.score_scale, module.shift, module.output_scale)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value, *params))
    name = select_implementation(config, query, allowed, output_attentions, needs_grad)
    if not is_tracing() and (name, query.device.type) not in _LOGGED:
        _LOGGED.add((name, query.device.type))
        logger.debug(f"InhibiDistilBERT attention runs the {name!r} implementation on {query.device.type}")
    dtype = query.dtype
    keep = ATTENTION_IMPLEMENTATIONS[name].keeps_half and dtype in (torch.float16, torch.bfloat16)
    compute_dtype = dtype if keep else torch.promote_types(dtype, torch.float32)
    q, k, v, *params = (t.to(compute_dtype) for t in (query, key, value, *params))
    signed, center = config.inhibitor_signed, config.center_scores
    if name == "cdist":  # the only form that takes per-query masks and returns the scores
        out, scores = inhibitor_attention_cdist(q, k, v, *params, allowed, signed, center)
    else:
        key_mask = None if allowed is None else allowed[:, 0, 0, :]
        out, scores = ATTENTION_IMPLEMENTATIONS[name].forward(q, k, v, *params, key_mask, signed, center), None
    if config.checked("output_normalization") == "mean":  # eta / n_keys * sum_j: a mean over real keys
        n_keys = key.shape[-2] if allowed is None else allowed.to(out.dtype).sum(dim=-1, keepdim=True).clamp(min=1)
        out = out / n_keys
    return out.to(dtype), (scores if output_attentions else None)


class InhibitorAttention(nn.Module):
    """Multi-head inhibitor self-attention with DistilBERT's projection names and per-head scalars gamma, delta, eta.

    It projects and reshapes; `inhibitor_attention_forward` chooses and runs the attention.
    """

    def __init__(self, config: InhibiDistilBertConfig):
        super().__init__()
        self.config = config
        self.n_heads = config.n_heads
        self.head_dim = config.dim // config.n_heads
        self.q_lin = nn.Linear(config.dim, config.dim)
        self.k_lin = nn.Linear(config.dim, config.dim)
        self.v_lin = nn.Linear(config.dim, config.dim)
        self.out_lin = nn.Linear(config.dim, config.dim)
        trainable = config.train_inhibitor_scalars
        self.score_scale = nn.Parameter(torch.full((config.n_heads,), float(config.score_scale_init)), trainable)
        self.shift = nn.Parameter(torch.full((config.n_heads,), float(config.shift_init)), trainable)
        self.output_scale = nn.Parameter(torch.full((config.n_heads,), float(config.output_scale_init)), trainable)
        self.dropout = nn.Dropout(p=config.attention_dropout)

    def forward(
        self, hidden_states: torch.Tensor, allowed: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq_len, _ = hidden_states.shape
        shape = (batch, seq_len, self.n_heads, self.head_dim)
        query = self.q_lin(hidden_states).view(shape).transpose(1, 2)
        key = self.k_lin(hidden_states).view(shape).transpose(1, 2)
        value = self.v_lin(hidden_states).view(shape).transpose(1, 2)
        out, scores = inhibitor_attention_forward(self, query, key, value, allowed, output_attentions)
        out = self.dropout(out).transpose(1, 2).reshape(batch, seq_len, -1)
        return self.out_lin(out), scores


# BUILDING BLOCKS (as in DistilBERT) #


def sinusoidal_embeddings(n_pos: int, dim: int) -> torch.Tensor:
    position = torch.arange(n_pos, dtype=torch.float64)[:, None]
    freq = torch.pow(10000.0, -2 * (torch.arange(dim) // 2).double() / dim)[None, :]
    angles = position * freq
    out = torch.empty(n_pos, dim, dtype=torch.float64)
    out[:, 0::2] = torch.sin(angles[:, 0::2])
    out[:, 1::2] = torch.cos(angles[:, 1::2])
    return out.float()


class Embeddings(nn.Module):
    def __init__(self, config: InhibiDistilBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.dim)
        self.LayerNorm = nn.LayerNorm(config.dim, eps=1e-12)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids=None, inputs_embeds=None, position_ids=None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        seq_len = inputs_embeds.size(1)
        if seq_len > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"Sequence length {seq_len} exceeds max_position_embeddings={self.position_embeddings.num_embeddings}; "
                "truncate the inputs (tokenizer(..., truncation=True))."
            )
        if position_ids is None:
            position_ids = torch.arange(seq_len, device=inputs_embeds.device)[None]
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


class FFN(nn.Module):
    def __init__(self, config: InhibiDistilBertConfig):
        super().__init__()
        self.lin1 = nn.Linear(config.dim, config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.dim)
        self.activation = get_activation(config.activation)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.lin2(self.activation(self.lin1(x))))


class TransformerBlock(GradientCheckpointingLayer):
    def __init__(self, config: InhibiDistilBertConfig):
        super().__init__()
        self.attention = InhibitorAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.ffn = FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)

    def forward(self, hidden_states, allowed=None, output_attentions=False):
        attention_output, scores = self.attention(hidden_states, allowed, output_attentions)
        attention_output = self.sa_layer_norm(attention_output + hidden_states)
        output = self.output_layer_norm(self.ffn(attention_output) + attention_output)
        return output, scores


class Transformer(nn.Module):
    def __init__(self, config: InhibiDistilBertConfig):
        super().__init__()
        self.n_layers = config.n_layers
        self.layer = nn.ModuleList([TransformerBlock(config) for _ in range(config.n_layers)])
        self.gradient_checkpointing = False

    def forward(self, hidden_states, allowed=None, output_attentions=False, output_hidden_states=False):
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layer:
            hidden_states, scores = layer(hidden_states, allowed, output_attentions)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (scores,)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )


# PRETRAINED BASE AND HEADS #


class InhibiDistilBertPreTrainedModel(PreTrainedModel):
    """Base class: weight initialisation, loading and saving.

    Only the inhibitor attention is implemented; asking for `sdpa`, `flash_attention_*` or `flex_attention` is
    an error, because those kernels compute softmax attention, not inhibition.
    """

    config_class = InhibiDistilBertConfig
    base_model_prefix = "distilbert"
    supports_gradient_checkpointing = True
    _supports_sdpa = False
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False
    _no_split_modules = ["TransformerBlock"]

    def __init__(self, config: InhibiDistilBertConfig, *inputs, **kwargs):
        requested = getattr(config, "_attn_implementation", None)
        if requested not in (None, "eager"):
            raise ValueError(
                f"attn_implementation={requested!r} is not supported by InhibiDistilBERT: sdpa, flash and flex kernels "
                "compute softmax attention, not inhibition. Leave attn_implementation unset (or 'eager'); choose the "
                "inhibitor form with config.inhibitor_implementation (see InhibiDistilBertConfig)."
            )
        super().__init__(config, *inputs, **kwargs)

    def _init_weights(self, module: nn.Module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, InhibitorAttention):
            nn.init.constant_(module.score_scale, self.config.score_scale_init)
            nn.init.constant_(module.shift, self.config.shift_init)
            nn.init.constant_(module.output_scale, self.config.output_scale_init)
        if isinstance(module, Embeddings) and self.config.sinusoidal_pos_embds:
            weight = module.position_embeddings.weight
            if not getattr(weight, "_is_hf_initialized", False):
                with torch.no_grad():
                    weight.copy_(sinusoidal_embeddings(*weight.shape))
            weight.requires_grad = False

    def _return(self, output, return_dict):
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        return output if return_dict else output.to_tuple()

    def _encode(self, input_ids, attention_mask, inputs_embeds, position_ids, kwargs: dict) -> BaseModelOutput:
        """A head's call of the encoder. A head's `**kwargs` may hold `output_attentions` and `output_hidden_states`
        (passed on) and `return_dict` (applied by the head to its own output)."""
        options = {name: kwargs[name] for name in ("output_attentions", "output_hidden_states") if name in kwargs}
        return self.distilbert(input_ids, attention_mask, inputs_embeds, position_ids, return_dict=True, **options)


class InhibiDistilBertModel(InhibiDistilBertPreTrainedModel):
    """The bare InhibiDistilBERT encoder.

    `output_attentions=True` returns, per layer, the inhibition scores `Zbar` of shape `[batch, heads, N, N]`. These
    are *not* probabilities: they are non-negative shifted distances, and a larger value means the key inhibits
    (shrinks) its value more, i.e. *less* attention. Entries at masked keys are 0 and carry no meaning.
    """

    def __init__(self, config: InhibiDistilBertConfig):
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.transformer = Transformer(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, new_embeddings: nn.Embedding):
        self.embeddings.word_embeddings = new_embeddings

    def get_position_embeddings(self) -> nn.Embedding:
        return self.embeddings.position_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput | tuple:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if input_ids is not None and input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must have shape [batch, length], got {tuple(input_ids.shape)}; for one sequence pass "
                "input_ids[None] (or let the tokenizer return tensors with return_tensors='pt')."
            )
        if inputs_embeds is not None and (inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.dim):
            raise ValueError(
                f"inputs_embeds must have shape [batch, length, {self.config.dim}] (config.dim), got "
                f"{tuple(inputs_embeds.shape)}."
            )
        if output_attentions is None:
            output_attentions = getattr(self.config, "output_attentions", False)
        if output_hidden_states is None:
            output_hidden_states = getattr(self.config, "output_hidden_states", False)
        embeddings = self.embeddings(input_ids, inputs_embeds, position_ids)
        allowed = attention_mask_to_allowed(attention_mask, *embeddings.shape[:2])
        output = self.transformer(embeddings, allowed, output_attentions, output_hidden_states)
        return self._return(output, return_dict)


class InhibiDistilBertForMaskedLM(InhibiDistilBertPreTrainedModel):
    _tied_weights_keys = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}

    def __init__(self, config: InhibiDistilBertConfig):
        super().__init__(config)
        self.activation = get_activation(config.activation)
        self.distilbert = InhibiDistilBertModel(config)
        self.vocab_transform = nn.Linear(config.dim, config.dim)
        self.vocab_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.vocab_projector = nn.Linear(config.dim, config.vocab_size)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.vocab_projector

    def set_output_embeddings(self, new_embeddings: nn.Module):
        self.vocab_projector = new_embeddings

    def forward(
        self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, position_ids=None, **kwargs
    ) -> MaskedLMOutput | tuple:
        outputs = self._encode(input_ids, attention_mask, inputs_embeds, position_ids, kwargs)
        hidden = self.vocab_layer_norm(self.activation(self.vocab_transform(outputs.last_hidden_state)))
        logits = self.vocab_projector(hidden)
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.view(-1, logits.size(-1)), labels.view(-1))
        output = MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._return(output, kwargs.get("return_dict"))


def pool_for_classifier(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """The classification heads' input: the first token's state, or (`"mean"`) the mean over unpadded tokens."""
    if pooling == "first":
        return hidden[:, 0]
    allowed = attention_mask_to_allowed(attention_mask, *hidden.shape[:2])
    if allowed is not None and allowed.shape[-2] != 1:
        raise ValueError("classifier_pooling='mean' needs a [batch, seq_len] padding mask, not a full mask.")
    keep = hidden.new_ones(hidden.shape[:2]) if allowed is None else allowed[:, 0, 0].to(hidden.dtype)
    return (hidden * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)


class InhibiDistilBertForSequenceClassification(InhibiDistilBertPreTrainedModel):
    def __init__(self, config: InhibiDistilBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.distilbert = InhibiDistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.post_init()

    def forward(
        self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, position_ids=None, **kwargs
    ) -> SequenceClassifierOutput | tuple:
        outputs = self._encode(input_ids, attention_mask, inputs_embeds, position_ids, kwargs)
        hidden = pool_for_classifier(
            outputs.last_hidden_state, attention_mask, self.config.checked("classifier_pooling")
        )
        pooled = torch.relu(self.pre_classifier(hidden))
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.config.problem_type is None:
                if self.num_labels == 1:
                    self.config.problem_type = "regression"
                elif labels.dtype in (torch.long, torch.int):
                    self.config.problem_type = "single_label_classification"
                else:
                    self.config.problem_type = "multi_label_classification"
            if self.config.problem_type == "regression":
                loss = (
                    MSELoss()(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
                    if self.num_labels == 1
                    else MSELoss()(logits, labels.to(logits.dtype))
                )
            elif self.config.problem_type == "single_label_classification":
                loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
            else:
                loss = BCEWithLogitsLoss()(logits, labels.to(logits.dtype))
        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._return(output, kwargs.get("return_dict"))


class InhibiDistilBertForQuestionAnswering(InhibiDistilBertPreTrainedModel):
    def __init__(self, config: InhibiDistilBertConfig):
        super().__init__(config)
        if config.num_labels != 2:
            raise ValueError(f"The question-answering head needs config.num_labels == 2, got {config.num_labels}.")
        self.distilbert = InhibiDistilBertModel(config)
        self.qa_outputs = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.qa_dropout)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        start_positions=None,
        end_positions=None,
        position_ids=None,
        **kwargs,
    ) -> QuestionAnsweringModelOutput | tuple:
        outputs = self._encode(input_ids, attention_mask, inputs_embeds, position_ids, kwargs)
        logits = self.qa_outputs(self.dropout(outputs.last_hidden_state))
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            ignored = start_logits.size(1)  # positions outside the input are ignored
            start_positions = start_positions.view(-1).clamp(0, ignored)
            end_positions = end_positions.view(-1).clamp(0, ignored)
            loss_fct = CrossEntropyLoss(ignore_index=ignored)
            loss = (loss_fct(start_logits, start_positions) + loss_fct(end_logits, end_positions)) / 2
        output = QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return self._return(output, kwargs.get("return_dict"))


class InhibiDistilBertForTokenClassification(InhibiDistilBertPreTrainedModel):
    def __init__(self, config: InhibiDistilBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.distilbert = InhibiDistilBertModel(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.post_init()

    def forward(
        self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, position_ids=None, **kwargs
    ) -> TokenClassifierOutput | tuple:
        outputs = self._encode(input_ids, attention_mask, inputs_embeds, position_ids, kwargs)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        output = TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._return(output, kwargs.get("return_dict"))


class InhibiDistilBertForMultipleChoice(InhibiDistilBertPreTrainedModel):
    def __init__(self, config: InhibiDistilBertConfig):
        super().__init__(config)
        self.distilbert = InhibiDistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, 1)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.post_init()

    def forward(
        self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, position_ids=None, **kwargs
    ) -> MultipleChoiceModelOutput | tuple:
        num_choices = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        flat = lambda t: None if t is None else t.reshape(-1, *t.shape[2:])  # noqa: E731  [B, C, ...] -> [B*C, ...]
        outputs = self._encode(flat(input_ids), flat(attention_mask), flat(inputs_embeds), flat(position_ids), kwargs)
        hidden = pool_for_classifier(
            outputs.last_hidden_state, flat(attention_mask), self.config.checked("classifier_pooling")
        )
        pooled = torch.relu(self.pre_classifier(hidden))
        logits = self.classifier(self.dropout(pooled)).view(-1, num_choices)
        loss = CrossEntropyLoss()(logits, labels) if labels is not None else None
        output = MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._return(output, kwargs.get("return_dict"))


__all__ = [
    "InhibiDistilBertForMaskedLM",
    "InhibiDistilBertForMultipleChoice",
    "InhibiDistilBertForQuestionAnswering",
    "InhibiDistilBertForSequenceClassification",
    "InhibiDistilBertForTokenClassification",
    "InhibiDistilBertModel",
    "InhibiDistilBertPreTrainedModel",
]

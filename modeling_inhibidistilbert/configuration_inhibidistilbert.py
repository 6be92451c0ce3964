# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""InhibiDistilBERT configuration: DistilBERT's fields plus the inhibitor attention settings.

This file ships to the Hub next to the weights; it imports only transformers' public API.
"""

import math

from transformers import PretrainedConfig

_ACTIVATIONS = ("gelu", "relu", "gelu_new", "gelu_fast", "gelu_python", "silu", "swish", "tanh", "quick_gelu")

# The fields that name one of a few choices, each choice with what it means. The model checks them again where it
# uses them (`InhibiDistilBertConfig.checked`), so a value set after construction is refused too.
CHOICES = {
    "inhibitor_implementation": {
        "auto": "the first of the fast forms that can run the call, else cdist",
        "cdist": "pure PyTorch, always available",
        "compiled": "torch.compile of the shipped formulation, CPU",
        "triton": "the shipped Triton kernel, CUDA",
        "fused": "the C++ kernel of the installed inhibidistilbert package, CPU",
        "int8": "int8 attention of the installed package, inference only",
    },
    "output_normalization": {"sum": "the papers' sum over keys", "mean": "the sum divided by the number of real keys"},
    "classifier_pooling": {"first": "the first token, as DistilBERT", "mean": "the mean over unpadded tokens"},
}
INHIBITOR_IMPLEMENTATIONS = tuple(CHOICES["inhibitor_implementation"])

# Every Auto class the architecture registers with; written into config.json so that
# `AutoModelFor*.from_pretrained(folder, trust_remote_code=True)` works for every head.
AUTO_MAP = {
    "AutoConfig": "configuration_inhibidistilbert.InhibiDistilBertConfig",
    "AutoModel": "modeling_inhibidistilbert.InhibiDistilBertModel",
    "AutoModelForMaskedLM": "modeling_inhibidistilbert.InhibiDistilBertForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_inhibidistilbert.InhibiDistilBertForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_inhibidistilbert.InhibiDistilBertForTokenClassification",
    "AutoModelForQuestionAnswering": "modeling_inhibidistilbert.InhibiDistilBertForQuestionAnswering",
    "AutoModelForMultipleChoice": "modeling_inhibidistilbert.InhibiDistilBertForMultipleChoice",
}


class InhibiDistilBertConfig(PretrainedConfig):
    r"""Configuration of an InhibiDistilBERT model: DistilBERT with inhibitor attention.

    The DistilBERT fields keep DistilBERT's names and defaults, so a DistilBERT `config.json` converts one to one.

    Args:
        vocab_size (`int`, defaults to 30522): size of the vocabulary.
        max_position_embeddings (`int`, defaults to 512): longest sequence the position embeddings cover.
        sinusoidal_pos_embds (`bool`, defaults to `False`): fixed sinusoidal position embeddings.
        n_layers (`int`, defaults to 6): number of transformer blocks.
        n_heads (`int`, defaults to 12): attention heads per block; must divide `dim`.
        dim (`int`, defaults to 768): hidden size.
        hidden_dim (`int`, defaults to 3072): inner size of the feed-forward network.
        dropout (`float`, defaults to 0.1): dropout on embeddings, FFN and token-classification head.
        attention_dropout (`float`, defaults to 0.1): dropout on the attention output of each head (the inhibitor
            has no probability matrix to drop from).
        activation (`str`, defaults to `"gelu"`): FFN activation.
        initializer_range (`float`, defaults to 0.02): std of the normal initialiser.
        qa_dropout (`float`, defaults to 0.1): dropout of the question-answering head.
        seq_classif_dropout (`float`, defaults to 0.2): dropout of the sequence-classification and multiple-choice heads.
        pad_token_id (`int`, defaults to 0): id of the padding token.
        tie_word_embeddings (`bool`, defaults to `True`): tie the MLM projector to the word embeddings.
        inhibitor_signed (`bool`, defaults to `True`): the signed InhibiDistilbert inhibition
            `relu(V - Zbar) + min(0, V + Zbar)`; `False` gives the unsigned 2023 form `relu(V - Zbar)`.
        center_scores (`bool`, defaults to `True`): subtract the mean score over the (real) keys before the shift.
        score_scale_init (`float`, defaults to 1.0): initial gamma, the per-head scale of the Manhattan scores.
        shift_init (`float`, defaults to 0.0): initial delta, the per-head shift subtracted from the centred scores.
        output_scale_init (`float`, defaults to 0.05): initial eta, the per-head scale of the summed outputs.
        train_inhibitor_scalars (`bool`, defaults to `True`): whether gamma, delta and eta are trained.
        output_normalization (`str`, defaults to `"sum"`): `"sum"`, the papers' `H = eta * sum_j [...]`, whose size
            grows with the number of keys; `"mean"`, `H = eta / n * sum_j [...]` over the n real keys, as softmax's
            weighted average does not grow with the length.
        classifier_pooling (`str`, defaults to `"first"`): what the sequence-classification head reads: `"first"`, the
            first token's hidden state (DistilBERT's), or `"mean"`, the mean over the real (unpadded) tokens.
        inhibitor_implementation (`str`, defaults to `"auto"`): how the attention is computed; every form gives the
            same result (to float rounding; NaN and masks included):
            - `"auto"`: the first form in the device's order that can run the call: CUDA `triton`, `cdist`; CPU
              `fused`, `compiled`, `cdist` (`int8` is never chosen). Calls with `output_attentions=True` or a
              per-query `[B, N, N]` mask, and traced calls (torch.compile, torch.export, ONNX export), run `cdist`.
            - `"cdist"`: pure PyTorch (two `torch.cdist` calls, no `[N, N, d]` tensor); runs everywhere.
            - `"compiled"`: `torch.compile` of the shipped pure-PyTorch formulation (CPU; needs a C++ compiler).
            - `"triton"`: the Triton kernel shipped next to the model (CUDA; float32, bfloat16, float16 read as is).
            - `"fused"`: the C++ CPU kernel of the installed `inhibidistilbert` package.
            - `"int8"`: int8 attention of the installed package (inference only; set by
              `inhibidistilbert_kernels.quantize_model_for_inference`).
            A form named explicitly that cannot run a call raises an error that names the reason and the fix.
    """

    model_type = "inhibidistilbert"
    # Where this class's code was loaded from, when transformers loaded it as remote code (see `from_pretrained`).
    _code_source: str | None = None
    attribute_map = {
        "hidden_size": "dim",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
    }

    def __init__(
        self,
        vocab_size: int = 30522,
        max_position_embeddings: int = 512,
        sinusoidal_pos_embds: bool = False,
        n_layers: int = 6,
        n_heads: int = 12,
        dim: int = 768,
        hidden_dim: int = 4 * 768,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation: str = "gelu",
        initializer_range: float = 0.02,
        qa_dropout: float = 0.1,
        seq_classif_dropout: float = 0.2,
        pad_token_id: int = 0,
        tie_word_embeddings: bool = True,
        inhibitor_signed: bool = True,
        center_scores: bool = True,
        score_scale_init: float = 1.0,
        shift_init: float = 0.0,
        output_scale_init: float = 0.05,
        train_inhibitor_scalars: bool = True,
        inhibitor_implementation: str = "auto",
        classifier_pooling: str = "first",
        output_normalization: str = "sum",
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.sinusoidal_pos_embds = sinusoidal_pos_embds
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.dim = dim
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation = activation
        self.initializer_range = initializer_range
        self.qa_dropout = qa_dropout
        self.seq_classif_dropout = seq_classif_dropout
        self.inhibitor_signed = inhibitor_signed
        self.center_scores = center_scores
        self.score_scale_init = score_scale_init
        self.shift_init = shift_init
        self.output_scale_init = output_scale_init
        self.train_inhibitor_scalars = train_inhibitor_scalars
        self.inhibitor_implementation = inhibitor_implementation
        self.classifier_pooling = classifier_pooling
        self.output_normalization = output_normalization
        if "auto_map" not in kwargs:  # a fresh config: every Auto class, found where this class's code came from
            prefix = f"{self._code_source}--" if self._code_source else ""
            kwargs["auto_map"] = {auto: prefix + ref for auto, ref in AUTO_MAP.items()}
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
        self._validate_inhibitor_config()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """As `PretrainedConfig.from_pretrained`; a class loaded as remote code also remembers the folder or repo.

        transformers finds a config's model code in the repo the config was loaded from; a config built fresh from a
        remote-code class has none, so its `auto_map` names this source (`"repo--module.Class"`, transformers'
        form for code in another repo) and `AutoModel.from_config(config, trust_remote_code=True)` works.
        """
        if cls.__module__.startswith("transformers_modules."):
            cls._code_source = str(pretrained_model_name_or_path)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def to_dict(self) -> dict:
        """As `PretrainedConfig.to_dict`, with the `auto_map` of the code files saved next to `config.json`."""
        output = super().to_dict()
        prefix = f"{self._code_source}--"
        if self._code_source and isinstance(output.get("auto_map"), dict):
            output["auto_map"] = {
                auto: ref.removeprefix(prefix) if isinstance(ref, str) else ref
                for auto, ref in output["auto_map"].items()
            }
        return output

    def checked(self, name: str) -> str:
        """The value of a choice field (`CHOICES`), checked again where the model uses it."""
        value = getattr(self, name)
        if value not in CHOICES[name]:
            options = [f"{choice!r} ({meaning})" for choice, meaning in CHOICES[name].items()]
            raise ValueError(
                f"InhibiDistilBertConfig.{name}={value!r} is unknown; use {', '.join(options[:-1])} or {options[-1]}."
            )
        return value

    def _validate_inhibitor_config(self) -> None:
        for name in ("vocab_size", "max_position_embeddings", "n_layers", "n_heads", "dim", "hidden_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"InhibiDistilBertConfig.{name} must be a positive integer, got {value!r}.")
        if self.dim % self.n_heads != 0:
            divisors = [h for h in range(1, self.dim + 1) if self.dim % h == 0]
            below = max(h for h in divisors if h < self.n_heads)
            nearest = [below] + [h for h in divisors if h > self.n_heads][:1]
            raise ValueError(
                f"InhibiDistilBertConfig.dim ({self.dim}) must be divisible by n_heads ({self.n_heads}): set n_heads "
                f"to a divisor of dim (nearest: {' or '.join(map(str, nearest))}) or dim to a multiple of n_heads "
                f"(e.g. {self.dim + (-self.dim) % self.n_heads})."
            )
        for name in ("dropout", "attention_dropout", "qa_dropout", "seq_classif_dropout"):
            value = getattr(self, name)
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"InhibiDistilBertConfig.{name} must lie in [0, 1), got {value!r}.")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"InhibiDistilBertConfig.activation={self.activation!r} is unknown; use one of {', '.join(_ACTIVATIONS)}."
            )
        for name in ("score_scale_init", "shift_init", "output_scale_init"):
            value = getattr(self, name)
            try:
                finite = not isinstance(value, bool) and math.isfinite(float(value))
            except (TypeError, ValueError):
                finite = False
            if not finite:
                raise ValueError(f"InhibiDistilBertConfig.{name} must be a finite number, got {value!r}.")
            if name != "shift_init" and value < 0:
                raise ValueError(
                    f"InhibiDistilBertConfig.{name} must be non-negative (a scale), got {value!r}; "
                    "flip the sign of the data, not of the scale."
                )
        for name in CHOICES:
            self.checked(name)


__all__ = ["InhibiDistilBertConfig"]

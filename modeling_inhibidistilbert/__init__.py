"""InhibiDistilBERT: DistilBERT with inhibitor attention, Hub-native through `trust_remote_code`.

Importing the package registers the architecture with transformers' Auto classes, so that
`AutoModel.from_pretrained(folder)` works locally without `trust_remote_code`, and marks every class for
`save_pretrained` to write the code files and the full `auto_map` next to the weights.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_inhibidistilbert import AUTO_MAP, InhibiDistilBertConfig
from .modeling_inhibidistilbert import (
    InhibiDistilBertForMaskedLM,
    InhibiDistilBertForMultipleChoice,
    InhibiDistilBertForQuestionAnswering,
    InhibiDistilBertForSequenceClassification,
    InhibiDistilBertForTokenClassification,
    InhibiDistilBertModel,
    InhibiDistilBertPreTrainedModel,
    inhibitor_attention_cdist,
    inhibitor_scores,
)

__version__ = "0.1.0"

_AUTO_CLASSES = {
    AutoModel: InhibiDistilBertModel,
    AutoModelForMaskedLM: InhibiDistilBertForMaskedLM,
    AutoModelForSequenceClassification: InhibiDistilBertForSequenceClassification,
    AutoModelForTokenClassification: InhibiDistilBertForTokenClassification,
    AutoModelForQuestionAnswering: InhibiDistilBertForQuestionAnswering,
    AutoModelForMultipleChoice: InhibiDistilBertForMultipleChoice,
}


def register_auto_classes() -> None:
    """Register with the Auto classes locally and mark the classes for `save_pretrained` (idempotent)."""
    AutoConfig.register(InhibiDistilBertConfig.model_type, InhibiDistilBertConfig, exist_ok=True)
    InhibiDistilBertConfig.register_for_auto_class()
    for auto_class, model_class in _AUTO_CLASSES.items():
        auto_class.register(InhibiDistilBertConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)


register_auto_classes()

__all__ = [
    "AUTO_MAP",
    "InhibiDistilBertConfig",
    "InhibiDistilBertForMaskedLM",
    "InhibiDistilBertForMultipleChoice",
    "InhibiDistilBertForQuestionAnswering",
    "InhibiDistilBertForSequenceClassification",
    "InhibiDistilBertForTokenClassification",
    "InhibiDistilBertModel",
    "InhibiDistilBertPreTrainedModel",
    "inhibitor_attention_cdist",
    "inhibitor_scores",
    "register_auto_classes",
]

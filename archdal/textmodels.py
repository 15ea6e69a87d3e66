"""BERT, DistilBERT and RoBERTa (`transformers`) behind the same model interface as the CNNs.

The Hugging Face sequence classifier is split at its last linear layer: everything before
it (encoder and the head's first layers, dropout included) is the `neck`, whose output is
the representation that layer reads, the embedding coreset and BADGE use; the last layer
is the `classifier`, so BADGE's gradient embedding is that layer's gradient. Dropout is
spread through the whole transformer, so MC dropout samples full forward passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from archdal.config import RunConfig
from archdal.errors import ConfigError, DataError
from archdal.models import ALModel

HUB_IDS = {"bert": "bert-base-uncased", "distilbert": "distilbert-base-uncased",
           "roberta": "roberta-base"}  # fmt: skip
# arch → (Hugging Face model type, path of the last linear layer, dropout fields set from
# `RunConfig.dropout`: the hidden dropout and the classification head's).
FAMILIES = {
    "bert": ("bert", "classifier", ("hidden_dropout_prob", "classifier_dropout")),
    "distilbert": ("distilbert", "classifier", ("dropout", "seq_classif_dropout")),
    "roberta": ("roberta", "classifier.out_proj", ("hidden_dropout_prob", "classifier_dropout")),
}
TEXT_ARCHS = tuple(HUB_IDS)
TOKEN_TYPES = {"bert"}  # the family whose inputs carry segment ids (sentence pairs)


def model_source(config: RunConfig) -> str:
    """`--model-path` when given, else the arch's hub id."""
    return config.model_path or HUB_IDS[config.arch]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No load reports or progress bars from `transformers` (expected missing head keys)."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        logging.enable_progress_bar()


class TextNet(ALModel):
    """A transformer classifier on 2×L token tensors (ids, token types)."""

    def __init__(self, body: nn.Module, classifier: nn.Linear, pad_id: int, token_types: bool):
        super().__init__(classifier.in_features)
        self.body = body
        self.classifier = classifier
        self.pad_id = pad_id
        self.token_types = token_types

    def trunk(self, tokens: torch.Tensor) -> torch.Tensor:
        """The batch without the padding columns none of its rows uses (deterministic)."""
        used = int((tokens[:, 0] != self.pad_id).sum(dim=1).max())
        return tokens[:, :, : max(1, used)]

    def neck(self, tokens: torch.Tensor) -> torch.Tensor:
        ids = tokens[:, 0].long()
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": (ids != self.pad_id).long()}
        if self.token_types:
            inputs["token_type_ids"] = tokens[:, 1].long()
        return self.body(**inputs).logits  # the last layer is an Identity: its input

    def sample_dropout(self) -> None:
        """Train mode: every dropout of the transformer on (no BatchNorm to protect)."""
        self.train()

    def pass_order(self, tokens: torch.Tensor) -> torch.Tensor:
        """Shortest first: each batch then holds similar lengths, and `trunk` cuts its
        padding (Banking77 at most 64 tokens: a pool pass measured about 3x faster)."""
        return torch.argsort((tokens[:, 0] != self.pad_id).sum(dim=1), stable=True)


class TextModelFactory:
    """Builds each round's model: the pretrained weights with a freshly seeded head.

    The weights are read once; every call creates the architecture from its config
    (initialised from torch's global RNG, which the loop seeds) and loads them, which is
    what `from_pretrained` does without re-reading the files each round.
    """

    def __init__(self, config: RunConfig, num_classes: int, pad_id: int, tokenizer: str):
        from transformers import AutoConfig, AutoModelForSequenceClassification

        self.source = model_source(config)
        if tokenizer != self.source:
            raise ConfigError(
                f"data tokenized by {tokenizer!r} cannot feed the model at {self.source!r}"
            )
        model_type, self.last_layer, dropout_fields = FAMILIES[config.arch]
        try:
            hf_config = AutoConfig.from_pretrained(self.source, num_labels=num_classes)
        except (OSError, ValueError) as err:
            raise DataError(
                f"no model at {self.source!r} ({err}); give --model-path a local model "
                "directory, or allow the Hugging Face hub"
            ) from err
        if hf_config.model_type != model_type:
            raise ConfigError(
                f"the model at {self.source!r} is a {hf_config.model_type!r} model, but arch is "
                f"{config.arch!r}; choose the arch of its family"
            )
        for name in dropout_fields:
            setattr(hf_config, name, config.dropout)
        self.hf_config = hf_config
        with quiet_transformers():
            pretrained, info = AutoModelForSequenceClassification.from_pretrained(
                self.source,
                config=hf_config,
                dtype=torch.float32,
                ignore_mismatched_sizes=True,
                output_loading_info=True,
            )
        # Layers the checkpoint lacks (the head) were initialised here from an unseeded RNG:
        # each round initialises them afresh under its own seed instead.
        fresh = set(info["missing_keys"])
        fresh |= {k if isinstance(k, str) else k[0] for k in info["mismatched_keys"]}
        head = f"{self.last_layer}."
        self.weights = {
            k: v
            for k, v in pretrained.state_dict().items()
            if k not in fresh and not k.startswith(head)
        }
        self.pad_id = pad_id
        self.token_types = model_type in TOKEN_TYPES

    def __call__(self) -> TextNet:
        from transformers import AutoModelForSequenceClassification

        with quiet_transformers():
            body = AutoModelForSequenceClassification.from_config(self.hf_config)
        classifier = body.get_submodule(self.last_layer)
        body.set_submodule(self.last_layer, nn.Identity())
        body.load_state_dict(self.weights, strict=False)
        return TextNet(body, classifier, self.pad_id, self.token_types)

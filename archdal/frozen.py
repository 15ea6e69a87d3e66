"""Heads on a frozen encoder's embeddings (`--arch frozen`): the only part trained each round.

`linear` is multinomial logistic regression (weight decay from the optimizer); its neck is
the identity, so the embedding coreset and BADGE read is the encoder's. `mlp` has one
hidden layer with dropout, so MC dropout (BALD) samples a model; its embedding is the
hidden layer. Both standardise the embeddings by the training set's statistics in their
(deterministic) trunk, so that one learning rate fits encoders of any scale.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from archdal.models import ALModel

# The heads' training protocol (`RunConfig.for_dataset` applies it to arch frozen; flags
# override it): SGD with momentum and a cosine schedule as for the CNNs, with
# early stopping on validation accuracy.
PROTOCOL: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.1,
    "weight_decay": 5e-4,
    "max_epochs": 200,
    "patience": 20,
    "train_acc_stop": 1.0,
    "batch_size": 64,
    "dropout": 0.5,
}


class FrozenHead(ALModel):
    """Standardised embeddings (trunk) → identity or hidden layer with dropout (neck) →
    linear classifier."""

    def __init__(
        self,
        dim: int,
        num_classes: int,
        head: str,
        hidden: int,
        dropout: float,
        mean: torch.Tensor,
        std: torch.Tensor,
    ):
        width = dim if head == "linear" else hidden
        super().__init__(width)
        self.register_buffer("mean", mean.reshape(1, -1).float())
        self.register_buffer("std", std.reshape(1, -1).float())
        if head == "linear":
            self.neck = nn.Identity()
        else:
            self.neck = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(width, num_classes)

    def trunk(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    def sample_dropout(self) -> None:
        """Dropout on (the mlp's only stochastic layer); a linear head has none to sample."""
        self.eval()
        for module in self.neck.modules():
            if isinstance(module, nn.Dropout):
                module.train()

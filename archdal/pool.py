"""One pass over the unlabelled pool per round, producing what the strategy needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from archdal.models import ALModel, in_pass_order, restore_order

PROBS, EMBEDDINGS, LABELED_EMBEDDINGS, MC = "probs", "embeddings", "labeled_embeddings", "mc"
# The acquisition representation of pool and labelled set (the config's
# `acq_representation`), and DropQuery's count of feature-dropout passes that change the
# prediction.
REPRESENTATION, DROPOUT_FLIPS = "representation", "dropout_flips"
NEEDS = (PROBS, EMBEDDINGS, LABELED_EMBEDDINGS, MC, REPRESENTATION, DROPOUT_FLIPS)
# DropQuery's feature dropout (Gupte et al. 2024): rate 0.75, M = 3 passes.
FEATURE_DROPOUT, FEATURE_DROPOUT_PASSES = 0.75, 3


@dataclass(frozen=True)
class PoolView:
    """The model's view of the unlabelled pool (rows in pool order); fields not asked for
    are None. `mc_*` are running statistics over T dropout samples, never T×N×C."""

    size: int
    probs: torch.Tensor | None = None  # N×C softmax, dropout off
    embeddings: torch.Tensor | None = None  # N×D penultimate features
    labeled_embeddings: torch.Tensor | None = None  # L×D, for distance to the labelled set
    mc_mean_probs: torch.Tensor | None = None  # N×C mean of T dropout softmaxes
    mc_mean_entropy: torch.Tensor | None = None  # N, mean entropy of the T softmaxes
    representation: torch.Tensor | None = None  # N×D acquisition representation
    labeled_representation: torch.Tensor | None = None  # L×D, the same of the labelled set
    dropout_flips: torch.Tensor | None = None  # N, passes of M whose argmax differs
    num_classes: int | None = None  # classes of the task (ProbCover's pseudo-label count)
    coverage_radius: float | None = None  # ProbCover's δ; None: from purity


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row; 0·log 0 counts as 0."""
    return -(probs * probs.clamp_min(1e-30).log()).sum(dim=1)


@torch.no_grad()
def embed_inputs(model: ALModel, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Penultimate embeddings (eval mode, dropout off) of images or token rows, in batches."""
    model.eval()
    x, order = in_pass_order(model, inputs)
    parts = [model.neck(model.trunk(x[s : s + batch_size])) for s in range(0, len(x), batch_size)]
    return restore_order(torch.cat(parts), order)


@torch.no_grad()
def compute_view(
    model: ALModel,
    pool_images: torch.Tensor,
    needs: frozenset[str],
    batch_size: int,
    mc_samples: int = 10,
    labeled_images: torch.Tensor | None = None,
    representation: tuple[torch.Tensor, torch.Tensor] | None = None,
    num_classes: int | None = None,
    coverage_radius: float | None = None,
) -> PoolView:
    """Run the trunk once per pool example and derive every requested field from it.

    MC dropout reuses the trunk's features and samples only the neck, where all of the
    model's dropout lives (for a transformer, the whole network); dropout masks come from
    torch's global RNG, which the loop seeds from the trajectory's generator. DropQuery's
    feature dropout drops the penultimate embedding (dropout off elsewhere) M times.

    `representation` is the (pool, labelled) rows of a fixed acquisition representation;
    without it a strategy that needs one reads the model's own embeddings.
    """
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"unknown pool-view needs {sorted(unknown)}; allowed: {NEEDS}")
    model_representation = REPRESENTATION in needs and representation is None
    if model_representation:
        needs = needs | {EMBEDDINGS, LABELED_EMBEDDINGS}
    probs, embeddings, mc_probs, mc_entropy, flips = [], [], [], [], []
    pool, order = in_pass_order(model, pool_images)
    if needs & {PROBS, EMBEDDINGS, MC, DROPOUT_FLIPS}:
        for start in range(0, len(pool), batch_size):
            model.eval()
            trunk = model.trunk(pool[start : start + batch_size])
            embedding = model.neck(trunk)
            if PROBS in needs:
                probs.append(model.classifier(embedding).softmax(dim=1))
            if EMBEDDINGS in needs:
                embeddings.append(embedding)
            if MC in needs:
                model.sample_dropout()
                samples = torch.stack(
                    [model.classifier(model.neck(trunk)).softmax(dim=1) for _ in range(mc_samples)]
                )  # T×batch×C: bounded by the batch, never T×N×C
                mc_probs.append(samples.mean(dim=0))
                mc_entropy.append(entropy(samples.flatten(0, 1)).view(mc_samples, -1).mean(dim=0))
            if DROPOUT_FLIPS in needs:
                flips.append(dropout_flips(model, embedding))
        model.eval()
    labeled = None
    if LABELED_EMBEDDINGS in needs:
        if labeled_images is None:
            raise ValueError("labeled_embeddings requested without labeled_images")
        labeled = embed_inputs(model, labeled_images, batch_size)

    def joined(parts: list[torch.Tensor]) -> torch.Tensor | None:
        return restore_order(torch.cat(parts), order) if parts else None

    embeddings_view = joined(embeddings)
    if model_representation:
        representation = (embeddings_view, labeled)
    return PoolView(
        size=len(pool_images),
        probs=joined(probs),
        embeddings=embeddings_view,
        labeled_embeddings=labeled,
        mc_mean_probs=joined(mc_probs),
        mc_mean_entropy=joined(mc_entropy),
        representation=representation[0] if REPRESENTATION in needs else None,
        labeled_representation=representation[1] if REPRESENTATION in needs else None,
        dropout_flips=joined(flips),
        num_classes=num_classes,
        coverage_radius=coverage_radius,
    )


def dropout_flips(model: ALModel, embedding: torch.Tensor) -> torch.Tensor:
    """How many of M passes with dropout on the embedding change the classifier's argmax."""
    clean = model.classifier(embedding).argmax(dim=1)
    count = torch.zeros(len(embedding), dtype=torch.long, device=embedding.device)
    for _ in range(FEATURE_DROPOUT_PASSES):
        dropped = F.dropout(embedding, FEATURE_DROPOUT, training=True)
        count += model.classifier(dropped).argmax(dim=1) != clean
    return count

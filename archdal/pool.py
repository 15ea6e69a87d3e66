"""One pass over the unlabelled pool per round, producing what the strategy needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from archdal.models import ALModel, in_pass_order, restore_order

PROBS, EMBEDDINGS, LABELED_EMBEDDINGS, MC = "probs", "embeddings", "labeled_embeddings", "mc"
NEEDS = (PROBS, EMBEDDINGS, LABELED_EMBEDDINGS, MC)
MC_BLOCK = 1024  # pool rows per draw of dropout masks (the eval batch they were drawn at)


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


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row; 0·log 0 counts as 0."""
    return -(probs * probs.clamp_min(1e-30).log()).sum(dim=1)


def embed_inputs(model: ALModel, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Penultimate embeddings (eval mode, dropout off) of images or token rows, in batches."""
    model.eval()
    x, order = in_pass_order(model, inputs)
    with torch.inference_mode():
        parts = [model.neck(model.trunk(x[s : s + batch_size]))
                 for s in range(0, len(x), batch_size)]  # fmt: skip
    return restore_order(torch.cat(parts).float(), order)  # bf16 autocast: back to fp32


def compute_view(
    model: ALModel,
    pool_images: torch.Tensor,
    needs: frozenset[str],
    batch_size: int,
    mc_samples: int = 10,
    labeled_images: torch.Tensor | None = None,
) -> PoolView:
    """Run the trunk once per pool example and derive every requested field from it.

    MC dropout reuses the trunk's features and samples only the neck, where all of the
    model's dropout lives (for a transformer, the whole network); dropout masks come from
    torch's global RNG, which the loop seeds from the trajectory's generator, and are drawn
    per block of `MC_BLOCK` rows, so the picks do not depend on the batch size. Batches run
    under `inference_mode`; joining them outside it makes ordinary tensors, which
    strategies may modify in place.
    """
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"unknown pool-view needs {sorted(unknown)}; allowed: {NEEDS}")
    probs, embeddings, mc_probs, mc_entropy = [], [], [], []
    pool, order = in_pass_order(model, pool_images)
    if needs & {PROBS, EMBEDDINGS, MC}:
        chunk = min(batch_size, MC_BLOCK)
        with torch.inference_mode():
            for block in range(0, len(pool), MC_BLOCK):
                trunks = []
                for start in range(block, min(block + MC_BLOCK, len(pool)), chunk):
                    model.eval()
                    trunks.append(model.trunk(pool[start : start + chunk]))
                    embedding = model.neck(trunks[-1])
                    if PROBS in needs:
                        probs.append(model.classifier(embedding).softmax(dim=1))
                    if EMBEDDINGS in needs:
                        embeddings.append(embedding)
                if MC in needs:
                    model.sample_dropout()
                    trunk, t = torch.cat(trunks), mc_samples  # T×block×C: never T×N×C
                    samples = torch.stack(
                        [model.classifier(model.neck(trunk)).softmax(dim=1) for _ in range(t)]
                    )
                    mc_probs.append(samples.mean(dim=0))
                    mc_entropy.append(entropy(samples.flatten(0, 1)).view(t, -1).mean(dim=0))
        model.eval()
    labeled = None
    if LABELED_EMBEDDINGS in needs:
        if labeled_images is None:
            raise ValueError("labeled_embeddings requested without labeled_images")
        labeled = embed_inputs(model, labeled_images, batch_size)

    def joined(parts: list[torch.Tensor]) -> torch.Tensor | None:
        return restore_order(torch.cat(parts).float(), order) if parts else None  # bf16: fp32

    return PoolView(
        size=len(pool_images),
        probs=joined(probs),
        embeddings=joined(embeddings),
        labeled_embeddings=labeled,
        mc_mean_probs=joined(mc_probs),
        mc_mean_entropy=joined(mc_entropy),
    )

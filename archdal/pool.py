"""One pass over the unlabelled pool per round, producing what the strategy needs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archdal.models import ALModel, in_pass_order, restore_order

PROBS, EMBEDDINGS, LABELED_EMBEDDINGS, MC = "probs", "embeddings", "labeled_embeddings", "mc"
# The acquisition representation of pool and labelled set (the config's
# `acq_representation`, rows L2-normalised as TypiClust's, ProbCover's and DropQuery's authors
# do), and DropQuery's count of feature-dropout passes that change the
# prediction.
REPRESENTATION, DROPOUT_FLIPS = "representation", "dropout_flips"
# DropQuery's feature dropout (Gupte et al. 2024): rate 0.75, M = 3 passes.
FEATURE_DROPOUT, FEATURE_DROPOUT_PASSES = 0.75, 3
MC_JOINT = "mc_joint"  # per-sample probabilities under dropout masks shared by all rows
LABELED_PROBS = "labeled_probs"
NEEDS = (PROBS, EMBEDDINGS, LABELED_EMBEDDINGS, LABELED_PROBS, MC, MC_JOINT, REPRESENTATION,
         DROPOUT_FLIPS)  # fmt: skip
MC_BLOCK = 1024  # pool rows per draw of dropout masks (the eval batch they were drawn at)


@dataclass(frozen=True)
class PoolView:
    """The model's view of the unlabelled pool (rows in pool order); fields not asked for
    are None. `mc_mean_*` are running statistics over T dropout samples; only `mc_joint`
    (BatchBALD) keeps the N×T×C samples themselves (float32: 4·N·T·C bytes, 40 MB for
    100k points, T = 10, 10 classes)."""

    size: int
    probs: torch.Tensor | None = None  # N×C softmax, dropout off
    embeddings: torch.Tensor | None = None  # N×D penultimate features
    labeled_embeddings: torch.Tensor | None = None  # L×D, for distance to the labelled set
    labeled_probs: torch.Tensor | None = None  # L×C softmax of the labelled set (BAIT)
    mc_mean_probs: torch.Tensor | None = None  # N×C mean of T dropout softmaxes
    mc_mean_entropy: torch.Tensor | None = None  # N, mean entropy of the T softmaxes
    representation: torch.Tensor | None = None  # N×D acquisition representation
    labeled_representation: torch.Tensor | None = None  # L×D, the same of the labelled set
    dropout_flips: torch.Tensor | None = None  # N, passes of M whose argmax differs
    num_classes: int | None = None  # classes of the task (ProbCover's pseudo-label count)
    coverage_radius: float | None = None  # ProbCover's δ; None: from purity
    mc_joint: torch.Tensor | None = None  # N×T×C softmaxes, sample t one model for all rows


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


class SharedDropout:
    """Dropout whose mask for sample t is one per position of a row, the same for every
    row of every batch: sample t is then one model (one weight draw) over the whole pool,
    as a joint distribution over several points' labels needs (BatchBALD's consistent MC
    dropout).

    Inside `apply(model)` the model is in eval mode and every `nn.Dropout` module
    multiplies its input by the current sample's mask (drawn from torch's global CPU RNG
    when first needed, so device-independent). A later batch with longer rows (text
    batched by length) grows the mask, keeping its prefix, so a row's outputs do not
    depend on its batch. Dropout fused into attention kernels, which no module applies,
    stays off in this pass.
    """

    def __init__(self) -> None:
        self.sample = 0
        self.masks: dict[tuple[int, int], torch.Tensor] = {}

    def _mask(self, module: nn.Dropout, shape: torch.Size) -> torch.Tensor:
        key = (id(module), self.sample)
        mask = self.masks.get(key)
        if mask is None or any(m < s for m, s in zip(mask.shape, shape, strict=True)):
            size = shape if mask is None else torch.Size(map(max, mask.shape, shape))
            grown = (torch.rand(size) >= module.p).float() / (1 - module.p)
            if mask is not None:
                grown[tuple(slice(0, m) for m in mask.shape)] = mask
            self.masks[key] = mask = grown
        return mask[tuple(slice(0, s) for s in shape)]

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
        x = inputs[0]
        return x * self._mask(module, x.shape[1:]).to(device=x.device, dtype=x.dtype)

    @contextlib.contextmanager
    def apply(self, model: nn.Module) -> Iterator[SharedDropout]:
        model.eval()
        handles = [
            m.register_forward_hook(self._hook)
            for m in model.modules()
            if isinstance(m, nn.Dropout) and m.p > 0
        ]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


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
    torch's global RNG, which the loop seeds from the trajectory's generator. `mc_joint`
    samples with `SharedDropout` masks instead (one per sample for the whole pool); when
    it is asked for, the `mc` statistics are taken from those same samples. DropQuery's
    feature dropout drops the penultimate embedding (dropout off elsewhere) M times. Masks
    of either kind, and DropQuery's, are drawn per block of `MC_BLOCK` rows, so the picks do not
    depend on the batch size. Batches run under `inference_mode`; joining them outside it
    makes ordinary tensors, which strategies may modify in place.

    `representation` is the (pool, labelled) rows of a fixed acquisition representation;
    without it a strategy that needs one reads the model's own embeddings.
    """
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"unknown pool-view needs {sorted(unknown)}; allowed: {NEEDS}")
    model_representation = REPRESENTATION in needs and representation is None
    if model_representation:
        needs = needs | {EMBEDDINGS, LABELED_EMBEDDINGS}
    probs, embeddings, mc_probs, mc_entropy, joint, flips = [], [], [], [], [], []
    shared = SharedDropout() if MC_JOINT in needs else None
    pool, order = in_pass_order(model, pool_images)
    if needs & {PROBS, EMBEDDINGS, MC, MC_JOINT, DROPOUT_FLIPS}:
        chunk = min(batch_size, MC_BLOCK)
        with torch.inference_mode():
            for block in range(0, len(pool), MC_BLOCK):
                trunks, block_embeddings = [], []
                for start in range(block, min(block + MC_BLOCK, len(pool)), chunk):
                    model.eval()
                    trunks.append(model.trunk(pool[start : start + chunk]))
                    block_embeddings.append(model.neck(trunks[-1]))
                    if PROBS in needs:
                        probs.append(model.classifier(block_embeddings[-1]).softmax(dim=1))
                if EMBEDDINGS in needs:
                    embeddings += block_embeddings
                if DROPOUT_FLIPS in needs:
                    flips.append(dropout_flips(model, torch.cat(block_embeddings)))
                if needs & {MC, MC_JOINT}:  # T×block×C: bounded by the block, never T×N×C
                    samples = _block_samples(model, trunks, mc_samples, shared)
                    if MC_JOINT in needs:
                        joint.append(samples.transpose(0, 1).contiguous())
                    if MC in needs:
                        mc_probs.append(samples.mean(dim=0))
                        mc_entropy.append(
                            entropy(samples.flatten(0, 1)).view(mc_samples, -1).mean(dim=0)
                        )
        model.eval()
    labeled = labeled_probs = None
    if needs & {LABELED_EMBEDDINGS, LABELED_PROBS}:
        if labeled_images is None:
            raise ValueError("labelled-set fields requested without labeled_images")
        labeled = embed_inputs(model, labeled_images, batch_size)
        if LABELED_PROBS in needs:
            labeled_probs = model.classifier(labeled).softmax(dim=1)
        if LABELED_EMBEDDINGS not in needs:
            labeled = None

    def joined(parts: list[torch.Tensor]) -> torch.Tensor | None:
        return restore_order(torch.cat(parts).float(), order) if parts else None  # bf16: fp32

    embeddings_view = joined(embeddings)
    if model_representation:
        representation = (F.normalize(embeddings_view, dim=1), F.normalize(labeled, dim=1))
    return PoolView(
        size=len(pool_images),
        probs=joined(probs),
        embeddings=embeddings_view,
        labeled_embeddings=labeled,
        labeled_probs=labeled_probs,
        mc_mean_probs=joined(mc_probs),
        mc_mean_entropy=joined(mc_entropy),
        representation=representation[0] if REPRESENTATION in needs else None,
        labeled_representation=representation[1] if REPRESENTATION in needs else None,
        dropout_flips=restore_order(torch.cat(flips), order) if flips else None,
        num_classes=num_classes,
        coverage_radius=coverage_radius,
        mc_joint=joined(joint),
    )


def dropout_flips(model: ALModel, embedding: torch.Tensor) -> torch.Tensor:
    """How many of M passes with dropout on the embedding change the classifier's argmax."""
    clean = model.classifier(embedding).argmax(dim=1)
    count = torch.zeros(len(embedding), dtype=torch.long, device=embedding.device)
    for _ in range(FEATURE_DROPOUT_PASSES):
        dropped = F.dropout(embedding, FEATURE_DROPOUT, training=True)
        count += model.classifier(dropped).argmax(dim=1) != clean
    return count


def _block_samples(
    model: ALModel, trunks: list[torch.Tensor], samples: int, shared: SharedDropout | None
) -> torch.Tensor:
    """A block's dropout samples from one draw of masks over its rows. Token rows batched by
    length have trunk outputs of different lengths: those are sampled chunk by chunk (their
    own-mask picks then depend on the batch size, as before blocks existed)."""
    if len({t.shape[1:] for t in trunks}) == 1:
        return _dropout_samples(model, torch.cat(trunks), samples, shared)
    return torch.cat([_dropout_samples(model, t, samples, shared) for t in trunks], dim=1)


def _dropout_samples(
    model: ALModel, trunk: torch.Tensor, samples: int, shared: SharedDropout | None
) -> torch.Tensor:
    """T dropout softmaxes of a batch (T×batch×C): the model's own MC dropout, or, with
    `shared`, the masks shared by all rows."""
    if shared is None:
        model.sample_dropout()
        return torch.stack(
            [model.classifier(model.neck(trunk)).softmax(dim=1) for _ in range(samples)]
        )
    out = []
    with shared.apply(model):
        for t in range(samples):
            shared.sample = t
            out.append(model.classifier(model.neck(trunk)).softmax(dim=1))
    return torch.stack(out)

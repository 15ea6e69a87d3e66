"""Time and peak extra memory of every strategy's selection, with naive baselines.

    python benchmarks/selection.py                      # 10k, 30k, 100k pools on the CPU
    python benchmarks/selection.py --sizes 10000 --device cuda

Inputs mimic a round of the paper's protocol: N pool embeddings of dimension 512, 10
classes, 1,000 labelled points, select 1,000. Each measurement runs in a fresh process:
the kernel's peak-RSS counter is reset once the inputs exist, so "extra MiB" is what
the selection itself allocated (CPU). On CUDA the torch allocator's peak is reported.
TypiClust, ProbCover and DropQuery read the embeddings as their representation (the
labelled rows too); ProbCover's δ comes from purity (the default), and DropQuery's
dropout flips are drawn uniformly from 0..3, so about half the pool are candidates.
Naive baselines run beside archdal's code in the same invocation, for ratios:
  coreset-naive: k-center greedy updating every point's distance at every pick;
  badge-naive:   k-means++ on the materialised N×(classes·dim) gradient embedding.
Strategies run with `RunConfig`'s default options (BatchBALD: M = 1,000 configurations on
the top 1,000 BALD points, T = 10 samples; BAIT: projected to 2048 / 10 = 204 dims).
BAIT and BatchBALD run up to `--heavy-max` (default 30k): raise it, with a smaller
`--select` (their memory hardly depends on it, their time grows with it), to find the
largest pool that fits in 2 GiB extra.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch

from archdal.config import RunConfig
from archdal.pool import PoolView
from archdal.strategies import REGISTRY
from archdal.strategies import classic as S

DIM, CLASSES, LABELED, SELECT, SAMPLES = 512, 10, 1000, 1000, 10
HEAVY = ("bait", "batchbald")


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def make_view(n: int, device: str) -> PoolView:
    g = torch.Generator().manual_seed(0)
    probs = (2 * torch.randn(n, CLASSES, generator=g)).softmax(1)
    joint = (2 * torch.randn(n, SAMPLES, CLASSES, generator=g)).softmax(2)
    mc_p = joint.mean(1)
    embeddings = torch.randn(n, DIM, generator=g).to(device)
    labeled = torch.randn(LABELED, DIM, generator=g).to(device)
    return PoolView(
        size=n,
        probs=probs.to(device),
        embeddings=embeddings,
        labeled_embeddings=labeled,
        mc_mean_probs=mc_p.to(device),
        mc_mean_entropy=S.entropy_scores(joint.flatten(0, 1)).view(n, SAMPLES).mean(1).to(device),
        representation=embeddings,
        labeled_representation=labeled,
        dropout_flips=torch.randint(0, 4, (n,), generator=g).to(device),
        num_classes=CLASSES,
        labeled_probs=(2 * torch.randn(LABELED, CLASSES, generator=g)).softmax(1).to(device),
        mc_joint=joint.to(device),
    )


def naive_coreset(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    x = view.embeddings
    d = S.min_sq_distance_to(x, view.labeled_embeddings)
    sq = (x * x).sum(1)
    picks = []
    for _ in range(n):
        i = int(d.argmax())
        picks.append(i)
        d = torch.minimum(d, sq + sq[i] - 2 * (x @ x[i]))
        d[i] = -1
    return torch.tensor(picks)


def naive_badge(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    a, h = S.gradient_embedding_factors(view.probs, view.embeddings)
    g = (a[:, :, None] * h[:, None, :]).flatten(1)  # N×(C·D), what bounded code must avoid
    sq = (g * g).sum(1)
    first = int(sq.argmax())
    picks = [first]
    d = (sq + sq[first] - 2 * (g @ g[first])).clamp_min(0)
    for _ in range(n - 1):
        keys = d.log() + S.gumbel_noise(len(g), rng, g.device)
        keys[picks] = -torch.inf
        i = int(keys.argmax())
        picks.append(i)
        d = torch.minimum(d, (sq + sq[i] - 2 * (g @ g[i])).clamp_min(0))
    return torch.tensor(picks)


NAIVE = {"coreset-naive": naive_coreset, "badge-naive": naive_badge}


def _measure(name: str, n: int, select_n: int, device: str, queue: mp.Queue) -> None:
    if name in NAIVE:
        select = NAIVE[name]
    else:
        strategy = REGISTRY[name]

        def select(view, n, rng):
            return strategy.pick(view, n, rng, RunConfig())

    view = make_view(n, device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak-RSS counter to the current RSS
        base = _rss_mib("VmRSS")
    start = time.perf_counter()
    picks = select(view, select_n, torch.Generator().manual_seed(1))
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if cuda:
        extra = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        extra = _rss_mib("VmHWM") - base
    assert len(set(picks.tolist())) == select_n
    queue.put((seconds, extra))


def measure(name: str, n: int, select_n: int, device: str) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(name, n, select_n, device, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--naive-max", type=int, default=30_000, help="largest pool for the naive baselines"
    )
    parser.add_argument(
        "--heavy-max", type=int, default=30_000, help=f"largest pool for {', '.join(HEAVY)}"
    )
    parser.add_argument("--strategies", nargs="+", default=[*REGISTRY, *NAIVE])
    parser.add_argument(
        "--select",
        type=int,
        default=SELECT,
        help="batch size (smaller: BAIT's and BatchBALD's memory at large pools in less time)",
    )
    args = parser.parse_args()
    names = args.strategies
    print(f"device {args.device}, {torch.get_num_threads()} threads, dim {DIM}, "
          f"{CLASSES} classes, {LABELED} labelled, select {args.select}")  # fmt: skip
    print("| strategy | pool | seconds | extra MiB |")
    print("|---|---:|---:|---:|")
    timings: dict[tuple[str, int], float] = {}
    for n in args.sizes:
        for name in names:
            if name.endswith("-naive") and n > args.naive_max:
                continue
            if name in HEAVY and n > args.heavy_max:
                continue
            seconds, extra = measure(name, n, args.select, args.device)
            timings[name, n] = seconds
            print(f"| {name} | {n:,} | {seconds:.3f} | {extra:.0f} |", flush=True)
    for base in ("coreset", "badge"):
        for n in args.sizes:
            if (f"{base}-naive", n) in timings and (base, n) in timings:
                ratio = timings[f"{base}-naive", n] / timings[base, n]
                print(f"{base} speed-up over {base}-naive at {n:,}: {ratio:.1f}x")


if __name__ == "__main__":
    main()

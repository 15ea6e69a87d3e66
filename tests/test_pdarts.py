"""PDARTS: progressive search on tiny data, genotype derivation, the derived ALModel."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F

from archdal.archopt.pdarts import (
    CELL_KINDS,
    OPS,
    Genotype,
    PdartsNet,
    PdartsSettings,
    Supernet,
    derive_genotype,
    edge_sources,
    search,
)
from archdal.errors import ConfigError

MEAN, STD = torch.tensor([0.3]), torch.tensor([0.4])
TINY = PdartsSettings(channels=4, cells=(3, 4, 5), epochs=2, warmup_epochs=1, batch_size=64)
TWO_NODES = dataclasses.replace(TINY, cells=(3, 3, 3), nodes=2, arch_lr=0.01)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The test machine's few cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's 8×8 digits as uint8 images (N×1×8×8) scaled to 0..255."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images * 255 / 16).round().to(torch.uint8)[:, None]
    return images, torch.tensor(data.target)


def tiny_search(
    digits, settings: PdartsSettings, seed: int = 0, n_train: int = 64, n_val: int = 32
):
    x, y = digits
    train, val = slice(0, n_train), slice(n_train, n_train + n_val)
    return search(x[train], y[train], x[val], y[val], 10, MEAN, STD, settings, seed)


def assert_valid(genotype: Genotype, nodes: int, skip_cap: int) -> None:
    for kind in CELL_KINDS:
        ops = getattr(genotype, kind)
        assert len(ops) == 2 * nodes
        for i, (name, source) in enumerate(ops):
            assert name in OPS and name != "none"
            assert 0 <= source < i // 2 + 2  # an input cell or an earlier node
        sources = [source for _, source in ops]
        assert all(a != b for a, b in zip(sources[::2], sources[1::2], strict=True))
        assert getattr(genotype, f"{kind}_concat") == tuple(range(2, nodes + 2))
    assert genotype.skip_connects <= skip_cap


def test_search_narrows_candidates_8_5_3_and_derives_a_valid_genotype(digits):
    result = tiny_search(digits, TINY, n_train=50, n_val=20)
    sizes = [
        {len(ops) for kind in CELL_KINDS for ops in stage[kind]} for stage in result.candidates
    ]
    assert sizes == [{8}, {5}, {3}]
    assert result.candidates[0]["normal"][0] == list(OPS)
    for earlier, later in zip(result.candidates, result.candidates[1:], strict=False):
        for kind in CELL_KINDS:
            assert all(set(b) < set(a) for a, b in zip(earlier[kind], later[kind], strict=True))
    assert len(result.alphas_normal) == len(result.alphas_reduce) == 14
    assert all(len(row) == 3 and sum(row) == pytest.approx(1) for row in result.alphas_normal)
    assert_valid(result.genotype, nodes=4, skip_cap=TINY.skip_cap)
    assert result.seconds > 0
    net = PdartsNet(result.genotype, 10, 1, MEAN, STD, channels=4, cells=3)
    assert net(digits[0][:3]).shape == (3, 10)


def test_alphas_train_after_warmup_only_and_search_is_deterministic(digits):
    searched, again = tiny_search(digits, TWO_NODES), tiny_search(digits, TWO_NODES)
    assert dataclasses.replace(again, seconds=0) == dataclasses.replace(searched, seconds=0)
    warm_only = tiny_search(digits, dataclasses.replace(TWO_NODES, epochs=1, warmup_epochs=1))
    longer_warm = tiny_search(digits, dataclasses.replace(TWO_NODES, warmup_epochs=2))
    # Weight-only epochs leave α at its near-uniform initialisation, however many they are.
    assert warm_only.alphas_normal == longer_warm.alphas_normal
    assert warm_only.alphas_reduce == longer_warm.alphas_reduce
    assert all(abs(w - 1 / 3) < 1e-2 for row in warm_only.alphas_normal for w in row)
    # One epoch of α steps (Adam, lr 0.01, one step per epoch) moves them visibly.
    moved = torch.tensor(searched.alphas_normal) - torch.tensor(warm_only.alphas_normal)
    assert moved.abs().max() > 1e-3
    assert tiny_search(digits, TWO_NODES, seed=1).alphas_normal != searched.alphas_normal


def weights_row(names: list[str], **weights: float) -> list[float]:
    return [weights.get(name, 0.01) for name in names]


def test_derive_genotype_keeps_two_strongest_edges_and_ignores_none():
    ops = list(OPS)
    edges = edge_sources(4)
    normal = [weights_row(ops, sep_conv_3x3=0.1) for _ in edges]
    normal[0] = weights_row(ops, none=0.9, max_pool_3x3=0.3)  # node 0 ← state 0
    normal[1] = weights_row(ops, dil_conv_5x5=0.4)  # node 0 ← state 1
    normal[2] = weights_row(ops, sep_conv_5x5=0.2)  # node 1 ← state 0: weakest, dropped
    normal[3] = weights_row(ops, avg_pool_3x3=0.6)
    normal[4] = weights_row(ops, none=0.95, skip_connect=0.5)
    normal[8] = weights_row(ops, dil_conv_3x3=0.7)  # node 2 ← node 1
    reduce = [weights_row(ops, max_pool_3x3=0.2 + 0.01 * e) for e in range(len(edges))]
    genotype = derive_genotype(normal, reduce, {k: [ops] * len(edges) for k in CELL_KINDS}, 2)
    assert genotype.normal == (
        ("max_pool_3x3", 0), ("dil_conv_5x5", 1),
        ("avg_pool_3x3", 1), ("skip_connect", 2),
        ("sep_conv_3x3", 0), ("dil_conv_3x3", 3),
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
    )  # fmt: skip
    # Later edges weigh more in the reduce cell: each node takes its two latest inputs.
    assert genotype.reduce == tuple(
        ("max_pool_3x3", s) for node in range(4) for s in (node, node + 1)
    )
    assert_valid(genotype, nodes=4, skip_cap=2)


@pytest.mark.parametrize("cap", [2, 0])
def test_skip_cap_replaces_the_weakest_skip_connects(cap):
    ops = ["none", "skip_connect", "sep_conv_3x3"]
    edges = len(edge_sources(4))
    # skip_connect dominates every edge, more so on later edges; sep_conv_3x3 is second.
    rows = [[0.05, 0.5 + 0.01 * e, 0.3] for e in range(edges)]
    candidates = {kind: [ops] * edges for kind in CELL_KINDS}
    uncapped = derive_genotype(rows, rows, candidates, skip_cap=8)
    assert uncapped.skip_connects == 8
    genotype = derive_genotype(rows, rows, candidates, skip_cap=cap)
    assert genotype.skip_connects == cap
    # The strongest skips (node 3 ← nodes 1, 2) survive; capped edges fall back to sep_conv_3x3
    # and, with it, to each node's first two inputs.
    expected = [("sep_conv_3x3", s) for _ in range(4) for s in (0, 1)]
    if cap:
        expected[-2:] = [("skip_connect", 3), ("skip_connect", 4)]
    assert list(genotype.normal) == expected
    assert genotype.reduce == uncapped.reduce  # the cap is for the normal cell only


def test_genotype_round_trips_and_rejects_invalid_ops():
    ops = (("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 2), ("max_pool_3x3", 0))
    genotype = Genotype(ops, (2, 3), ops, (2, 3))
    assert Genotype.from_dict(genotype.to_dict()) == genotype
    with pytest.raises(ConfigError, match="'none'"):
        Genotype((("none", 0), *ops[1:]), (2, 3), ops, (2, 3))
    with pytest.raises(ConfigError, match="earlier state"):
        Genotype((("sep_conv_3x3", 2), *ops[1:]), (2, 3), ops, (2, 3))


GENOTYPE = Genotype(
    (("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("dil_conv_3x3", 2)) * 2,
    (2, 3, 4, 5),
    (("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("skip_connect", 0), ("avg_pool_3x3", 2)) * 2,
    (2, 3, 4, 5),
)


@pytest.mark.parametrize("channels,size", [(1, 8), (1, 28), (3, 32), (3, 7)])
def test_networks_take_every_image_size(channels, size):
    mean, std = torch.full((channels,), 0.5), torch.full((channels,), 0.25)
    x = torch.randint(0, 256, (2, channels, size, size), dtype=torch.uint8)
    net = PdartsNet(GENOTYPE, 7, channels, mean, std, channels=4, cells=3).eval()
    assert net.trunk(x).shape == (2, net.embedding_dim) and net(x).shape == (2, 7)
    assert net.embedding_dim == 4 * 4 * 4  # 4 nodes × (4 channels, doubled twice)
    candidates = {kind: [list(OPS)] * 14 for kind in CELL_KINDS}
    assert Supernet(candidates, 7, channels, mean, std, 4, 3)(x).shape == (2, 7)


def test_derived_net_learns_digits_and_samples_dropout_in_the_neck(digits):
    torch.manual_seed(0)
    x, y = digits[0][:256], digits[1][:256]
    net = PdartsNet(GENOTYPE, 10, 1, MEAN, STD, channels=8, cells=3, dropout=0.3)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(6):
        net.train()
        for idx in torch.randperm(len(x)).split(32):
            optimizer.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        assert (net(x).argmax(1) == y).float().mean() > 0.9  # chance: 0.1
        assert torch.equal(net(x[:8]), net(x[:8]))
        net.sample_dropout()
        assert not net.stem.training and not torch.equal(net(x[:8]), net(x[:8]))
    record = net.architecture_record()
    assert Genotype.from_dict(record["genotype"]) == GENOTYPE
    assert record["skip_connects"] == 2 and record["cells"] == 3 and record["channels"] == 8


@pytest.mark.parametrize(
    "field,value",
    [
        ("channels", 0),
        ("ops_kept", (8, 5, 5)),
        ("ops_kept", (7, 5, 3)),
        ("ops_kept", (8, 5, 2)),
        ("ops_kept", (8, 5)),
        ("cells", (2, 11, 17)),
        ("skip_dropout", (0.1, 0.4, 1.0)),
        ("warmup_epochs", 26),
        ("arch_lr", 0.0),
        ("skip_cap", -1),
        ("derived_cells", 2),
    ],
)
def test_settings_reject_bad_values_naming_the_field(field, value):
    PdartsSettings().validate()
    with pytest.raises(ConfigError, match=f"pdarts {field} must be .*got {re.escape(repr(value))}"):
        dataclasses.replace(PdartsSettings(), **{field: value}).validate()

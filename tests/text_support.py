"""Tiny, randomly initialised BERT, DistilBERT and RoBERTa with locally trained tokenizers:
the three model families of the text path, offline and fast, saved as model directories
that `--model-path` reads exactly as it reads a real checkpoint."""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path

import pytest
import torch

from archdal import RunConfig, Runtime

TINY = {"hidden": 32, "layers": 2, "heads": 2, "ffn": 64, "positions": 66}
CPU = Runtime(device="cpu", eval_batch_size=256)


def _bert_tokenizer(corpus: list[str]):
    """WordPiece over every character plus the corpus's 500 most frequent words.

    The vocabulary is chosen here rather than by `WordPieceTrainer`, whose ties fall
    differently from one process to the next (measured: 4 vocabularies in 4 runs).
    """
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words = Counter(
        w for text in corpus for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text))
    )
    chars = sorted({c for w in words for c in w})
    frequent = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    vocab = specials + chars + [f"##{c}" for c in chars] + frequent[:500]
    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.decoder = decoders.WordPiece()
    names = dict(zip(("pad", "unk", "cls", "sep", "mask"), specials, strict=True))
    return tok, names


def _roberta_tokenizer(corpus: list[str]):
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.decoder = decoders.ByteLevel()
    names = dict(zip(("cls", "pad", "sep", "unk", "mask"), specials, strict=True))
    return tok, names


def _tiny_config(arch: str, vocab: int):
    from transformers import BertConfig, DistilBertConfig, RobertaConfig

    t = TINY
    if arch == "distilbert":
        return DistilBertConfig(
            vocab_size=vocab, dim=t["hidden"], n_layers=t["layers"], n_heads=t["heads"],
            hidden_dim=t["ffn"], max_position_embeddings=t["positions"], pad_token_id=0,
        )  # fmt: skip
    common = dict(
        vocab_size=vocab, hidden_size=t["hidden"], num_hidden_layers=t["layers"],
        num_attention_heads=t["heads"], intermediate_size=t["ffn"],
        max_position_embeddings=t["positions"],
    )  # fmt: skip
    if arch == "roberta":
        return RobertaConfig(**common, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                             type_vocab_size=1)  # fmt: skip
    return BertConfig(**common, pad_token_id=0)


def save_tiny_model(arch: str, corpus: list[str], out: Path) -> Path:
    """A base checkpoint (no classification head, like the hub's) plus its tokenizer."""
    from transformers import AutoModel, PreTrainedTokenizerFast

    tok, names = (_roberta_tokenizer if arch == "roberta" else _bert_tokenizer)(corpus)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, **{f"{k}_token": v for k, v in names.items()}
    )
    torch.manual_seed(0)
    AutoModel.from_config(_tiny_config(arch, tok.get_vocab_size())).save_pretrained(out)
    fast.save_pretrained(out)
    return out


def banking77_texts(data_dir: Path, limit: int = 3000) -> list[str]:
    with open(data_dir / "banking77" / "train.csv", newline="") as fh:
        return [row["text"] for _, row in zip(range(limit), csv.DictReader(fh), strict=False)]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, data_dir) -> dict[str, Path]:
    """arch → model directory, tokenizers trained on Banking77 and QNLI text."""
    corpus = banking77_texts(data_dir)
    with open(data_dir / "qnli" / "dev.tsv", newline="") as fh:
        rows = list(zip(range(1000), csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE),
                        strict=False))  # fmt: skip
    corpus += [cell for _, row in rows[1:] for cell in row[1:3]]
    root = tmp_path_factory.mktemp("tiny-models")
    return {a: save_tiny_model(a, corpus, root / a) for a in ("bert", "distilbert", "roberta")}


def subsample_test(data, n: int, seed: int = 0):
    """The data with a seeded random `n` of its test examples (faster evaluation)."""
    keep = torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(seed))[:n]
    return dataclasses.replace(data, test_x=data.test_x[keep], test_y=data.test_y[keep])


@pytest.fixture(scope="session")
def token_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("token-cache")


def tiny_text_config(model_dir: Path, **overrides) -> RunConfig:
    """The text protocol at test scale: 30 labels + rounds of 10, 2 epochs, 24 tokens, a
    200-example pool and a 3% validation split."""
    arch = overrides.pop("arch", model_dir.name)
    base = dict(
        arch=arch, model_path=str(model_dir), init_size=30, acq_size=10, rounds=1,
        pool_size=200, val_fraction=0.03, max_epochs=2, patience=2, max_length=24, lr=1e-3,
        batch_size=16, mc_samples=3,
    )  # fmt: skip
    return RunConfig.for_dataset(overrides.pop("dataset", "banking77"), **(base | overrides))

"""Text datasets as token-id tensors, tokenized once per dataset × tokenizer and cached.

Each example becomes one int32 row of shape 2×L (token ids, token-type ids), padded on
the right to the longest example (at most `max_length`), so batches are index slices of
one tensor on the device exactly as for images. Raw texts come from Hugging Face
`datasets` with `--download`, else from the published file layouts in the data directory,
or from a researcher's own CSV/TSV file (`dataset="csv"`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archdal import registry
from archdal.config import RunConfig, Runtime, default_data_dir
from archdal.errors import ConfigError, DataError
from archdal.seeding import derive_seed, generator
from archdal.textmodels import model_source

CACHE_FORMAT = "archdal-tokens/1"


@dataclass(frozen=True)
class TextData:
    """A labelled text dataset, tokenized; the test split is official or held out."""

    name: str
    train_x: torch.Tensor  # int32, N×2×L: token ids, token-type ids; right-padded
    train_y: torch.Tensor  # int64, N
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    pad_id: int
    tokenizer: str  # where the tokenizer came from (hub id or directory)
    held_out_test: bool  # True: the dataset had one split and the test set was drawn from it

    def to(self, device: torch.device | str) -> TextData:
        return TextData(
            self.name, self.train_x.to(device), self.train_y.to(device), self.test_x.to(device),
            self.test_y.to(device), self.num_classes, self.pad_id, self.tokenizer,
            self.held_out_test,
        )  # fmt: skip


@dataclass(frozen=True)
class Corpus:
    """Raw labelled examples of one split; `pairs` holds the second text of sentence pairs."""

    texts: list[str]
    pairs: list[str] | None
    labels: np.ndarray  # int64


@dataclass(frozen=True)
class RawText:
    train: Corpus | None  # None: the dataset has a single split, `test` (held out from later)
    test: Corpus
    class_names: tuple[str, ...]


# --- published local layouts -------------------------------------------------------------


def _read_table(path: Path, header: bool) -> Any:
    """Every cell as a string; TSVs (GLUE) are read without quote handling, as published."""
    import pandas as pd

    tsv = path.suffix.lower() == ".tsv"
    try:
        return pd.read_csv(
            path,
            sep="\t" if tsv else ",",
            header=0 if header else None,
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
        )
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{path} is empty; it needs a header and one row per example") from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not a readable {'TSV' if tsv else 'CSV'} file ({err})") from err


def _numbered_labels(path: Path, values: Any, count: int) -> np.ndarray:
    """Published 1-based class numbers (AG News 1-4, DBPedia 1-14) as 0-based ids."""
    try:
        labels = np.asarray(values.astype(int), dtype=np.int64) - 1
    except ValueError as err:
        raise DataError(f"{path}: the first column must hold class numbers 1..{count}") from err
    if len(labels) and not (labels.min() >= 0 and labels.max() < count):
        raise DataError(f"{path}: class numbers must be 1..{count}, found {labels.min() + 1}")
    return labels


def _named_labels(path: Path, values: Any, names: tuple[str, ...]) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(values) - set(index))
    if unknown:
        raise DataError(f"{path}: unknown labels {unknown[:5]}; known: {', '.join(names[:5])}, ...")
    return np.asarray([index[v] for v in values], dtype=np.int64)


def _title_and_body(path: Path, count: int) -> Corpus:
    """AG News / DBPedia-14 csv: no header, columns class (1-based), title, body."""
    table = _read_table(path, header=False)
    if table.shape[1] != 3:
        raise DataError(f"{path}: expected 3 columns (class, title, text), found {table.shape[1]}")
    texts = (table[1] + " " + table[2]).tolist()
    return Corpus(texts, None, _numbered_labels(path, table[0], count))


AG_NEWS_CLASSES = ("World", "Sports", "Business", "Sci/Tech")
DBPEDIA_CLASSES = (
    "Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder",
    "MeanOfTransportation", "Building", "NaturalPlace", "Village", "Animal", "Plant", "Album",
    "Film", "WrittenWork",
)  # fmt: skip
QNLI_CLASSES = ("entailment", "not_entailment")

# dataset → (folder, train file, test file); the published names and layouts.
LOCAL_FILES = {
    "ag_news": ("ag_news", "train.csv", "test.csv"),
    "banking77": ("banking77", "train.csv", "test.csv"),
    "dbpedia": ("dbpedia", "train.csv", "test.csv"),
    "qnli": ("qnli", "train.tsv", "dev.tsv"),
}


def _banking77_classes(folder: Path, train: Path | None, test: Path | None) -> tuple[str, ...]:
    listed = folder / "categories.json"
    if listed.is_file():
        return tuple(json.loads(listed.read_text()))
    seen = set()
    for path in (train, test):
        if path is not None:
            seen |= set(_read_table(path, header=True)["category"])
    return tuple(sorted(seen))


def _read_local_split(name: str, path: Path, classes: tuple[str, ...]) -> Corpus:
    if name in ("ag_news", "dbpedia"):
        return _title_and_body(path, len(classes))
    table = _read_table(path, header=True)
    columns = ("text", "category") if name == "banking77" else ("question", "sentence", "label")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; the published header is {columns}")
    if name == "banking77":
        return Corpus(table["text"].tolist(), None, _named_labels(path, table["category"], classes))
    labels = _named_labels(path, table["label"], classes)
    return Corpus(table["question"].tolist(), table["sentence"].tolist(), labels)


def read_local(name: str, root: Path) -> RawText:
    """One of the four datasets in its published layout under `root/<name>/`."""
    folder_name, train_name, test_name = LOCAL_FILES[name]
    folder = root / folder_name
    train, test = folder / train_name, folder / test_name
    present = [p for p in (train, test) if p.is_file()]
    if not present:
        raise DataError(
            f"{name} files missing: neither {train} nor {test} exists; run with --download "
            "where the hub is reachable, or place the published files there (point --data-dir "
            "or $ARCHDAL_DATA at the folder that holds them)"
        )
    if name == "banking77":
        classes = _banking77_classes(folder, *(p if p.is_file() else None for p in (train, test)))
    else:
        classes = {"ag_news": AG_NEWS_CLASSES, "dbpedia": DBPEDIA_CLASSES}.get(name, QNLI_CLASSES)
    splits = [_read_local_split(name, p, classes) for p in present]
    if len(splits) == 2:
        return RawText(splits[0], splits[1], classes)
    return RawText(None, splits[0], classes)


# --- Hugging Face hub ---------------------------------------------------------------------

# dataset → (hub id, subset, train split, test split); QNLI's labelled test is GLUE validation.
HUB = {
    "ag_news": ("fancyzhx/ag_news", None, "train", "test"),
    "banking77": ("PolyAI/banking77", None, "train", "test"),
    "dbpedia": ("fancyzhx/dbpedia_14", None, "train", "test"),
    "qnli": ("nyu-mll/glue", "qnli", "train", "validation"),
}


def _hub_corpus(name: str, split: Any) -> Corpus:
    labels = np.asarray(split["label"], dtype=np.int64)
    if name == "qnli":
        return Corpus(list(split["question"]), list(split["sentence"]), labels)
    if name == "dbpedia":
        texts = [f"{t} {c}" for t, c in zip(split["title"], split["content"], strict=True)]
        return Corpus(texts, None, labels)
    return Corpus(list(split["text"]), None, labels)


def read_hub(name: str) -> RawText:
    """The dataset from the Hugging Face hub (cached by `datasets` in its own cache)."""
    import datasets

    hub_id, subset, train_split, test_split = HUB[name]
    try:
        loaded = datasets.load_dataset(hub_id, subset)
    except Exception as err:
        raise DataError(
            f"could not fetch {name} ({hub_id}) from the Hugging Face hub ({err}); "
            "run without --download to read the published files from --data-dir"
        ) from err
    classes = tuple(loaded[train_split].features["label"].names)
    return RawText(_hub_corpus(name, loaded[train_split]), _hub_corpus(name, loaded[test_split]),
                   classes)  # fmt: skip


# --- a researcher's own corpus ------------------------------------------------------------


def read_csv_corpus(config: RunConfig) -> RawText:
    """`csv_options.path`: header row, a text column, optional pair column, a label column.

    Labels may be any strings; integer labels keep their numeric order. The file is one
    split: the test set is held out from it.
    """
    o = config.csv_options
    path = Path(o.path).expanduser()
    if not path.is_file():
        raise DataError(f"csv file not found: {path}")
    table = _read_table(path, header=True)
    wanted = [c for c in (o.text_column, o.pair_column, o.label_column) if c]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise ConfigError(
            f"column {missing[0]!r} not in {path}; its columns are: {', '.join(table.columns)}"
        )
    if len(table) == 0:
        raise DataError(f"{path} has a header but no rows")
    values = table[o.label_column]
    names = sorted(set(values))
    if all(v.strip().lstrip("-").isdigit() for v in names):
        names.sort(key=int)
    if len(names) < 2:
        raise DataError(
            f"{path} has one class ({names[0]!r} in column {o.label_column!r}); "
            "a classifier needs at least two"
        )
    pairs = table[o.pair_column].tolist() if o.pair_column else None
    labels = _named_labels(path, values, tuple(names))
    return RawText(None, Corpus(table[o.text_column].tolist(), pairs, labels), tuple(names))


# --- tokenization, cache, held-out split --------------------------------------------------


def default_cache_dir() -> Path:
    """`$ARCHDAL_CACHE`, else `~/.cache/archdal` (never the data directory: it may be shared)."""
    if os.environ.get("ARCHDAL_CACHE"):
        return Path(os.environ["ARCHDAL_CACHE"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "archdal"


def load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise DataError(
            f"no tokenizer at {source!r} ({err}); give --model-path a local model directory, "
            "or allow the Hugging Face hub"
        ) from err


def hash_corpora(h: Any, raw: RawText) -> None:
    """Feed every text, second text and label of both splits to the hash `h`."""
    for corpus in (raw.train, raw.test):
        if corpus is None:
            h.update(b"\1")
            continue
        for column in (corpus.texts, corpus.pairs or []):
            h.update("\0".join(column).encode())
            h.update(b"\2")
        h.update(corpus.labels.tobytes())


def _digest(tokenizer: Any, max_length: int, raw: RawText) -> str:
    h = hashlib.sha256()
    h.update(f"{CACHE_FORMAT}\0{max_length}\0".encode())
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    hash_corpora(h, raw)
    return h.hexdigest()


def _tokenize(tokenizer: Any, corpus: Corpus, max_length: int) -> torch.Tensor:
    encoded = tokenizer(
        corpus.texts,
        corpus.pairs,
        truncation=True,
        max_length=max_length,
        padding="max_length",
        return_token_type_ids=True,
        return_attention_mask=False,
        return_tensors="np",
    )
    ids = np.stack([encoded["input_ids"], encoded["token_type_ids"]], axis=1)
    return torch.from_numpy(ids.astype(np.int32))


def _trim(x: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop the padding columns no example of the dataset uses."""
    used = int((x[:, 0] != pad_id).sum(dim=1).max()) if len(x) else 1
    return x[:, :, :used].contiguous()


def tokenize_cached(
    name: str, raw: RawText, tokenizer: Any, max_length: int, cache_dir: Path
) -> dict[str, torch.Tensor]:
    """Token tensors of both splits, read from the cache when this tokenizer has seen them."""
    path = cache_dir / "tokens" / f"{name}-{_digest(tokenizer, max_length, raw)[:24]}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:
            path.unlink(missing_ok=True)  # a torn write: tokenize again
    pad = tokenizer.pad_token_id
    tensors = {}
    for split, corpus in (("train", raw.train), ("test", raw.test)):
        if corpus is not None:
            tensors[f"{split}_x"] = _trim(_tokenize(tokenizer, corpus, max_length), pad)
            tensors[f"{split}_y"] = torch.from_numpy(corpus.labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(tensors, tmp)
    os.replace(tmp, path)
    return tensors


def held_out_split(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """A seeded, class-stratified test mask: `fraction` of each class (at least one of any
    class with two or more examples), so the remaining training set keeps every class."""
    order = torch.randperm(len(labels), generator=generator(derive_seed(seed, "test-split")))
    mask = torch.zeros(len(labels), dtype=torch.bool)
    ordered = labels[order]
    for c in labels.unique().tolist():
        members = order[ordered == c]
        take = min(len(members) - 1, max(1, round(fraction * len(members))))
        mask[members[:take]] = True
    return mask


def read_raw(config: RunConfig, runtime: Runtime) -> RawText:
    """The config's text dataset as raw texts: the researcher's CSV, the hub with
    `--download`, else the published files in the data directory."""
    if config.dataset == "csv":
        return read_csv_corpus(config)
    if runtime.download:
        return read_hub(config.dataset)
    return read_local(config.dataset, Path(runtime.data_dir or default_data_dir()))


def cache_dir_of(runtime: Runtime) -> Path:
    return Path(runtime.cache_dir) if runtime.cache_dir else default_cache_dir()


def load_text_data(config: RunConfig, runtime: Runtime) -> TextData:
    """The config's text dataset tokenized by its model's tokenizer (CPU tensors)."""
    raw = read_raw(config, runtime)
    source = model_source(config)
    tokenizer = load_tokenizer(source)
    cache = cache_dir_of(runtime)
    t = tokenize_cached(config.dataset, raw, tokenizer, config.max_length, cache)
    if raw.train is None:
        test = held_out_split(t["test_y"], config.test_fraction, config.seed)
        train_x, train_y = t["test_x"][~test], t["test_y"][~test]
        test_x, test_y = t["test_x"][test], t["test_y"][test]
    else:
        train_x, train_y, test_x, test_y = t["train_x"], t["train_y"], t["test_x"], t["test_y"]
    return TextData(
        config.dataset, train_x, train_y, test_x, test_y, len(raw.class_names),
        tokenizer.pad_token_id, source, held_out_test=raw.train is None,
    )  # fmt: skip


TEXT_DATASETS = ("ag_news", "banking77", "dbpedia", "qnli", "csv")
for _name in TEXT_DATASETS:
    registry.DATASETS.register(registry.Dataset(_name, "text", load_text_data))

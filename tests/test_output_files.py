"""Output files other programs open: CSV cells a spreadsheet would run, labels that hold
the CSV's own separators, file names that are not UTF-8 (docs/RELIABILITY.md, "Output files")."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from ravit_keras.cli import main
from ravit_keras.io_utils import printable_path, spreadsheet_safe
from ravit_keras.prediction import Prediction, PredictionWriter

NASTY = ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-2+3", "@SUM(A1)", "\tcat", "\rdog",
         "a;b:c,d", "plain"]


def test_spreadsheet_safe():
    for text in NASTY[:6]:
        assert spreadsheet_safe(text) == "'" + text
    for text in ("a;b:c,d", "plain", "", "1.5", "x=1"):
        assert spreadsheet_safe(text) == text


def test_printable_path():
    assert printable_path("photos/cat.png") == "photos/cat.png"
    assert printable_path("ünï/çà.png") == "ünï/çà.png"
    assert printable_path(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png"
    assert printable_path(b"caf\xe9.png") == "caf\\xe9.png"


def _prediction(source, label, names):
    return Prediction(source=source, label=label, label_index=0, probability=0.5,
                      top_k=[(n, 0.5 / (i + 1)) for i, n in enumerate(names)], exit_name="exit_1",
                      exit_index=0, entropies=[0.25], macs=1000, latency_ms=None, true_label=label)


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_prediction_files_carry_any_label_and_file_name(tmp_path, suffix):
    source = os.fsdecode(b"=caf\xe9.png")  # A file name that is a formula and not UTF-8.
    answers = [_prediction(source, label, [label, "a;b:c,d", "x"]) for label in NASTY]
    out = tmp_path / f"answers{suffix}"
    with PredictionWriter(out) as writer:
        for p in answers:
            writer.write(p)
    text = out.read_bytes().decode("utf-8")  # Valid UTF-8 throughout.
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # No temporary file left.
    if suffix == ".json":
        rows = json.loads(text)
        assert [r["label"] for r in rows] == NASTY  # JSON is not a spreadsheet: text as it is.
        assert {r["source"] for r in rows} == {"=caf\\xe9.png"}
        return
    rows = list(csv.DictReader(text.splitlines(keepends=True)))
    assert len(rows) == len(NASTY)
    for row, label in zip(rows, NASTY):
        assert row["source"] == "'=caf\\xe9.png"
        assert row["label"] == spreadsheet_safe(label) == row["true_label"]
        top = json.loads(row["top_k"])  # [[label, probability], ...]: separators inside a label are kept.
        assert [n for n, _ in top] == [label, "a;b:c,d", "x"] and top[0][1] == 0.5
        assert not row["top_k"].startswith(("=", "+", "-", "@"))
        assert row["entropies"] == "0.250000" and row["probability"] == "0.500000"


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
    """An untrained tiny RAViT as a run folder whose class names are all hostile to a CSV."""
    from ravit_keras.config import get_config
    from ravit_keras.model import build_ravit

    folder = tmp_path_factory.mktemp("run") / "run"
    folder.mkdir()
    config = get_config("tiny", layers="1-2")
    build_ravit(config).save(folder / "model.keras")
    names = (NASTY + ["x:y", "z;w"])[:config.num_classes]
    (folder / "config.json").write_text(json.dumps({"class_names": names}))
    return folder, names


def test_predict_writes_hostile_names_safely(untrained_run, tmp_path, capsys, monkeypatch):
    run, names = untrained_run
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    files = [b"=cmd.png", b"caf\xe9.png", b"plain.png"]
    for name in files:
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            os.fsdecode(os.path.join(os.fsencode(photos), name)), format="PNG")
    monkeypatch.chdir(photos)  # Relative names: the source cell starts with the file name.
    out = tmp_path / "answers.csv"
    argv = [os.fsdecode(f) for f in files] + ["--model", str(run)]
    code = main(["predict", *argv, "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in printed + err, printed + err
    rows = list(csv.DictReader(out.read_bytes().decode("utf-8").splitlines(keepends=True)))
    assert sorted(r["source"] for r in rows) == sorted(["'=cmd.png", "caf\\xe9.png", "plain.png"])
    for r in rows:
        assert r["label"] in [spreadsheet_safe(n) for n in names]
        assert len(json.loads(r["top_k"])) == 3
    # Printed to the terminal (no --out): the same escapes, no UnicodeEncodeError.
    code = main(["predict", *argv])
    printed, err = capsys.readouterr()
    assert code == 0 and "caf\\xe9.png" in printed and "Traceback" not in printed + err

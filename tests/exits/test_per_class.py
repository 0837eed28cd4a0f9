"""Per-class accuracy, exit shares and confusion matrix against hand-computed values."""

import numpy as np
import pytest

from ravit_keras import exits


def test_per_class_hand_values():
    # 3 classes, 2 exits.       a  a  b  c  c  c
    labels = [0, 0, 1, 2, 2, 2]
    predictions = [0, 1, 1, 2, 2, 0]
    exit_index = [0, 1, 1, 0, 1, 1]
    r = exits.per_class_report(labels, predictions, exit_index, ["a", "b", "c"], ["exit_1", "exit_2"])
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    a, b, c = r["classes"]
    assert (a["images"], a["correct"], a["accuracy"], a["exit_shares"]) == (2, 1, 0.5, [0.5, 0.5])
    assert (b["images"], b["correct"], b["accuracy"], b["exit_shares"]) == (1, 1, 1.0, [0.0, 1.0])
    assert (c["images"], c["correct"]) == (3, 2)
    assert c["accuracy"] == pytest.approx(2 / 3) and c["exit_shares"] == pytest.approx([1 / 3, 2 / 3])
    text = exits.format_per_class(r)
    assert "a " in text and "50.00%" in text and "66.67%" in text


def test_class_without_images_and_worst_first_table():
    r = exits.per_class_report([0, 0, 2], [0, 1, 2], [0, 0, 0], ["a", "b", "c"], ["exit_1"])
    assert r["classes"][1] == {"name": "b", "images": 0, "correct": 0, "accuracy": None, "exit_shares": None}
    assert "no images of: b" in exits.format_per_class(r)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 30, 600)
    p = np.where(rng.random(600) < 0.7, y, rng.integers(0, 30, 600))
    many = exits.per_class_report(y, p, np.zeros(600, int), [f"c{i}" for i in range(30)], ["exit_1"])
    table = exits.format_per_class(many, max_rows=5)
    assert "the 5 least accurate of 30" in table
    shown = [line.split()[0] for line in table.splitlines()[2:]]
    worst = sorted(many["classes"], key=lambda r: r["accuracy"])[:5]
    assert shown == [r["name"] for r in worst]


def test_counts_match_streamed_counts():
    rng = np.random.default_rng(1)
    y, p, e = rng.integers(0, 4, 50), rng.integers(0, 4, 50), rng.integers(0, 3, 50)
    confusion, class_exits = exits.count_matrices(y, p, e, 4, 3)
    assert confusion.sum() == 50 and np.trace(confusion) == int(np.sum(y == p))
    np.testing.assert_array_equal(class_exits.sum(1), np.bincount(y, minlength=4))
    assert exits.per_class_from_counts(confusion, class_exits, list("abcd"), ["x", "y", "z"]) == \
        exits.per_class_report(y, p, e, list("abcd"), ["x", "y", "z"])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="label 3 is outside"):
        exits.count_matrices([3], [0], [0], 3, 1)
    with pytest.raises(ValueError, match="exit 2 is outside"):
        exits.count_matrices([0], [0], [2], 3, 2)
    with pytest.raises(ValueError, match="differ in length"):
        exits.count_matrices([0, 1], [0], [0], 3, 1)


def test_plots_written(tmp_path):
    r = exits.per_class_report([0, 1, 2, 2], [0, 2, 2, 1], [0, 1, 1, 0], ["a", "b", "c"], ["exit_1", "exit_2"])
    for path in (exits.plot_per_class(r, tmp_path / "pc.png"), exits.plot_confusion_matrix(r, tmp_path / "cm.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""Early exit: entropy, routing (batched == one at a time), evaluation, sweeps, calibration."""

import csv
import json
import math

import pytest

from ravit_keras import exits
from tests.exits.helpers import hand_example, make_logits

# Sweep and files ------------------------------------------------------------

def test_sweep_cost_non_increasing():
    exit_logits, labels = make_logits(1, 3, n=400)
    rows = exits.sweep(exit_logits, labels, [10, 30, 100])
    taus = [r["tau"] for r in rows]
    assert taus == sorted(taus) and taus[0] == 0.0 and taus[-1] == pytest.approx(math.log(10))
    costs = [r["avg_macs"] for r in rows]
    assert all(b <= a for a, b in zip(costs, costs[1:]))
    assert costs[0] == 100.0 and costs[-1] == 10.0
    assert rows[0]["accuracy"] == rows[0]["per_exit_accuracy"][2]
    assert rows[-1]["accuracy"] == rows[-1]["per_exit_accuracy"][0]


def test_sweep_custom_grid():
    exit_logits, labels = make_logits(2, 3, n=100)
    rows = exits.sweep(exit_logits, labels, [10, 30, 100], thresholds=[0.2, [0.1, 0.5]])
    assert rows[0]["tau"] == 0.2 and rows[0]["thresholds"] == [0.2, 0.2]
    assert rows[1]["tau"] is None and rows[1]["thresholds"] == [0.1, 0.5]
    assert rows[1] == {"tau": None, **exits.evaluate_exits(exit_logits, labels, [0.1, 0.5], [10, 30, 100])}


def test_save_sweep_csv_and_json(tmp_path):
    exit_logits, labels = hand_example()
    rows = exits.sweep(exit_logits, labels, [10, 30, 100], thresholds=[0.0, 0.1])
    exits.save_sweep(rows, tmp_path / "sweep.json")
    assert json.loads((tmp_path / "sweep.json").read_text()) == rows
    exits.save_sweep(rows, tmp_path / "sub" / "sweep.csv")
    with open(tmp_path / "sub" / "sweep.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2
    assert float(table[1]["accuracy"]) == 0.5
    assert [int(table[1][f"exit_counts.{i}"]) for i in range(3)] == [2, 1, 1]
    assert float(table[1]["avg_macs"]) == 37.5
    assert table[0]["accuracy_at_exit.0"] == ""  # None.
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["sweep.csv"]
    with pytest.raises(ValueError, match="sweep.txt"):
        exits.save_sweep(rows, tmp_path / "sweep.txt")


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots(tmp_path):
    exit_logits, labels = make_logits(4, 2, n=200)
    rows = exits.sweep(exit_logits, labels, [10, 100])
    out = exits.plot_accuracy_vs_flops(
        rows, tmp_path / "acc.png", baselines={"ViT-3": (0.15, 0.6), "ViT-4": (0.2, 0.62)}, title="t"
    )
    assert _is_png(out)
    assert _is_png(exits.plot_exit_histogram(rows[5]["exit_counts"], ["exit_1", "exit_2"], tmp_path / "h.png"))
    with pytest.raises(ValueError, match="93"):
        exits.plot_accuracy_vs_flops(rows, tmp_path / "bad.png", baselines={"ViT": (1.0, 93.0)})
    # Several models' curves in one plot; an empty one is named.
    assert _is_png(exits.plot_accuracy_vs_flops({"RAViT 1-3": rows, "RAViT 1-3 LIT": rows[::2]},
                                                tmp_path / "two.png"))
    with pytest.raises(ValueError, match=r"\['LIT'\]"):
        exits.plot_accuracy_vs_flops({"RAViT": rows, "LIT": []}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="differ in length"):
        exits.plot_exit_histogram([1, 2], ["exit_1"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()




def test_accuracy_plot_marks_the_operating_point_and_the_budget(tmp_path):
    from ravit_keras.exits.plots import accuracy_vs_flops_figure

    exit_logits, labels = make_logits(4, 2, n=200)
    rows = exits.sweep(exit_logits, labels, [10, 100])
    point = ("calibrated thresholds (τ = 0.2)", 0.11, 0.55)
    fig = accuracy_vs_flops_figure(rows, operating_point=point, mac_budget_mflops=0.12)
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "MAC budget: 0.12 MFLOPs" in legend
    assert "calibrated thresholds (τ = 0.2): 55.00%, 0.11 MFLOPs" in legend
    star = [ln for ln in ax.get_lines() if ln.get_label().startswith("calibrated")][0]
    assert list(star.get_xdata()) == [0.11] and list(star.get_ydata()) == pytest.approx([55.0])
    budget = [ln for ln in ax.get_lines() if ln.get_label().startswith("MAC budget")][0]
    assert list(budget.get_xdata()) == [0.12, 0.12]  # A vertical line at the budget.
    # Without them, neither is drawn; the file is written either way.
    plain = [t.get_text() for t in accuracy_vs_flops_figure(rows).axes[0].get_legend().get_texts()]
    assert plain == ["RAViT early exit"]
    assert _is_png(exits.plot_accuracy_vs_flops(rows, tmp_path / "a.png", operating_point=point,
                                                mac_budget_mflops=0.12))
    with pytest.raises(ValueError, match="operating point"):
        accuracy_vs_flops_figure(rows, operating_point=("x", 0.1, 55.0))

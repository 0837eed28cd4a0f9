"""Early exit: entropy, routing (batched == one at a time), evaluation, sweeps, calibration."""

import json
import math

import numpy as np
import pytest

from ravit_keras import exits
from tests.exits.helpers import hand_example, make_logits

# Routing ------------------------------------------------------------------

def _assert_same_routing(batched, reference):
    np.testing.assert_array_equal(batched.exit_index, reference.exit_index)
    np.testing.assert_array_equal(batched.predictions, reference.predictions)
    np.testing.assert_allclose(batched.probabilities, reference.probabilities, rtol=1e-12, atol=0)
    reached = np.arange(batched.num_exits)[None, :] <= reference.exit_index[:, None]
    np.testing.assert_array_equal(batched.entropies[reached], reference.entropies[reached])
    assert np.isnan(reference.entropies[~reached]).all()
    assert np.isfinite(batched.entropies).all()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("num_exits", [2, 3])
def test_route_matches_one_at_a_time(seed, num_exits):
    exit_logits, _ = make_logits(seed, num_exits, n=120)
    rng = np.random.default_rng(100 + seed)
    ent = np.stack([exits.entropy(a) for a in exit_logits], axis=1)
    settings = [0.0, math.log(10), 0.3, 1.0, float(rng.uniform(0, math.log(10)))]
    settings.append(list(rng.uniform(0, math.log(10), num_exits - 1)))
    settings.append(list(rng.uniform(0, math.log(10), num_exits)))  # Last entry ignored.
    # Thresholds exactly at an image's entropy: u ≤ τ must stop it in both versions.
    settings.append([float(ent[int(rng.integers(120)), e]) for e in range(num_exits - 1)])
    for thresholds in settings:
        batched = exits.route(exit_logits, thresholds)
        _assert_same_routing(batched, exits.route_one_at_a_time(exit_logits, thresholds))
    on_boundary = exits.route(exit_logits, settings[-1])
    assert on_boundary.exit_counts.sum() == 120


def test_route_extremes():
    exit_logits, _ = make_logits(7, 3, n=200)
    none_early = exits.route(exit_logits, 0.0)
    assert (none_early.exit_index == 2).all()
    np.testing.assert_array_equal(none_early.predictions, np.argmax(exit_logits[2], axis=1))
    # Near-uniform rows included: clipping keeps their entropy within ln C.
    exit_logits[0][:5] = 0.0
    all_first = exits.route(exit_logits, math.log(10))
    assert (all_first.exit_index == 0).all()
    np.testing.assert_array_equal(all_first.exit_counts, [200, 0, 0])
    np.testing.assert_allclose(all_first.probabilities, exits.softmax(exit_logits[0]))


def test_route_per_exit_thresholds():
    exit_logits, _ = make_logits(3, 3, n=200)
    # Never stop at exit 1, always stop at exit 2.
    r = exits.route(exit_logits, [0.0, math.log(10)])
    assert (r.exit_index == 1).all()


def test_route_input_errors():
    exit_logits, _ = make_logits(0, 2, n=10)
    with pytest.raises(TypeError, match="mapping"):
        exits.route({"exit_1": exit_logits[0], "exit_2": exit_logits[1]}, 0.1)
    with pytest.raises(ValueError, match="same images"):
        exits.route([exit_logits[0], exit_logits[1][:5]], 0.1)
    bad = exit_logits[1].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="image 3"):
        exits.route([exit_logits[0], bad], 0.1)
    with pytest.raises(ValueError, match="single"):
        exits.route(exit_logits[0], 0.1)


# Evaluation ---------------------------------------------------------------

def test_evaluate_exits_hand_example():
    exit_logits, labels = hand_example()
    r = exits.evaluate_exits(exit_logits, labels, 0.1, [10, 30, 100])
    # img0 stops at exit 0 (right), img1 at exit 1 (right), img2 at exit 0 (predicts 1: wrong),
    # img3 runs to exit 2 (predicts 2: wrong).
    assert r["exit_counts"] == [2, 1, 1]
    assert r["exit_fractions"] == [0.5, 0.25, 0.25]
    assert r["accuracy"] == 0.5
    assert r["avg_macs"] == (2 * 10 + 1 * 30 + 1 * 100) / 4 == 37.5
    assert r["avg_mflops"] == pytest.approx(2 * 37.5 / 1e6)
    # Each exit alone (argmax of zeros is class 0): exit0 1/4, exit1 3/4, exit2 2/4.
    assert r["per_exit_accuracy"] == [0.25, 0.75, 0.5]
    assert r["accuracy_at_exit"] == [0.5, 1.0, 0.0]
    assert r["thresholds"] == [0.1, 0.1]
    json.dumps(r)

    r0 = exits.evaluate_exits(exit_logits, labels, 0.0, [10, 30, 100])
    assert r0["exit_counts"] == [0, 0, 4]
    assert r0["accuracy_at_exit"] == [None, None, 0.5]
    assert r0["avg_macs"] == 100.0
    assert exits.apply_thresholds is exits.evaluate_exits


def test_evaluate_exits_validation():
    exit_logits, labels = hand_example()
    with pytest.raises(ValueError, match="3 exits"):
        exits.evaluate_exits(exit_logits, labels, 0.1, [10, 100])
    with pytest.raises(ValueError, match="label 3"):
        exits.evaluate_exits(exit_logits, [0, 1, 2, 3], 0.1, [10, 30, 100])
    with pytest.raises(ValueError, match=r"\(4,\)"):
        exits.evaluate_exits(exit_logits, [0, 1], 0.1, [10, 30, 100])



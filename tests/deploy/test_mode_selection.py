"""``--mode auto`` (``ravit_keras.deploy.export.mode_selection``).

The tiny "1-2" model is trained and converted ONCE per session (fixtures in
conftest.py: ``tflite_trained_ravit``, ``tflite_int8_folder``,
``tflite_float32_folder``). Tests that corrupt a folder copy it first.
"""

import json

import numpy as np
import pytest

from ravit_keras.deploy.export.convert import ConversionOptions
from ravit_keras.deploy.runtime.scheduler import RAViTScheduler


def test_cli_convert_rejects_bad_mode(tmp_path, capsys):
    from ravit_keras.cli import main

    with pytest.raises(SystemExit) as e:
        main(["convert", "--model", str(tmp_path / "m.keras"), "--data", "generated",
              "--mode", "int4", "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert "invalid choice: 'int4'" in capsys.readouterr().err


@pytest.mark.slow
def test_convert_fastest_keeps_one_accurate_mode_and_records_why(tflite_trained_ravit, tmp_path):
    from ravit_keras.deploy.export.mode_selection import convert_fastest

    t = tflite_trained_ravit
    out = tmp_path / "auto"
    candidates = ("int8", "int8-full", "float32")  # All five by default: a slower test, same code.
    manifest = convert_fastest(t.model, out, t.calib_images, t.calib_labels,
                               class_names=t.class_names, candidates=candidates,
                               options=ConversionOptions(num_calibration=100), progress=None).to_dict()
    selection = manifest["mode_selection"]
    measured = selection["measured_on_this_host"]
    assert set(measured) == set(candidates)
    for m in measured.values():  # Latency, partitions and undelegated ops per submodel.
        assert len(m["submodel_latency_ms"]) == len(m["xnnpack_partitions"]) == len(m["ops_not_delegated"]) == 2
    assert measured["int8"]["xnnpack_partitions"] == [1, 1]
    assert "host" in selection
    chosen = selection["chosen"]
    assert manifest["quantization"] == chosen
    # The numbers behind the choice (choose_mode): agreement with float32 and the loss bound.
    comparison = selection["accuracy_comparison"]
    assert comparison["reference"] == "float32"
    verdicts = comparison["modes"]
    assert set(verdicts) == set(candidates), verdicts
    for mode, v in verdicts.items():
        assert v["images"] == len(t.calib_labels)
        assert v["candidate_accuracy"] == pytest.approx(measured[mode]["accuracy"])
        assert v["as_accurate"] == (mode == "float32" or (v["agreement"] >= 0.98 and v["loss_upper_bound"] <= 0.01))
    # The chosen one is the fastest of the accurate ones.
    accurate = [k for k, v in verdicts.items() if v["as_accurate"]]
    assert chosen in accurate, verdicts
    assert measured[chosen]["latency_ms"] == min(measured[k]["latency_ms"] for k in accurate)
    # Only the chosen submodels are left, and they load.
    assert sorted(p.name for p in out.iterdir()) == ["branch_1.tflite", "branch_2.tflite",
                                                      "labels.txt", "manifest.json"]
    assert not list(tmp_path.glob(".auto*"))
    assert json.loads((out / "manifest.json").read_text())["mode_selection"]["chosen"] == chosen
    RAViTScheduler(out).classify(t.test_images[0] if chosen in ("int8", "int8-full")
                                 else t.test_images[0].astype(np.float32))


def test_every_mode_is_a_candidate_by_default():
    import inspect

    from ravit_keras.deploy.export.mode_selection import convert_fastest
    from ravit_keras.deploy.runtime.modes import MODES

    assert inspect.signature(convert_fastest).parameters["candidates"].default == MODES


def test_convert_fastest_needs_labels(tflite_trained_ravit, tmp_path):
    from ravit_keras.deploy.export.mode_selection import convert_fastest

    t = tflite_trained_ravit
    with pytest.raises(ValueError, match="labelled"):
        convert_fastest(t.model, tmp_path / "x", t.calib_images, None, progress=None)
    assert not (tmp_path / "x").exists()

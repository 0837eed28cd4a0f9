"""Per-operator profiles through LiteRT's C API (ravit_keras.deploy.measurement.op_profile, `ravit profile`)."""

from __future__ import annotations

import json

import pytest

from ravit_keras.cli import main
from ravit_keras.deploy.measurement.op_profile import format_profile, profile_ops
from ravit_keras.deploy.measurement.profiling import undelegated_ops
from tests.deploy.helpers import submodel_files


def test_an_int8_submodel_is_profiled_inside_xnnpack(tflite_int8_folder):
    """One XNNPACK partition: the profile lists XNNPACK's own operators, in run order,
    as many as the delegate runs, and no built-in kernel."""
    for path in submodel_files(tflite_int8_folder):
        profile = profile_ops(path, runs=5, warmup=1)
        assert profile.ops and all(op.delegated for op in profile.ops)
        assert all(op.calls == 5 for op in profile.ops)
        names = {op.name for op in profile.ops}
        assert any(n.startswith("Fully Connected (NC, QS8") for n in names), names
        assert any(n.startswith("Softmax (NC, F32)") for n in names), names
        assert profile.total_us > 0
        groups = profile.by_type()
        assert sum(g["count"] for g in groups) == len(profile.ops)
        assert sum(g["share"] for g in groups) == pytest.approx(1.0)
        assert [g["us"] for g in groups] == sorted((g["us"] for g in groups), reverse=True)
        assert str(path) in format_profile(profile)


def test_ops_left_to_builtin_kernels_are_named(tflite_trained_ravit, tmp_path_factory):
    """An int8-full submodel leaves SOFTMAX and others to LiteRT's kernels: the profile
    shows them as built-in, the same ops undelegated_ops reports."""
    from tests.conftest import _convert_once

    folder = tmp_path_factory.mktemp("int8_full_profile") / "tflite"
    _convert_once(tflite_trained_ravit, folder, "int8-full")
    path = submodel_files(folder)[-1]
    profile = profile_ops(path, runs=3, warmup=1)
    builtin = {op.name for op in profile.ops if not op.delegated}
    assert builtin == set(undelegated_ops(path)["not_delegated"])
    assert "SOFTMAX" in builtin
    assert "(LiteRT built-in kernel)" in format_profile(profile, top=50)


def test_bad_files_are_named(tmp_path, tflite_int8_folder):
    with pytest.raises(FileNotFoundError, match="nothing.tflite"):
        profile_ops(tmp_path / "nothing.tflite")
    text = tmp_path / "notes.tflite"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="notes.tflite is not a TFLite model"):
        profile_ops(text)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(submodel_files(tflite_int8_folder)[0].read_bytes()[:4000])
    with pytest.raises(ValueError, match="truncated.tflite is not a valid TFLite model"):
        profile_ops(truncated)  # LiteRT's C API would crash on it; the verifier runs first.
    with pytest.raises(ValueError, match="runs"):
        profile_ops(submodel_files(tflite_int8_folder)[0], runs=0)


def test_cli_profiles_every_submodel_and_writes_json(tflite_int8_folder, tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert main(["profile", "--model", str(tflite_int8_folder), "--runs", "3", "--top", "4",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    files = submodel_files(tflite_int8_folder)
    for path in files:
        assert str(path) in text
    assert f"All {len(files)} submodels" in text
    record = json.loads(out.read_text())
    assert len(record["submodels"]) == len(files) and record["host"]
    assert all(s["ops"] and s["by_type"] for s in record["submodels"])


def test_cli_errors_are_one_line(tmp_path, capsys, tflite_int8_folder):
    assert main(["profile", "--model", str(tmp_path / "missing")]) == 2
    assert "no such folder or .tflite file" in capsys.readouterr().err
    broken = tmp_path / "copy"
    broken.mkdir()
    for f in tflite_int8_folder.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    submodel = submodel_files(broken)[0]
    submodel.write_bytes(submodel.read_bytes()[:-10])
    assert main(["profile", "--model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert submodel.name in err and "Traceback" not in err
    assert main(["profile", "--model", str(tflite_int8_folder), "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err

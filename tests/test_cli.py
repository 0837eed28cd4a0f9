"""The ``ravit`` command line: ``main(argv)`` in-process, and ``python -m ravit_keras``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ravit_keras import runs
from ravit_keras.cli import main

REPO = Path(__file__).resolve().parents[1]

# CIFAR-10 "1-3": tokens 17 and 65, d = 128, h = 512 (MAC_i = 2n²d + 4nd² + 2ndh).
MAC_1 = 2 * 17 * 17 * 128 + 4 * 17 * 128 * 128 + 2 * 17 * 128 * 512  # 3,416,320
MAC_2 = 2 * 65 * 65 * 128 + 4 * 65 * 128 * 128 + 2 * 65 * 128 * 512  # 13,861,120
CIFAR_1_3_MACS = 1 * MAC_1 + 3 * MAC_2


def _run_module(*args, timeout=120):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "ravit_keras", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_hand_values():
    assert MAC_1 == 3_416_320
    assert CIFAR_1_3_MACS == 44_999_680


def test_flops_json(capsys):
    assert main(["flops", "--config", "cifar10", "--layers", "1-3", "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1  # One JSON object on one line.
    report = json.loads(out)
    assert report["macs"] == 44_999_680
    assert report["flops"] == 2 * report["macs"]
    assert report["exit_macs"] == [3_416_320, 44_999_680]
    assert report["exit_names"] == ["exit_1", "exit_2"]
    assert report["layers"] == "1-3"


def test_flops_json_expected_macs_with_exit_counts(capsys):
    assert main(["flops", "--config", "cifar10", "--json", "--exit-counts", "600,400"]) == 0
    report = json.loads(capsys.readouterr().out)
    # C_EE = (600 * C_1 + 400 * C_2) / 1000
    assert report["expected_macs"] == pytest.approx((600 * 3_416_320 + 400 * 44_999_680) / 1000)


def test_flops_table_mentions_both_branches(capsys):
    assert main(["flops", "--config", "cifar10", "--layers", "1-3"]) == 0
    out = capsys.readouterr().out
    assert '"1-3"' in out
    assert "16x16" in out and "32x32" in out
    assert "exit_1" in out and "exit_2" in out
    assert "44,999,680" in out
    assert "3,416,320" in out


def test_flops_table_marks_skipped_branch(capsys):
    assert main(["flops", "--config", "tinyimagenet", "--layers", "2-0-3"]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out
    assert "exit_1" in out and "exit_3" in out and "exit_2" not in out


def test_flops_model_overrides(capsys):
    assert main(["flops", "--config", "cifar10", "--layers", "0-4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["macs"] == 4 * MAC_2
    assert report["exit_macs"] == [4 * MAC_2]


def test_python_m_flops_subprocess():
    result = _run_module("flops", "--config", "cifar10", "--layers", "1-3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["macs"] == 44_999_680
    assert report["exit_macs"] == [3_416_320, 44_999_680]


def test_unknown_config_exits_2(capsys):
    assert main(["flops", "--config", "cifar100"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "ravit flops: error: Unknown configuration 'cifar100'" in captured.err
    assert "cifar10" in captured.err  # Lists the known names.


@pytest.mark.parametrize(
    "spec, message",
    [
        ("1-x", "is not of the form 'a-b-c' with integers"),
        ("0-0", "has no layers at all"),
    ],
)
def test_bad_layer_spec_exits_2(capsys, spec, message):
    assert main(["flops", "--config", "cifar10", "--layers", spec]) == 2
    captured = capsys.readouterr()
    assert "ravit flops: error:" in captured.err
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_bad_override_exits_2(capsys):
    assert main(["flops", "--config", "cifar10", "--num-heads", "3"]) == 2
    assert "hidden_dim 128 is not divisible by num_heads 3" in capsys.readouterr().err


def test_python_m_error_exit_code_and_message():
    result = _run_module("flops", "--config", "nope", "--layers", "1-3")
    assert result.returncode == 2
    assert "Unknown configuration 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
    result = _run_module("flops", "--config", "cifar10", "--layers", "1-x")
    assert result.returncode == 2
    assert "'1-x' is not of the form 'a-b-c'" in result.stderr


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["flops", "--scale", "two"])
    assert e.value.code == 2
    assert "invalid float value" in capsys.readouterr().err


def test_train_refuses_folder_of_another_model(tmp_path, capsys):
    """An unfinished run (backup/ present) of another model is not resumed or overwritten."""
    from ravit_keras.config import get_config
    from ravit_keras.io_utils import atomic_write_json
    from ravit_keras.train import TrainingConfig

    out = tmp_path / "run"
    (out / "backup").mkdir(parents=True)
    atomic_write_json(out / runs.RECORD_FILE, {
        "model": get_config("cifar10").to_dict(),
        "training": vars(TrainingConfig(epochs=1, batch_size=16)),
    })
    rc = main(["train", "--config", "tiny", "--data", "generated", "--limit-train", "32",
               "--batch-size", "16", "--epochs", "1", "--out", str(out), "--progress", "none"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "ravit train: error:" in err and "holds a run of another model (cifar10 1-3)" in err
    assert not (out / "model.keras").exists()


# Quiet output, help texts, pipes ---------------------------------------------------------


def test_convert_prints_only_its_own_lines(tflite_trained_ravit, tmp_path, capfd):
    # capfd sees the file descriptors: what TensorFlow's and LiteRT's C++ write too.
    model_path = tmp_path / "model.keras"
    tflite_trained_ravit.model.save(model_path)
    capfd.readouterr()
    assert main(["convert", "--model", str(model_path), "--data", "generated", "--mode", "auto",
                 "--candidates", "int8,float32", "--calibration-images", "100", "--quantization-images", "20",
                 "--out", str(tmp_path / "tflite")]) == 0
    out, err = capfd.readouterr()
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    # A bare .keras file has no calibration holdout on record: a note says the thresholds are
    # calibrated on training images. Then the plan, 2 branches x 2 modes, 2 timings, the choice,
    # the result, the 6 operating points with their intervals (a heading, a header, a row each)
    # and, on 100 images, one line of warning.
    assert lines[0].startswith("note: the model records no calibration holdout")
    assert len(lines) == 19, "\n".join(lines)
    for noise in ("fully_quantize", "XNNPACK", "deprecated", "WARNING", "retracing", ".partial", "Traceback"):
        assert noise not in out + err
    assert lines[9].startswith("Wrote 2 ") and str(tmp_path / "tflite") in lines[9]
    assert lines[10].startswith("operating points on 100 calibration images")
    assert err.strip().startswith("ravit convert: warning: 100 calibration images are too few")


def test_verbose_shows_the_libraries_logs(tflite_float32_folder):
    # LiteRT prints its XNNPACK line once per process: each case gets a fresh one.
    args = ["run", "--model", str(tflite_float32_folder), "--data", "generated", "--limit", "5"]
    quiet, verbose = _run_module(*args), _run_module("--verbose", *args)
    assert quiet.returncode == verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert "XNNPACK" in verbose.stdout + verbose.stderr
    assert "XNNPACK" not in quiet.stdout + quiet.stderr


def _all_actions(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((name, a) for a in sub._actions)


def test_every_flag_has_help_and_help_matches_behaviour(capsys):
    from ravit_keras.cli import build_parser

    parser = build_parser()
    missing = [f"{cmd} {a.option_strings}" for cmd, a in _all_actions(parser)
               if a.option_strings and a.option_strings != ["-h", "--help"] and not a.help]
    assert missing == []
    with pytest.raises(SystemExit):
        main(["--help"])
    top = " ".join(capsys.readouterr().out.split())
    assert "int8 by default" not in top and "mode auto by default" in top
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    train_help = capsys.readouterr().out
    assert "training epochs (default: 10)" in train_help and "(default: 128)" in train_help
    assert "(default: None)" not in train_help
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    convert_help = capsys.readouterr().out
    assert "--calibration-images" in convert_help and "--num-calibration" not in convert_help


def test_every_option_shows_its_default_once_in_help():
    import argparse

    from ravit_keras.cli import build_parser

    parser = build_parser()
    checked = 0
    for command, action in [("ravit", a) for a in parser._actions] + list(_all_actions(parser)):
        if not action.option_strings or action.help in (None, argparse.SUPPRESS):
            continue
        sub = parser if command == "ravit" else parser._subparsers._group_actions[0].choices[command]
        text = " ".join(sub._get_formatter()._expand_help(action).split())
        shown = text.count("(default")
        has_default = not (action.default is None or action.default is False or action.default is argparse.SUPPRESS)
        where = f"ravit {command} {action.option_strings[-1]}: {text!r}"
        assert shown == 1 if has_default else shown <= 1, where
        if has_default and not isinstance(action.default, (list, tuple)) and "(default: " in text:
            stated = text.split("(default: ", 1)[1]
            if not stated.startswith(("all of", "the ")):  # Stated in words by the help itself.
                assert stated.startswith(f"{action.default})"), where
        checked += has_default
    assert checked > 40
    # 0 is a default like any other (it was taken for "no default", as False is).
    assert "augmentation (default: 0)" in " ".join(capsys_text(main, ["train", "--help"]).split())


def capsys_text(run, argv) -> str:
    """What ``run(argv)`` prints before it exits (argparse's --help)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        run(argv)
    return buf.getvalue()


def test_broken_pipe_is_quiet():
    proc = subprocess.run(f"{sys.executable} -m ravit_keras flops --config cifar10 | head -1",
                          shell=True, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("RAViT cost model")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_single_exit_model_logs_exit_names(tmp_path):
    out = tmp_path / "vit"
    assert main(["train", "--config", "tiny", "--layers", "0-2", "--data", "generated", "--limit-train", "64",
                 "--batch-size", "32", "--epochs", "1", "--out", str(out), "--progress", "none"]) == 0
    header = (out / "log.csv").read_text().splitlines()[0].split(",")
    assert "exit_2_accuracy" in header and "accuracy" not in header  # "0-2": its one exit is exit_2.
    assert json.loads((out / runs.RECORD_FILE).read_text())["class_names"][0] == "red_blob"


def test_output_folders_are_world_readable(tmp_path):
    from ravit_keras.io_utils import atomic_directory

    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "out") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_counts_in_the_commands_output_agree_with_their_nouns():
    import re

    from ravit_keras.console import plural

    assert plural(1, "image") == "1 image" and plural(2, "image") == "2 images" and plural(0, "image") == "0 images"
    assert plural(1, "int8 submodel") == "1 int8 submodel" and plural(3, "class", "classes") == "3 classes"
    # No f-string in the command modules prints a count before a plural noun itself.
    package = Path(REPO) / "ravit_keras"
    measurement = package / "deploy" / "measurement"
    files = [*sorted((package / "cli").glob("*.py")), package / "training" / "from_data.py",
             measurement / "bench_report.py", measurement / "benchmark.py"]
    raw = re.compile(r"\{[^{}]*\} (images|answers|submodels|epochs|runs|threads|invokes)\b")
    not_counts = {"{args.mode} submodels", "{mode} submodels", "{held} submodels"}  # kinds, not counts.
    found = [f"{f.name}: {m.group(0)}" for f in files for m in raw.finditer(f.read_text())
             if m.group(0) not in not_counts]
    assert found == []

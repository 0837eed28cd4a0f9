"""Parity of the Android core's Java scheduler with the Python scheduler on real submodels.

The tiny trained RAViT of ``conftest.py`` is converted in the modes that give the app
its three kinds of submodel: ``int8`` (the app's default: integer I/O, float islands
inside), ``int8-full`` (every op integer) and ``float32`` (float I/O; ``dynamic`` and
``int16x8`` have the same float interface, so the Java side takes the same path; their
conversions are checked against Keras in ``test_convert.py``). The Java side (``android_demo/jvm``: the core's
``Scheduler`` over ``LiteRtRuntime``, LiteRT's C API through JNA, XNNPACK kernels)
runs the same 1,024 images through ``dev.ravit.jvm.ParityDump``; this file runs
``RAViTScheduler`` and compares: every submodel output tensor and every requantised
``cls_in`` byte for byte, and at several threshold settings every exit, label and
MAC count exactly (entropies within 1e-9: Java's ``Math.exp``/``log`` and NumPy's
may differ in the last bits).

Two tests show the comparison can fail: a dump with one flipped byte, and the int8
submodels run on LiteRT's built-in kernels (the app's old ``Delegate.CPU``), which
compute different logits than the XNNPACK kernels the thresholds were calibrated on.

Skipped, saying why, without a JDK, JNA (Debian ``libjna-java``) or ``libLiteRt.so``.
"""

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

PARITY_MODES = ("int8", "int8-full", "float32")

REPO = Path(__file__).resolve().parents[2]
JVM = REPO / "android_demo" / "jvm"
NUM_IMAGES = 1024
ENTROPY_TOL = 1e-9


# Fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def java_classpath():
    """Builds core + JVM runtime with android_demo/jvm/build.sh; returns the classpath."""
    if shutil.which("javac") is None or shutil.which("java") is None:
        pytest.skip("No JDK (javac/java) on PATH: install openjdk-17-jdk-headless.")
    if not Path("/usr/share/java/jna.jar").exists() and "JNA_JAR" not in __import__("os").environ:
        pytest.skip("JNA missing: apt-get install libjna-java (scripts/setup.sh does with RAVIT_WITH_JAVA=1).")
    import ai_edge_litert

    if not (Path(ai_edge_litert.__file__).parent / "libLiteRt.so").exists():
        pytest.skip("This ai-edge-litert wheel ships no libLiteRt.so (the C API the Java runtime calls).")
    out = subprocess.run(["bash", str(JVM / "build.sh")], capture_output=True, text=True)
    assert out.returncode == 0, f"android_demo/jvm/build.sh failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def parity_images(tflite_trained_ravit):
    """1,024 generated test images, uint8 (N, 32, 32, 3)."""
    from ravit_keras.data import load_split

    split = load_split("generated", "test", num_examples=NUM_IMAGES,
                       num_classes=tflite_trained_ravit.config.num_classes)
    images, _ = split.as_numpy()
    assert images.shape[0] == NUM_IMAGES and images.dtype == np.uint8
    return images


@pytest.fixture(scope="module")
def converted(request, tflite_trained_ravit, tmp_path_factory):
    """Folder of the fixture model converted in ``mode`` (int8/float32 reuse the session fixtures)."""
    def get(mode):
        if mode == "int8":
            return request.getfixturevalue("tflite_int8_folder")
        if mode == "float32":
            return request.getfixturevalue("tflite_float32_folder")
        from ravit_keras.deploy.export.convert import ConversionOptions, convert

        folder = tmp_path_factory.mktemp(f"ravit_{mode}") / "model"
        t = tflite_trained_ravit
        convert(t.model, folder, t.calib_images, t.calib_labels, class_names=t.class_names,
                options=ConversionOptions(mode=mode, num_calibration=100), progress=None)
        return folder
    return get


# Both sides ---------------------------------------------------------------------------


def threshold_settings(scheduler, images) -> list[list[float]]:
    """Default τ, 0 (never early), ln C (always first) and three quantiles of the observed
    first-exit entropies, so both outcomes of the exit rule occur."""
    k = len(scheduler.submodels)
    first = [scheduler.classify(im, [0.0] * (k - 1)).entropies[0] for im in images[:256]]
    settings = [list(scheduler.thresholds[:k - 1]), [0.0] * (k - 1), [math.log(scheduler.num_classes)] * (k - 1)]
    settings += [[float(np.quantile(first, q))] * (k - 1) for q in (0.25, 0.5, 0.75)]
    return settings


def python_dump(folder, images, settings):
    """What the Python scheduler computes, in ParityDump's layout (see there)."""
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

    s = RAViTScheduler(folder)
    k = len(s.submodels)
    tensors, decisions = [], []
    for im in images:
        _, records = s.all_exit_logits(im)
        row = []
        for i, r in enumerate(records):
            if i:
                row.append(np.ascontiguousarray(r["in_cls_in"]))
            row.append(r["out_logits"])
            if i < k - 1:
                row.append(r["out_cls_out"])
        tensors.append(row)
        d = []
        for t in settings:
            c = s.classify(im, t)
            d.append((c.exit_index, c.label, c.macs, c.entropies + [math.nan] * (k - len(c.entropies))))
        decisions.append(d)
    return tensors, decisions


def java_dump(classpath, folder, images, settings, tmp_path, kernels="xnnpack") -> bytes:
    """Runs ParityDump on ``images`` (written in the manifest's image dtype)."""
    from ravit_keras.deploy.runtime.manifest import load_manifest

    dtype = load_manifest(folder).exits[0].inputs["image"].dtype
    image_file, out_file = tmp_path / f"images_{kernels}.bin", tmp_path / f"java_{kernels}.bin"
    image_file.write_bytes(images.astype(np.dtype(dtype).newbyteorder("<")).tobytes())
    cmd = ["java", "-cp", classpath, "dev.ravit.jvm.ParityDump", str(folder), str(image_file), str(out_file),
           "--kernels", kernels]
    for t in settings:
        cmd += ["--thresholds", ",".join(repr(float(x)) for x in t)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, f"ParityDump failed:\n{out.stderr[-4000:]}"
    return out_file.read_bytes()


def compare(py, java: bytes, num_exits: int) -> list[str]:
    """Every difference between the Python dump and the Java bytes (empty when identical)."""
    tensors, decisions = py
    names = []
    for i in range(num_exits):
        if i:
            names.append(f"exit {i} cls_in (requantised)")
        names.append(f"exit {i} logits")
        if i < num_exits - 1:
            names.append(f"exit {i} cls_out")
    problems, pos = [], 0
    diff_elements = {}
    for n, (row, d) in enumerate(zip(tensors, decisions)):
        for name, want in zip(names, row):
            want = np.asarray(want)
            size = want.nbytes
            got = np.frombuffer(java[pos:pos + size], dtype=want.dtype.newbyteorder("<")).reshape(want.shape)
            pos += size
            if got.shape != want.shape or not np.array_equal(got, want):
                diff_elements[name] = diff_elements.get(name, 0) + int(np.sum(got != want))
                if len(problems) < 20:
                    problems.append(f"image {n}: {name} differs in {int(np.sum(got != want))} elements "
                                    f"(max {int(np.max(np.abs(got.astype(np.float64) - want)))} steps)")
        for t, (exit_index, label, macs, entropies) in enumerate(d):
            rec = np.frombuffer(java[pos:pos + 16 + 8 * num_exits], dtype="<u1")
            pos += 16 + 8 * num_exits
            j_exit, j_label = np.frombuffer(rec[:8].tobytes(), "<i4")
            j_macs = int(np.frombuffer(rec[8:16].tobytes(), "<i8")[0])
            j_u = np.frombuffer(rec[16:].tobytes(), "<f8")
            where = f"image {n} setting {t}"
            if (j_exit, j_label, j_macs) != (exit_index, label, macs):
                diff_elements["decisions"] = diff_elements.get("decisions", 0) + 1
                if len(problems) < 20:
                    problems.append(f"{where}: Java exit/label/MACs {(int(j_exit), int(j_label), j_macs)}, "
                                    f"Python {(exit_index, label, macs)}")
            elif not np.allclose(j_u, entropies, rtol=0, atol=ENTROPY_TOL, equal_nan=True):
                problems.append(f"{where}: entropies {j_u.tolist()} vs {entropies}")
    if pos != len(java):
        problems.append(f"Java wrote {len(java)} bytes, the Python layout has {pos}")
    if diff_elements:
        problems.insert(0, f"differing elements/decisions in total: {diff_elements}")
    return problems


# Tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", PARITY_MODES)
def test_java_scheduler_equals_python_scheduler(mode, converted, parity_images, java_classpath, tmp_path):
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

    folder = converted(mode)
    scheduler = RAViTScheduler(folder)
    settings = threshold_settings(scheduler, parity_images)
    py = python_dump(folder, parity_images, settings)
    exits = [d[0] for row in py[1] for d in row]
    assert len(set(exits)) > 1, "the settings should make both exits answer somewhere"
    java = java_dump(java_classpath, folder, parity_images, settings, tmp_path)
    problems = compare(py, java, len(scheduler.submodels))
    assert not problems, f"{mode}: Java and Python differ:\n" + "\n".join(problems)


def test_comparison_catches_one_flipped_byte(converted, parity_images, java_classpath, tmp_path):
    folder = converted("int8")
    images = parity_images[:8]
    settings = [[0.0]]
    py = python_dump(folder, images, settings)
    java = bytearray(java_dump(java_classpath, folder, images, settings, tmp_path))
    assert compare(py, bytes(java), 2) == []
    # Image 0 is logits_0 (10 bytes), cls_out_0 (32), cls_in_1 (32), logits_1: flip a bit of logits_1.
    java[10 + 32 + 32 + 5] ^= 1
    problems = compare(py, bytes(java), 2)
    assert problems and "exit 1 logits" in problems[0], problems


def test_builtin_kernels_break_parity(converted, parity_images, java_classpath, tmp_path):
    """LiteRT's built-in int8 kernels (the app's old Delegate.CPU, setUseXNNPACK(false)) do not
    compute what Python's XNNPACK interpreter computed when the thresholds were calibrated."""
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

    folder = converted("int8")
    images = parity_images[:200]
    settings = threshold_settings(RAViTScheduler(folder), images)
    py = python_dump(folder, images, settings)
    problems = compare(py, java_dump(java_classpath, folder, images, settings, tmp_path, kernels="builtin"), 2)
    assert problems and "logits" in problems[0], "built-in kernels unexpectedly equal XNNPACK"
    print("\n".join(problems[:5]))

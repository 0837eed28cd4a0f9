"""Makes the presets ready to deploy: their int8 submodels and ``metadata.json``.

    python scripts/ship_presets.py --data path/to/cifar-10-batches-py [--presets ravit_1-3_cifar10,...]

(CIFAR-10's python version: ``keras.datasets.cifar10`` downloads it; in this project's
checkout ``python ../shared/data/materialize.py cifar10 DIR`` unpacks it.) For each
preset in ``ravit_keras/presets/``:

1. converts it with the project's own command, ``ravit convert --model preset:NAME
   --data DATA --mode int8`` (int8 ranges from 500 and thresholds from the 2,000 test
   images its run record sets aside; the manifest records them in ``calibration``),
   into ``NAME/int8/`` (``manifest.json``, ``labels.txt``, ``branch_*.tflite``);
2. checks those submodels against the Keras model on the first ``--check-images`` test
   images not set aside (no early exit): top-1 within ``--max-gap`` and the same answer
   on at least ``--min-agreement`` of them;
3. writes ``NAME/metadata.json`` (keras-hub's keys: ``presets.metadata``).

The Android app's default model (``android_demo/app/default_model/``) is then replaced
by a copy of ``ravit_1-3_cifar10/int8/``: one conversion, byte for byte
(``tests/deploy/test_android_default_model.py`` checks it). Deterministic given the
presets and the dataset on one host; a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ravit_keras import presets, runs  # noqa: E402
from ravit_keras.io_utils import atomic_directory  # noqa: E402
from ravit_keras.presets.metadata import preset_metadata, write_metadata  # noqa: E402

MODE = "int8"
ANDROID_PRESET = "ravit_1-3_cifar10"
ANDROID_MODEL = REPO / "android_demo" / "app" / "default_model"


def convert_preset(name: str, data: str) -> Path:
    """``ravit convert --mode int8`` of preset ``name`` into ``NAME/int8/`` (replaced whole)."""
    from ravit_keras.cli import main

    target = presets.preset_dir(name) / MODE
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / MODE  # The command never writes into what it reads: convert beside, then move.
        rc = main(["convert", "--model", f"preset:{name}", "--data", data, "--mode", MODE, "--out", str(out)])
        if rc != 0:
            raise SystemExit(f"{name}: ravit convert failed ({rc})")
        with atomic_directory(target, overwrite=True) as tmp:
            for f in sorted(out.iterdir()):
                shutil.copy2(f, tmp / f.name)
    return target


def check_against_keras(name: str, data: str, n: int, max_gap: float, min_agreement: float) -> dict:
    """int8 submodels (no early exit) against the Keras model on ``n`` reported test images."""
    import numpy as np

    from ravit_keras.data.calibration import load_reported
    from ravit_keras.data.source import DataSource
    from ravit_keras.deploy.runtime.scheduler import RAViTScheduler

    folder = presets.preset_dir(name)
    model = presets.from_preset(name)
    config = model.ravit_config
    split, _ = load_reported(DataSource(data), folder, "test", image_size=config.image_size,
                             num_classes=config.num_classes, limit=n, notes=lambda _m: None)
    x, y = split.as_numpy()
    keras_logits = model.predict(x.astype(np.float32), batch_size=250, verbose=0)
    keras_top1 = np.asarray(keras_logits[sorted(keras_logits)[-1]]).argmax(-1)
    sched = RAViTScheduler(folder / MODE, thresholds=0.0)
    int8_top1 = np.array([sched.classify(img).label for img in x])
    result = {"images": int(len(y)), "keras_top1": float(np.mean(keras_top1 == y)),
              "int8_top1": float(np.mean(int8_top1 == y)), "agreement": float(np.mean(int8_top1 == keras_top1))}
    if abs(result["keras_top1"] - result["int8_top1"]) > max_gap or result["agreement"] < min_agreement:
        raise SystemExit(f"{name}: int8 submodels stray from the Keras model: {result}")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="CIFAR-10 (python version folder, .tar.gz or .npz)")
    p.add_argument("--presets", default=",".join(presets.available_presets()), help="which presets")
    p.add_argument("--check-images", type=int, default=500)
    p.add_argument("--max-gap", type=float, default=0.02, help="largest top-1 gap int8 vs Keras")
    p.add_argument("--min-agreement", type=float, default=0.95, help="least share of equal answers")
    p.add_argument("--no-android", action="store_true", help="leave android_demo/app/default_model alone")
    args = p.parse_args(argv)

    for name in [n.strip() for n in args.presets.split(",") if n.strip()]:
        folder = convert_preset(name, args.data)
        check = check_against_keras(name, args.data, args.check_images, args.max_gap, args.min_agreement)
        model = presets.from_preset(name)
        names = runs.class_names(presets.preset_dir(name), model.ravit_config.num_classes)
        write_metadata(presets.preset_dir(name), preset_metadata(model, names, converted={MODE: MODE}))
        sizes = {f.name: f.stat().st_size for f in sorted(folder.iterdir())}
        print(f"{name}: {MODE}/ {sum(sizes.values()) / 1e6:.2f} MB {sizes}; against Keras: {check}", flush=True)
        if name == ANDROID_PRESET and not args.no_android:
            with atomic_directory(ANDROID_MODEL, overwrite=True) as tmp:
                for f in sorted(folder.iterdir()):
                    shutil.copy2(f, tmp / f.name)
            print(f"{ANDROID_MODEL.relative_to(REPO)}: the same {MODE} submodels", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

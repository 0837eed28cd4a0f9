"""Turns a finished training run into a preset that ships in ``ravit_keras/presets/``.

    python scripts/make_preset.py runs/study/RAViT_1-3 ravit_1-3_cifar10 \
        --data runs/data/cifar-10-batches-py --command "python benchmarks/cifar10_study.py ..." \
        --data-description "CIFAR-10, the official split (what keras.datasets.cifar10 downloads)"

Writes ``ravit_keras/presets/NAME/``, a run folder (``ravit_keras.runs``): the model
(float32 weights, no optimizer state: the one weights file, at most 5 MB), the run's
record and training log, ``metadata.json`` (keras-hub's keys) and ``card.json`` with the data,
the command, the host, the test-set top-1 (overall and per exit) and the top-1 on the first
``--check-images`` test images, which ``tests/test_presets.py`` re-measures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ravit_keras import runs  # noqa: E402
from ravit_keras.config import format_layers  # noqa: E402
from ravit_keras.deploy.measurement.profiling import cpu_description  # noqa: E402
from ravit_keras.io_utils import atomic_directory  # noqa: E402
from ravit_keras.presets import CARD_FILE, PRESETS_DIR  # noqa: E402
from ravit_keras.presets.metadata import preset_metadata, write_metadata  # noqa: E402
from ravit_keras.runs import MODEL_FILE  # noqa: E402

MAX_BYTES = 5 * 1024 * 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="finished training run folder (" + ", ".join(runs.RUN_FILES) + ")")
    p.add_argument("name", help="preset name, e.g. ravit_1-3_cifar10")
    p.add_argument("--data", required=True, help="the dataset the run was trained on (its test split is measured)")
    p.add_argument("--data-description", required=True,
                   help="the data in words a user can follow (its name, where it comes from), never a path "
                        "on this machine, e.g. 'CIFAR-10, the official split (what keras.datasets.cifar10 "
                        "downloads)'")
    p.add_argument("--command", required=True, help="the command that trained the run")
    p.add_argument("--train-seconds", type=float,
                   help="wall time of the training (default: the sum of the run's epoch_times.json, "
                        "recorded across resumes, when it has every epoch)")
    p.add_argument("--check-images", type=int, default=500)
    args = p.parse_args(argv)

    import keras
    import numpy as np

    from ravit_keras.data import load_split
    from ravit_keras.evaluation import predict_exit_logits
    from ravit_keras.model import RAViT, load_ravit
    from ravit_keras.model.flops import model_macs

    run = Path(args.run)
    trained = load_ravit(str(run / MODEL_FILE))
    config = trained.ravit_config
    keras.config.set_dtype_policy("float32")
    model = RAViT(config)  # Uncompiled: the file keeps weights, not optimizer state.
    model.set_weights(trained.get_weights())
    record = runs.load_record(run)
    train_seconds = args.train_seconds
    if train_seconds is None:
        train_seconds = runs.training_seconds(run, record["training"]["epochs"])

    test = load_split(args.data, "test", image_size=config.image_size)
    if test.class_names != record.get("class_names"):
        raise SystemExit(f"{args.data}: classes {test.class_names} are not the run's {record.get('class_names')}")
    logits, labels = predict_exit_logits(model, test)
    per_exit = [float(np.mean(exit_logits.argmax(-1) == labels)) for exit_logits in logits]
    n = args.check_images
    card = {
        "name": args.name,
        "layers": config.layer_spec,
        **({"mlp_layers": format_layers(config.mlp_layers)} if config.mlp_layers else {}),
        "mflops": 2 * model_macs(config) / 1e6,
        "data": args.data_description,
        "command": args.command,
        "host": cpu_description(),
        "train_seconds": None if train_seconds is None else round(train_seconds, 1),
        "test_images": int(len(labels)),
        "test_top1": per_exit[-1],
        "test_top1_per_exit": per_exit,
        "check": {"first_test_images": n, "top1_last_exit": float(np.mean(logits[-1][:n].argmax(-1) == labels[:n]))},
    }
    out = PRESETS_DIR / args.name
    with atomic_directory(out, overwrite=True) as tmp:
        model.save(tmp / MODEL_FILE)
        size = (tmp / MODEL_FILE).stat().st_size
        if size > MAX_BYTES:
            raise SystemExit(f"{MODEL_FILE} is {size / 1e6:.1f} MB; presets ship at most {MAX_BYTES / 1e6:.1f} MB.")
        runs.copy_record(run, tmp)
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        write_metadata(tmp, preset_metadata(model, test.class_names))
    print(json.dumps(card, indent=2))
    print(f"Next: python scripts/ship_presets.py --data {args.data} --presets {args.name} --no-android "
          "(its int8 submodels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

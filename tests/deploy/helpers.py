"""Shared helpers of the deployment tests."""

import json
from pathlib import Path

from ravit_keras.deploy.runtime.manifest import MANIFEST_FILE


def submodel_files(folder) -> list[Path]:
    """The submodel files of a converted folder, in exit order."""
    manifest = json.loads((Path(folder) / MANIFEST_FILE).read_text())
    return [Path(folder) / e["file"] for e in manifest["exits"]]


def assert_int8_logits_close(scheduler, int8_logits, float_logits) -> None:
    """The int8 fidelity rule of the conversion tests, exit by exit (``int8_logits`` and
    ``float_logits``: one [N, C] array per exit).

    Top-1 is compared only where the float logits' top-2 gap exceeds 5 quantisation steps
    of the int8 logits (so that ±1 LSB of another CPU's rounding cannot flip it): ≥ 90 %
    agreement there, ≥ 70 % overall, and a mean absolute error ≤ 10 % of the logits' std.
    A wrong scale, zero point or CLS hand-over gives errors of the order of the logits.
    """
    import numpy as np

    for k, (q, f) in enumerate(zip(int8_logits, float_logits)):
        step = scheduler.manifest.to_dict()["exits"][k]["outputs"]["logits"]["scale"]
        top2 = np.sort(f, axis=-1)[:, -2:]
        confident = (top2[:, 1] - top2[:, 0]) >= 5 * step
        agree = q.argmax(-1) == f.argmax(-1)
        err = float(np.abs(q - f).mean())
        assert confident.mean() >= 0.3, f"exit {k + 1}: only {confident.mean()} of the images are confident"
        assert agree[confident].mean() >= 0.9, f"exit {k + 1}: top-1 agreement {agree[confident].mean()}"
        assert agree.mean() >= 0.7, f"exit {k + 1}: overall top-1 agreement {agree.mean()}"
        assert err <= 0.1 * float(f.std()), f"exit {k + 1}: mean |error| {err} vs logit std {f.std()}"

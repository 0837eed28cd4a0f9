"""The README's Python snippet, read from README.md by its marker, run on 5-class data.

It used to build a 10-class model whatever the data, which ``ravit eval`` then
refused. The test runs the real snippet with only the data path, the run folder,
the batch size and the epochs replaced (a small budget), then ``ravit eval`` on it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- README snippet: python-api"


def readme_snippet() -> str:
    """The ```python block right after the marker."""
    text = README.read_text()
    start = text.index(MARKER)
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match and match.start() - start < 200, "the marker must sit right above the snippet"
    return match.group(1)


@pytest.mark.slow  # A cifar10-sized model's XLA compile: about a minute on 2 shared cores.
def test_the_readme_snippet_sizes_the_heads_for_the_data_and_eval_takes_the_model(tmp_path, capsys):
    from ravit_keras.cli import main
    from ravit_keras.data import generated_class_names, load_split

    train = load_split("generated", "train", num_examples=96, num_classes=5)
    test = load_split("generated", "test", num_examples=40, num_classes=5)
    (x, y), (xt, yt) = train.as_numpy(), test.as_numpy()
    data = tmp_path / "flowers.npz"
    np.savez(data, x_train=x, y_train=y, x_test=xt, y_test=yt, class_names=np.array(generated_class_names(5)))
    run = tmp_path / "run"
    snippet = readme_snippet()
    for old, new in [('"path/to/cifar-10-batches-py"', repr(str(data))), ('"runs/ravit13', f'"{run}'),
                     ("batch_size=256", "batch_size=32"), ("epochs=10", "epochs=1"), ("len(ds) * 10", "len(ds)")]:
        assert old in snippet, f"the README snippet no longer has {old}: update this test"
        snippet = snippet.replace(old, new)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)

    assert namespace["model"].ravit_config.num_classes == 5
    assert namespace["branch_2"].output["logits"].shape[-1] == 5
    capsys.readouterr()
    assert main(["eval", "--model", str(run), "--data", str(data), "--batch-size", "64"]) == 0, \
        capsys.readouterr().err

"""Shared helpers of the deployment tests."""

import json
from pathlib import Path

from ravit_keras.deploy.runtime.manifest import MANIFEST_FILE


def submodel_files(folder) -> list[Path]:
    """The submodel files of a converted folder, in exit order."""
    manifest = json.loads((Path(folder) / MANIFEST_FILE).read_text())
    return [Path(folder) / e["file"] for e in manifest["exits"]]

"""Where a preset can live besides this package: a local folder, or a model hub.

keras-hub's ``from_preset`` takes ``hf://OWNER/REPO`` and ``kaggle://OWNER/MODEL/keras/VARIANT``
locations as well as names; so do ``from_preset`` and ``--model`` here. A hub location is a
copy of a preset folder (``model.keras``, ``config.json`` the run record, ``metadata.json``,
``card.json``, optionally ``int8/``), downloaded once into the hub client's own cache:

* ``hf://``: ``huggingface_hub.snapshot_download``, the call Keras 3's own
  ``keras.saving.load_model("hf://...")`` makes. Keras then reads the snapshot as its
  unzipped format, whose ``config.json`` is the Keras model config; a preset's
  ``config.json`` is the run record, so the snapshot is read here instead, and its
  ``model.keras`` is loaded by ``keras.saving.load_model`` (``load_ravit``).
* ``kaggle://``: ``kagglehub.model_download``, as keras-hub does.

Neither client is a dependency: a missing one, a bad location or no network is one
``PresetLocationError`` line naming the location.
"""

from __future__ import annotations

from pathlib import Path

from ravit_keras.runs import MODEL_FILE, RECORD_FILE

HF_PREFIX = "hf://"
KAGGLE_PREFIX = "kaggle://"
HUB_PREFIXES = (HF_PREFIX, KAGGLE_PREFIX)


class PresetLocationError(ValueError):
    """A preset location that cannot be read: malformed, unreachable, or not a preset folder."""


def is_hub_location(spec: str) -> bool:
    """``hf://...`` or ``kaggle://...``."""
    return str(spec).startswith(HUB_PREFIXES)


def check_preset_folder(folder: Path, spec: str) -> Path:
    """``folder`` when it holds a preset (``model.keras`` and its run record ``config.json``)."""
    missing = [n for n in (MODEL_FILE, RECORD_FILE) if not (folder / n).is_file()]
    if missing:
        raise PresetLocationError(
            f"{spec} is not a RAViT preset folder: it has no {' or '.join(missing)} (a preset folder holds "
            f"{MODEL_FILE}, {RECORD_FILE} and metadata.json; a model pushed with Keras's own "
            "model.save('hf://...') loads with keras.saving.load_model instead)")
    return folder


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _package_version() -> str:
    from ravit_keras import __version__

    return __version__


def download(spec: str) -> Path:
    """The local folder of a hub location (downloaded on first use, then read from the cache).

    Raises:
        PresetLocationError: a malformed location, a hub client that is not installed, a
            failed download (no network, no such repository), or not a preset folder.
    """
    if spec.startswith(HF_PREFIX):
        return _from_hugging_face(spec)
    if spec.startswith(KAGGLE_PREFIX):
        return _from_kaggle(spec)
    raise PresetLocationError(f"{spec}: not a hub location ({', '.join(p + '...' for p in HUB_PREFIXES)})")


def _from_hugging_face(spec: str) -> Path:
    repo, _, revision = spec[len(HF_PREFIX):].strip("/").partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise PresetLocationError(f"{spec}: a Hugging Face location is hf://OWNER/REPO (or hf://OWNER/REPO@REVISION)")
    try:
        import huggingface_hub
    except ImportError:
        raise PresetLocationError(f"{spec}: reading hf:// locations needs the huggingface_hub package "
                                  "(pip install huggingface_hub), as keras.saving.load_model does") from None
    try:
        folder = huggingface_hub.snapshot_download(repo_id=repo, revision=revision or None,
                                                   library_name="ravit-keras", library_version=_package_version())
    except Exception as e:  # noqa: BLE001 - the client raises many types (HTTP, offline, validation).
        raise PresetLocationError(
            f"{spec}: could not download it ({_first_line(e)}); without network only a location downloaded "
            "before is read (from the Hugging Face cache, HF_HUB_OFFLINE=1)") from None
    return check_preset_folder(Path(folder), spec)


def _from_kaggle(spec: str) -> Path:
    handle = spec[len(KAGGLE_PREFIX):].strip("/")
    if len(handle.split("/")) not in (4, 5) or not all(handle.split("/")):
        raise PresetLocationError(f"{spec}: a Kaggle location is kaggle://OWNER/MODEL/keras/VARIATION[/VERSION]")
    try:
        import kagglehub
    except ImportError:
        raise PresetLocationError(f"{spec}: reading kaggle:// locations needs the kagglehub package "
                                  "(pip install kagglehub)") from None
    try:
        folder = kagglehub.model_download(handle)
    except Exception as e:  # noqa: BLE001 - the client raises many types (HTTP, auth, offline).
        raise PresetLocationError(f"{spec}: could not download it ({_first_line(e)})") from None
    return check_preset_folder(Path(folder), spec)

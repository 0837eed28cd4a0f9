"""TFLite metadata of the submodels (``ravit_keras.deploy.export.metadata``).

The tiny "1-2" model is trained and converted ONCE per session (fixtures in
conftest.py: ``tflite_trained_ravit``, ``tflite_int8_folder``,
``tflite_float32_folder``). Tests that corrupt a folder copy it first.
"""

import json
from pathlib import Path

from ravit_keras.deploy.runtime.manifest import LABELS_FILE
from tests.deploy.helpers import submodel_files

# Metadata ------------------------------------------------------------------------


def test_metadata_readable(tflite_trained_ravit, tflite_int8_folder):
    from tensorflow_lite_support.metadata.python.metadata import MetadataDisplayer

    labels_bytes = (Path(tflite_int8_folder) / LABELS_FILE).read_bytes()
    for k, path in enumerate(submodel_files(tflite_int8_folder)):
        displayer = MetadataDisplayer.with_model_buffer(path.read_bytes())
        md = json.loads(displayer.get_metadata_json())
        assert md["name"] == f"RAViT 1-2 branch {k + 1}"
        sub = md["subgraph_metadata"][0]
        inputs = {t["name"]: t for t in sub["input_tensor_metadata"]}
        outputs = {t["name"]: t for t in sub["output_tensor_metadata"]}
        assert set(inputs) == ({"image"} if k == 0 else {"image", "cls_in"})
        assert set(outputs) == {"logits", "cls_out"}
        image = inputs["image"]["content"]
        assert image["content_properties_type"] == "ImageProperties"
        assert image["content_properties"]["color_space"] == "RGB"
        assert [f["name"] for f in outputs["logits"]["associated_files"]] == [LABELS_FILE]
        assert displayer.get_packed_associated_file_list() == [LABELS_FILE]
        assert displayer.get_associated_file_buffer(LABELS_FILE) == labels_bytes
        if k > 0:
            assert inputs["cls_in"]["description"] and outputs["cls_out"]["description"]



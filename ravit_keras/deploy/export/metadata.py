"""TFLite metadata (tflite-support metadata writers), reproducible byte for byte."""

from __future__ import annotations

from ravit_keras.config import RAViTConfig
from ravit_keras.deploy.runtime.manifest import MANIFEST_VERSION


def add_metadata(tflite: bytes, config: RAViTConfig, branch: int, first: bool,
                 labels_path: str, tensors: dict[str, dict]) -> bytes:
    """Adds TFLite metadata with tflite-support's metadata writers.

    The image input carries image metadata (RGB, raw pixels: mean 0, std 1) and
    the logits carry the label file, so the first branch reads as an image
    classifier; the CLS input/output are described as plain tensors.
    """
    from tensorflow_lite_support.metadata import metadata_schema_py_generated as md_fb
    from tensorflow_lite_support.metadata.python.metadata_writers import (
        metadata_info,
        metadata_writer,
        writer_utils,
    )

    in_types = writer_utils.get_input_tensor_types(tflite)
    out_types = writer_utils.get_output_tensor_types(tflite)
    size = config.branch_image_sizes[branch]
    by_position_in = sorted((t["position"], name) for name, t in tensors.items() if t["io"] == "input")
    by_position_out = sorted((t["position"], name) for name, t in tensors.items() if t["io"] == "output")
    input_md = []
    for pos, name in by_position_in:
        if name == "image":
            input_md.append(metadata_info.InputImageTensorMd(
                name="image",
                description=(f"RGB pixels 0..255, {config.image_size[0]}x{config.image_size[1]}; "
                             f"resized to {size[0]}x{size[1]} and normalised inside the model."),
                norm_mean=[0.0], norm_std=[1.0],
                color_space_type=md_fb.ColorSpaceType.RGB,
                tensor_type=in_types[pos],
            ))
        else:
            input_md.append(metadata_info.TensorMd(
                name="cls_in",
                description=f"CLS token handed over by the previous branch ({config.hidden_dim} values).",
            ))
    output_md = []
    for pos, name in by_position_out:
        if name == "logits":
            output_md.append(metadata_info.ClassificationTensorMd(
                name="logits",
                description=(f"Exit logits of branch {branch + 1} (softmax them; early exit when "
                             "their entropy is under the exit's threshold)."),
                label_files=[metadata_info.LabelFileMd(file_path=labels_path)],
                tensor_type=out_types[pos],
            ))
        else:
            output_md.append(metadata_info.TensorMd(
                name="cls_out",
                description="CLS token for the next branch's cls_in (requantise if scales differ).",
            ))
    general = metadata_info.GeneralMd(
        name=f"RAViT {config.layer_spec} branch {branch + 1}",
        version=f"manifest v{MANIFEST_VERSION}",
        description=(
            f"Branch {branch + 1} of a Resolution-Adaptive Vision Transformer ({config.name}, "
            f"{config.layer_spec}); runs on {size[0]}x{size[1]}"
            + ("." if first else ", starting from the previous branch's CLS token.")
        ),
        author="ravit-keras",
        licenses="Apache-2.0",
    )
    writer = metadata_writer.MetadataWriter.create_from_metadata_info(
        tflite, general_md=general, input_md=input_md, output_md=output_md,
        associated_files=[labels_path],
    )
    return _with_fixed_zip_timestamps(bytes(writer.populate()))


def _with_fixed_zip_timestamps(tflite: bytes) -> bytes:
    """Re-packs the associated-files zip appended to a model with fixed timestamps.

    The metadata populator zips the label file with the current time, so two
    conversions of the same model would differ (and so would their checksums).
    """
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(tflite)) as zf:
        infos = zf.infolist()
        contents = [(i, zf.read(i)) for i in infos]
    start = min(i.header_offset for i in infos)
    out = io.BytesIO(tflite[:start])
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as zf:
        for info, data in contents:
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = info.compress_type
            zf.writestr(fixed, data)
    return out.getvalue()


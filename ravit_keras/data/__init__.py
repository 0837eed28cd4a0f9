"""Image classification data: every source gives a ``DataSplit``; ``make_pipeline`` batches it.

    split.py          DataSplit and the helpers every source builds one with
    classes.py        match_classes: a split's labels against a model's classes
    sampling.py       seeded, stratified holdouts and orders
    errors.py         DatasetError
    source.py         DataSource: where the data is, loaded split by split (the CLI's data flags)
    calibration.py    load_calibration: the images a model's thresholds are calibrated on
    loading.py        load_split: recognises the source and dispatches
    generated.py      the generated (synthetic, resolution-dependent) dataset
    tfds_source.py    prepared TensorFlow Datasets (tfds:NAME)
    cifar10.py        the official CIFAR-10 python version (folder or .tar.gz)
    npz.py            .npz archives (x_train, y_train, x_test, y_test, class_names)
    tiny_imagenet.py  the official tiny-imagenet-200 folder
    image_folder.py   folders of class sub-folders (optionally train/ + test/)
    pipeline.py       make_pipeline (batches for model.fit, augmentation), channel stats
    augmentation.py   Augmentation: the stronger recipe's settings (no TensorFlow)
    batches.py        SplitBatches: NumPy batches (a PyDataset) for training without TensorFlow
    augment.py        the stronger recipe's augmentations (Keras's RandAugment, RandomErasing,
                      CutMix, MixUp), seeded statelessly

A ``DataSplit`` is an unbatched ``tf.data.Dataset`` of ``(uint8 image [H, W, 3],
int32 label)`` in a deterministic order, with its size, class names and (when
fixed) image size. Pipelines yield raw pixels in [0, 255] as float32 (the model
normalises inside) and one label entry per exit.
"""

from ravit_keras._lazy import lazy_exports

_EXPORTS = {
    "DataSplit": "split", "SPLITS": "split", "DatasetError": "split", "match_classes": "split",
    "load_split": "loading",
    "make_pipeline": "pipeline", "augment": "pipeline", "compute_channel_stats": "pipeline",
    "Augmentation": "augmentation",
    "generated_class_names": "generated", "GENERATED_COARSE_CLASSES": "generated",
    "GENERATED_FINE_CLASSES": "generated",
    "CIFAR10_CLASS_NAMES": "cifar10",
    "DataSource": "source", "load_calibration": "calibration",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

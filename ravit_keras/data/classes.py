"""Class names of a dataset against a model's: matching by name, or taking the first N."""

from __future__ import annotations

import numpy as np

from ravit_keras.data.errors import DatasetError
from ravit_keras.runs import are_placeholders


def take_classes(class_names: list[str], num_classes: int | None) -> list[str]:
    """The first ``num_classes`` names (all when None)."""
    if num_classes is None:
        return list(class_names)
    if num_classes > len(class_names):
        raise ValueError(
            f"num_classes={num_classes} exceeds the {len(class_names)} classes of the dataset."
        )
    return list(class_names)[:num_classes]



def match_classes(split, model_classes, where: str = "the model") -> tuple[object, str | None]:
    """Matches a split's labels to a model's classes by name.

    Same names in the same order: the split as it is. Labels without names
    (``runs.placeholder_class_names`` or digits) are taken by position and get the model's names. The
    same names in another
    order, or a subset of the model's classes (a class with no images here): the
    labels are mapped by name and a note says so. Names the model does not know
    are refused. When only the model's names are placeholders, the
    class counts must agree.

    Returns:
        ``(split, note or None)``.

    Raises:
        DatasetError: listing the classes that differ.
    """
    model_classes = [str(n) for n in model_classes]
    names = [str(n) for n in split.class_names]
    if names == model_classes:
        return split, None
    if are_placeholders(names):
        if len(names) <= len(model_classes):
            # Labels without names: positions are all there is; the model's names stand.
            return (split if are_placeholders(model_classes) else split._with(class_names=model_classes)), None
        raise DatasetError(
            f"The data's labels go up to {len(names) - 1}, but {where} has {len(model_classes)} classes.")
    if are_placeholders(model_classes):
        if len(names) == len(model_classes):
            return split, None
        raise DatasetError(
            f"The data has {len(names)} classes, {where} {len(model_classes)} (whose names are unknown).")
    unknown = [n for n in names if n not in model_classes]
    if unknown:
        missing = [n for n in model_classes if n not in names]
        raise DatasetError(
            f"The data's classes do not match {where}'s: {len(unknown)} unknown to it "
            f"({', '.join(unknown[:10])}{', ...' if len(unknown) > 10 else ''})"
            + (f"; {len(missing)} of its classes missing here ({', '.join(missing[:10])}"
               f"{', ...' if len(missing) > 10 else ''})" if missing else "") + ".")
    index = np.array([model_classes.index(n) for n in names], np.int64)
    missing = [n for n in model_classes if n not in names]
    note = ("labels mapped to the model's classes by name"
            + (f"; no images of {', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''}" if missing else ""))
    return split.relabelled(index, model_classes), note

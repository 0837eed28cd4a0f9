"""The error every data source raises for a dataset it cannot use as asked."""


class DatasetError(ValueError):
    """A dataset that cannot be used as asked: bad layout, classes that do not match."""

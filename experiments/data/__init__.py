"""Input pipelines of the studies: the real datasets, read in place, never partial."""


class DataNotFoundError(FileNotFoundError):
    """No local copy of a dataset (or a given folder that does not exist), and no download."""


class CorruptDataError(ValueError):
    """A local copy is truncated, corrupt or incomplete; the message names the file."""

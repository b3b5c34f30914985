"""The one error type of the data layer (the CLI turns it into a clear message)."""
from __future__ import annotations

from toolkit.errors import DataInvalid


class DataUnavailable(DataInvalid, FileNotFoundError):
    """A data set is nowhere on this machine, could not be downloaded, or failed its checks."""

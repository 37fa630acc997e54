"""Readers of every import format, pairs and steps, on one streaming layer.

    from prefdata.readers import format_detect, read
    fmt = format_detect(path, kind="pairs")          # "hh-rlhf"
    for pair in read(path, fmt, kind="pairs"):        # PairRecord, one at a time
        ...

Plain or gzip (``.jsonl.gz``, capped once decompressed), JSON Lines or a JSON array for the record
formats; every error is a ``ReadError`` naming the file, the line (or record, or task) and the field.
"""

from prefdata.readers.formats import (
    AUTO,
    DETECTION_ORDER,
    FORMATS,
    KINDS,
    Format,
    format_detect,
    formats_for,
    read,
)
from prefdata.readers.pair_formats import hh_transcript_split
from prefdata.readers.stream import DEFAULT_MAX_BYTES, ReadError, RowCounter

__all__ = [
    "AUTO",
    "DEFAULT_MAX_BYTES",
    "DETECTION_ORDER",
    "FORMATS",
    "KINDS",
    "Format",
    "ReadError",
    "RowCounter",
    "format_detect",
    "formats_for",
    "hh_transcript_split",
    "read",
]

"""Readers of every import format, pairs and steps, on one streaming layer.

    from prefdata.readers import format_detect, read
    fmt = format_detect(path, kind="pairs")          # "hh-rlhf"
    for pair in read(path, fmt, kind="pairs"):        # PairRecord, one at a time
        ...

Plain or gzip (``.jsonl.gz``, capped once decompressed), JSON Lines or a JSON array for the record
formats; every error is a ``ReadError`` naming the file, the line (or record, or task) and the field.
``ReadOptions`` holds the limits of a record (field, line, depth) and what becomes of identical replies
and of conversations that differ before the replies.
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
from prefdata.readers.mapped import MAPPED, ColumnMapping, MappingError, Preview, preview
from prefdata.readers.pair_formats import hh_transcript_split
from prefdata.readers.stream import (
    CONTEXT_DIFFERS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FIELD_BYTES,
    IDENTICAL,
    ReadError,
    ReadOptions,
    RowCounter,
)

__all__ = [
    "AUTO",
    "CONTEXT_DIFFERS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_FIELD_BYTES",
    "DETECTION_ORDER",
    "FORMATS",
    "IDENTICAL",
    "KINDS",
    "MAPPED",
    "ColumnMapping",
    "MappingError",
    "Preview",
    "Format",
    "ReadError",
    "ReadOptions",
    "RowCounter",
    "format_detect",
    "formats_for",
    "hh_transcript_split",
    "preview",
    "read",
]

"""Lead sources: `kind` → a function that yields rows for a LeadSource.

Each function takes the LeadSource and yields LeadRow (or RowProblem for a row it had to reject).
It raises SourceSkipped when it cannot run for a reason the operator can fix (no API key), and
any other exception for a real failure; the cycle reports both and goes on.
"""

import codecs
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from leads.models import LeadSource
from leads.rows import LeadFileError, LeadRow, RowProblem, csv_rows

_CHUNK_BYTES = 1024 * 1024


class SourceSkipped(Exception):
    """The source is configured but cannot run now (e.g. its API key is not set)."""


def _is_utf8(raw: BinaryIO) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while chunk := raw.read(_CHUNK_BYTES):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def lead_text(raw: BinaryIO, name: str = "the file") -> io.TextIOWrapper:
    """A seekable binary file of leads as text: UTF-8 (with or without BOM), UTF-16 (with BOM),
    else Windows-1252 (Excel). The whole file is checked before the encoding is chosen: an
    export's first accented name can sit anywhere, and a wrong guess would put "M\ufffdller"
    into emails."""
    head = raw.read(_CHUNK_BYTES)
    raw.seek(0)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"  # Excel's "Unicode text" export
    elif b"\x00" in head:
        raise LeadFileError(f"{name}: a binary file, not CSV text")
    else:
        encoding = "utf-8-sig" if _is_utf8(raw) else "cp1252"
        raw.seek(0)
    return io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")


@contextmanager
def open_lead_file(path: str | Path):
    """Open a CSV file of leads as text (see lead_text)."""
    path = Path(path)
    if not path.is_file():
        raise LeadFileError(f"{path}: no such file")
    with path.open("rb") as raw, lead_text(raw, str(path)) as stream:
        yield stream


def resolve_path(path: str) -> Path:
    """A source's relative path is relative to the project directory."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else Path(settings.BASE_DIR) / candidate


def csv_source_rows(source: LeadSource) -> Iterator[LeadRow | RowProblem]:
    path = (source.settings or {}).get("path")
    if not path:
        raise LeadFileError('CSV source has no "path" in its settings')
    with open_lead_file(resolve_path(path)) as stream:
        yield from csv_rows(stream)


def apollo_source_rows(source: LeadSource) -> Iterator[LeadRow | RowProblem]:
    if not settings.APOLLO_API_KEY:
        raise SourceSkipped("APOLLO_API_KEY is not set")
    raise NotImplementedError("the Apollo.io client is not part of this version of CAM yet")


SOURCES: dict[str, Callable[[LeadSource], Iterator[LeadRow | RowProblem]]] = {
    LeadSource.Kind.CSV: csv_source_rows,
    LeadSource.Kind.APOLLO: apollo_source_rows,
}


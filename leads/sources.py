"""CSV lead sources: their rows (LeadRow, or RowProblem for a row rejected; a failure raises,
and the cycle reports it), and their files, which live under CAM_IMPORT_DIR and nowhere else.
The Apollo source is leads.apollo_source.
"""

import codecs
import io
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from cam_project.validators import printable
from campaigns.models import Campaign
from leads.models import LeadSource
from leads.rows import LeadFileError, LeadRow, RowProblem, csv_rows

_CHUNK_BYTES = 1024 * 1024


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
def open_lead_file(path: str | Path, *, no_symlink: bool = False):
    """Open a CSV file of leads as text (see lead_text). `no_symlink`: refuse a file that is a
    symbolic link (a lead source's path is resolved first; a link put in its place since is refused)."""
    path = Path(path)
    if not path.is_file():
        raise LeadFileError(f"{path}: no such file")
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_NOFOLLOW if no_symlink else 0))
    except OSError as exc:
        raise LeadFileError(f"{path}: cannot be opened ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as raw, lead_text(raw, str(path)) as stream:
        yield stream


def import_dir() -> Path:
    return Path(settings.CAM_IMPORT_DIR).resolve()


def source_file_path(path) -> Path:
    """The file of a CSV source whose settings say `path`: relative to CAM_IMPORT_DIR (or
    absolute), symbolic links followed, and refused unless it is inside CAM_IMPORT_DIR, so that
    a source never reads a secret key or a system file into leads or error messages."""
    if not path:
        raise LeadFileError('CSV source has no "path" in its settings')
    if not isinstance(path, str) or "\x00" in path:
        raise LeadFileError('the "path" of a CSV source must be text')
    root = import_dir()
    try:
        resolved = (root / path).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise LeadFileError(f"{printable(path)[:200]}: not a usable path ({exc})") from None
    if not resolved.is_relative_to(root):
        raise LeadFileError(f"{printable(path)[:200]} is outside CAM_IMPORT_DIR ({root}): upload the file instead")
    return resolved


def source_file_version(source: LeadSource) -> str:
    """The version of a CSV source's file (size and modification time), "" when it has none."""
    if source.kind != LeadSource.Kind.CSV:
        return ""
    try:
        stat = source_file_path((source.settings or {}).get("path")).stat()
    except (LeadFileError, OSError):
        return ""
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def csv_source_rows(source: LeadSource) -> Iterator[LeadRow | RowProblem]:
    path = source_file_path((source.settings or {}).get("path"))
    with open_lead_file(path, no_symlink=True) as stream:
        yield from csv_rows(stream, echo_header=False)


def lead_file_check(file: BinaryIO, name: str) -> None:
    """Raise LeadFileError if an import would refuse `file` (binary, seekable) as a whole: not
    CSV text, no email column, a header too long. Its rows are checked when they are read."""
    stream = lead_text(file, name)
    try:
        next(csv_rows(stream), None)
    finally:
        stream.detach()
        file.seek(0)


def upload_keep(*, campaign: Campaign, file: BinaryIO, name: str, now: datetime, folder: str = "") -> Path:
    """Keep an uploaded CSV file of leads: checked as an import checks it, saved under
    CAM_IMPORT_DIR/<campaign id>/[folder/] with a name of our own (date, random, the upload's
    name as a slug), never over another file. Returns its path relative to CAM_IMPORT_DIR.
    Raises LeadFileError if the file is not a CSV of leads."""
    original = Path(getattr(file, "name", "") or name or "leads.csv").name
    lead_file_check(file, original)
    relative = Path(str(campaign.pk), folder) / f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}-{slugify(Path(original).stem)[:60] or 'leads'}.csv"
    target = import_dir() / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("xb") as out:
        shutil.copyfileobj(file, out, _CHUNK_BYTES)
    file.seek(0)
    return relative


def source_csv_save(
    *, campaign: Campaign, file: BinaryIO, name: str, now: datetime, source: LeadSource | None = None
) -> LeadSource:
    """Keep an uploaded CSV file as a lead source of the campaign (a new one, or `source`, whose
    file it replaces): kept by upload_keep under CAM_IMPORT_DIR/<campaign id>/, and read again
    by every cycle, which picks up its new rows. Raises LeadFileError if the file is not a CSV
    of leads."""
    relative = upload_keep(campaign=campaign, file=file, name=name, now=now)
    try:
        with transaction.atomic():
            source = source or LeadSource(campaign=campaign)
            source.campaign = campaign
            source.kind = LeadSource.Kind.CSV
            source.name = name
            source.settings = {"path": str(relative)}
            source.last_error = ""
            source.reported_file_version = ""  # a new file: its rejected rows are reported again
            source.save()
    except BaseException:
        (import_dir() / relative).unlink(missing_ok=True)
        raise
    return source


def source_switch(*, source: LeadSource, active: bool) -> LeadSource:
    """Switch a lead source on or off: an off source is not read by cycles (its leads stay)."""
    LeadSource.objects.filter(pk=source.pk).update(active=active)
    source.active = active
    return source

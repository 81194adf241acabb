"""Lead rows as sources give them: header mapping, CSV reading and per-row validation.

Shared by the CSV lead source, `manage.py import_leads` and (later) API uploads, so a row is
accepted or rejected for the same reason everywhere.
"""

import csv
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from email.utils import parseaddr
from typing import TextIO

from email_validator import EmailNotValidError, validate_email

from leads.models import Lead

# The lead fields a source may fill, and the column names people actually use for them.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "e-mail", "email address", "work email", "mail"),
    "first_name": ("first_name", "first name", "firstname", "given name"),
    "last_name": ("last_name", "last name", "lastname", "surname", "family name"),
    "company": ("company", "company name", "organization", "organisation", "account name"),
    "job_title": ("job_title", "job title", "title", "position", "role"),
    "company_size": ("company_size", "company size", "employees", "headcount", "number of employees"),
    "industry": ("industry", "sector", "vertical"),
}
LEAD_FIELDS = tuple(FIELD_ALIASES)
DELIMITERS = (",", ";", "\t", "|")
# Extra (unmapped) fields kept with a lead.
MAX_EXTRA_KEY, MAX_EXTRA_VALUE = 100, 1000


def _header_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", name.strip().lower())


_ALIAS_TO_FIELD = {_header_key(alias): f for f, aliases in FIELD_ALIASES.items() for alias in aliases}
_MAX_LENGTHS = {f: Lead._meta.get_field(f).max_length for f in LEAD_FIELDS}


class LeadFileError(Exception):
    """The file as a whole cannot be read as leads (not CSV, no email column, …)."""


@dataclass
class LeadRow:
    """A validated row: `email` normalised, the mapped fields, and whatever else the source gave."""

    line: int
    email: str
    fields: dict[str, str]
    extra: dict[str, str] = dataclass_field(default_factory=dict)


@dataclass
class RowProblem:
    line: int
    email: str
    reason: str
    # The field at fault, for API clients ("non_field_errors" when it is the row as a whole).
    field: str = dataclass_field(default="email", compare=False)

    def as_dict(self) -> dict:
        return {"line": self.line, "email": self.email, "reason": self.reason}


def email_normalise(raw: str) -> str:
    """Addresses are compared trimmed and lower-case: that is how they are stored and deduped.
    'Jane Doe <Jane@Acme.io>', as mail clients export it, gives 'jane@acme.io'."""
    raw = (raw or "").strip()
    if "<" in raw:
        raw = parseaddr(raw)[1] or raw
    return raw.strip().lower()


def email_syntax_error(email: str) -> str | None:
    """Why `email` is not a syntactically valid address, or None. No network."""
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def lead_row_clean(line: int, values: dict[str, str], extra: dict[str, str] | None = None) -> LeadRow | RowProblem:
    """Check one row's lead fields; the problem names the first thing wrong with it."""
    extra = extra or {}
    if any("\x00" in text for text in (*values.values(), *extra, *extra.values())):
        # A NUL byte is a sign of a broken export, and PostgreSQL cannot store one.
        return RowProblem(line, email_normalise(values.get("email", "")).replace("\x00", ""), "contains a NUL character",
                          "non_field_errors")
    for key, value in extra.items():
        if len(key) > MAX_EXTRA_KEY or len(value) > MAX_EXTRA_VALUE:
            return RowProblem(line, email_normalise(values.get("email", "")),
                              f"extra field {key[:40]!r} is too long ({MAX_EXTRA_KEY} for a name, {MAX_EXTRA_VALUE} for a value)",
                              "extra")
    email = email_normalise(values.get("email", ""))
    if not email:
        return RowProblem(line, "", "missing email")
    problem = email_syntax_error(email)
    if problem:
        return RowProblem(line, email, f"invalid email: {problem}")
    fields = {}
    for name in LEAD_FIELDS:
        if name == "email":
            continue
        value = " ".join((values.get(name) or "").split())
        if len(value) > _MAX_LENGTHS[name]:
            return RowProblem(line, email, f"{name} is longer than {_MAX_LENGTHS[name]} characters", name)
        fields[name] = value
    return LeadRow(line=line, email=email, fields=fields, extra=extra)


def csv_rows(stream: TextIO) -> Iterator[LeadRow | RowProblem]:
    """Stream a CSV file of leads row by row, with the line number each row starts on.

    Raises LeadFileError before the first row if the file is not CSV text or has no email column.
    """
    first = stream.readline()
    # Excel writes ';' where the decimal separator is ',' (most of Europe); some tools use tabs.
    delimiter = max(DELIMITERS, key=first.count) if any(d in first for d in DELIMITERS) else ","
    # strict: an unterminated quote is reported as a bad row, not silently merged into one field.
    reader = csv.reader(itertools.chain([first], stream), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise LeadFileError(f"not a CSV text file: {exc}") from None
    if not header or not any(cell.strip() for cell in header):
        raise LeadFileError("the file is empty: expected a header row with an email column")
    columns = [_ALIAS_TO_FIELD.get(_header_key(name)) for name in header]
    if "email" not in columns:
        shown = ", ".join(repr(h) for h in header[:8])
        raise LeadFileError(f"no email column in the header (found {shown})")

    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # A broken line (NUL byte, oversized field) is one bad row; the reader goes on after it.
            start, line = line, reader.line_num + 1
            yield RowProblem(start, "", f"not readable as CSV: {exc}")
            continue
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header) and not any(cell.strip() for cell in cells[len(header):]):
            cells = cells[: len(header)]  # trailing empty cells, as spreadsheets often save
        if len(cells) != len(header):
            yield RowProblem(start, "", f"has {len(cells)} fields, the header has {len(header)}")
            continue
        values, extra = {}, {}
        for name, column, cell in zip(header, columns, cells):
            if column:
                values.setdefault(column, cell)
            elif name.strip() and cell.strip():
                extra[name.strip()] = cell.strip()
        yield lead_row_clean(start, values, extra)


def mapping_rows(records: Iterable[dict], first_line: int = 1) -> Iterator[LeadRow | RowProblem]:
    """Rows from JSON objects (API payloads, API sources): known fields by alias, anything else,
    and whatever is under "extra", kept as extra. Line numbers count the records from
    `first_line`. A record that is not an object, or gives a lead field as a list or object,
    is a bad row."""
    for line, record in enumerate(records, start=first_line):
        if not isinstance(record, dict):
            yield RowProblem(line, "", "not a JSON object", "non_field_errors")
            continue
        values, extra, problem, field = {}, {}, None, "extra"
        nested = record.get("extra")
        if nested is not None and not isinstance(nested, dict):
            problem = "extra must be an object"
        for key, value in [*((k, v) for k, v in record.items() if k != "extra"), *(nested or {}).items()]:
            column = _ALIAS_TO_FIELD.get(_header_key(str(key))) if key in record and key != "extra" else None
            if isinstance(value, (dict, list)):
                if not problem:
                    problem, field = f"{key} must be text, not {type(value).__name__}", column or "extra"
                continue
            text = "" if value is None else str(value)
            if column:
                values.setdefault(column, text)
            elif text.strip():
                extra[str(key)] = text.strip()
        email = email_normalise(str(values.get("email", "")))
        yield RowProblem(line, email, problem, field) if problem else lead_row_clean(line, values, extra)

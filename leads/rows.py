"""Lead rows as sources give them: header mapping, CSV reading and per-row validation.

Shared by the CSV lead source, `manage.py import_leads` and (later) API uploads, so a row is
accepted or rejected for the same reason everywhere.
"""

import csv
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from email.utils import parseaddr
from typing import TextIO

from email_validator import EmailNotValidError, validate_email

from cam_project.validators import has_control_characters, time_zone_name
from leads.models import Lead

# The lead fields a source may fill, and the column names exports use for them, most specific
# first: when several columns of a file name one field, the one with the earliest alias wins,
# whatever the column order (Outlook's "Title" is Mr/Ms, its "Job Title" the job title).
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    # A work address before a generic one; "E-mail Address" is Outlook's, "Email Address" LinkedIn's.
    "email": ("work email", "business email", "email", "e-mail", "email address", "e-mail address",
              "e-mail 1 - value", "mail"),
    "first_name": ("first_name", "first name", "firstname", "given name"),
    "last_name": ("last_name", "last name", "lastname", "surname", "family name"),
    # Apollo's "Company Name for Emails" is the name cleaned up for use in an email ("Acme", not
    # "Acme Holdings, Inc."), which is what CAM uses the company for.
    "company": ("company name for emails", "company", "company name", "organization name", "organisation name",
                "organization", "organisation", "account name"),
    "job_title": ("job_title", "job title", "position", "role", "title"),
    "company_size": ("company_size", "company size", "number of employees", "# employees", "employees",
                     "employee count", "headcount"),
    "industry": ("industry", "sector", "vertical"),
    "city": ("city", "person city", "town"),
    "country": ("country", "person country"),
    "linkedin_url": ("linkedin_url", "person linkedin url", "linkedin url", "linkedin", "linkedin profile"),
    "website": ("website", "company website", "website url", "company url", "company domain"),
    "timezone": ("timezone", "time zone", "person time zone"),
}
LEAD_FIELDS = tuple(FIELD_ALIASES)
# A whole name, split into first and last name when a row has neither ("Full Name", "Name").
FULL_NAME = "full_name"
FULL_NAME_ALIASES = ("full_name", "full name", "name", "contact name")
DELIMITERS = (",", ";", "\t", "|")
# Extra (unmapped) fields kept with a lead: beyond these a row is kept and the rest is cut.
MAX_EXTRA_FIELDS, MAX_EXTRA_KEY, MAX_EXTRA_VALUE = 50, 100, 1000
# A physical line of a CSV file longer than this is a rejected row (its header: a refused file),
# read in pieces and never held whole; a row whose quoted line breaks make it longer than
# MAX_ROW_LENGTH in all is rejected too.
MAX_LINE_LENGTH = 100_000
MAX_ROW_LENGTH = 1_000_000
# Lines before the header that are skipped (LinkedIn's Connections.csv starts with "Notes:").
MAX_LINES_BEFORE_HEADER = 10
_DRAIN_CHARS = 64 * 1024


def _header_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", name.strip().lower())


_ALIAS_RANK: dict[str, tuple[str, int]] = {
    _header_key(alias): (f, rank)
    for f, aliases in (*FIELD_ALIASES.items(), (FULL_NAME, FULL_NAME_ALIASES))
    for rank, alias in enumerate(aliases)
}
_MAX_LENGTHS = {f: Lead._meta.get_field(f).max_length for f in LEAD_FIELDS}


class LeadFileError(Exception):
    """The file as a whole cannot be read as leads (not CSV, no email column, …)."""


@dataclass
class LeadRow:
    """A validated row: `email` normalised, the mapped fields, and whatever else the source gave
    (`extra`, capped: `cuts` says what was cut)."""

    line: int
    email: str
    fields: dict[str, str]
    extra: dict[str, str] = dataclass_field(default_factory=dict)
    cuts: list[str] = dataclass_field(default_factory=list)


@dataclass
class RowProblem:
    line: int
    email: str
    reason: str
    # The field at fault, for API clients ("non_field_errors" when it is the row as a whole).
    field: str = dataclass_field(default="email", compare=False)

    def as_dict(self) -> dict:
        return {"line": self.line, "email": self.email, "reason": self.reason}


def email_normalise(raw) -> str:
    """The one canonical form of an address, in which it is stored, deduplicated and suppressed:
    trimmed, lower-case, and an internationalised domain in its ASCII (IDNA, "xn--…") form, so
    "ann@Bücher.example" and "ann@xn--bcher-kva.example" are one address. "Jane Doe
    <Jane@Acme.io>", as mail clients export it, gives "jane@acme.io". Never raises: what cannot
    be normalised is returned trimmed and lower-cased, for validation to report."""
    text = raw if isinstance(raw, str) else "" if raw is None else str(raw)
    text = text.strip()
    if "<" in text:
        text = parseaddr(text)[1] or text
    text = text.strip().lower()
    local, at, domain = text.rpartition("@")
    if at and not domain.isascii() and len(text) <= 320:
        try:
            domain = validate_email(text, check_deliverability=False).ascii_domain
        except ValueError:  # EmailNotValidError, or a codec's UnicodeError
            pass
        return f"{local}@{domain}"
    return text


def email_syntax_error(email: str) -> str | None:
    """Why `email` is not a syntactically valid address, or None. No network."""
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def columns_map(names: Sequence[str]) -> list[str | None]:
    """The lead field each column gives: a field name, "" for a column naming a field that a
    more specific column of the same file gives (not used, and not kept as extra either), or
    None for a column kept as extra."""
    found = [_ALIAS_RANK.get(_header_key(str(name))) for name in names]
    best: dict[str, tuple[int, int]] = {}
    for index, hit in enumerate(found):
        if hit and (hit[0] not in best or hit[1] < best[hit[0]][0]):
            best[hit[0]] = (hit[1], index)
    return [None if hit is None else hit[0] if best[hit[0]][1] == index else "" for index, hit in enumerate(found)]


def _name_split(full: str) -> tuple[str, str]:
    """"Ann Lee" → (Ann, Lee); "Lee, Ann" → (Ann, Lee); "Ann" → (Ann, "")."""
    if "," in full:
        last, _, first = full.partition(",")
        return first.strip(), last.strip()
    first, _, last = full.strip().partition(" ")
    return first, last.strip()


def _extra_capped(extra: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """At most MAX_EXTRA_FIELDS extra fields, names and values cut to their maximum length;
    and what was cut, in words."""
    kept, cuts, dropped = {}, [], 0
    for key, value in extra.items():
        if len(kept) >= MAX_EXTRA_FIELDS:
            dropped += 1
            continue
        if len(key) > MAX_EXTRA_KEY:
            cuts.append(f"extra column name {key[:40]!r}… cut to {MAX_EXTRA_KEY} characters")
            key = key[:MAX_EXTRA_KEY]
        if key in kept:  # two names the same once cut
            dropped += 1
            continue
        if len(value) > MAX_EXTRA_VALUE:
            cuts.append(f"extra field {key[:40]!r} cut to {MAX_EXTRA_VALUE:,} characters")
            value = value[:MAX_EXTRA_VALUE]
        kept[key] = value
    if dropped:
        cuts.append(f"{dropped} extra column{'s' if dropped != 1 else ''} not kept (at most {MAX_EXTRA_FIELDS})")
    return kept, cuts


def lead_row_clean(line: int, values: dict[str, str], extra: dict[str, str] | None = None) -> LeadRow | RowProblem:
    """Check one row's lead fields; the problem names the first thing wrong with it.

    An address whose local part is not ASCII is refused (few mail servers accept SMTPUTF8);
    names, company, title, size and industry must not carry control characters (they end up
    in mail headers and on terminals); extra fields beyond their caps are cut, not refused."""
    extra = extra or {}
    if any("\x00" in text for text in (*values.values(), *extra, *extra.values())):
        # A NUL byte is a sign of a broken export, and PostgreSQL cannot store one.
        return RowProblem(line, email_normalise(values.get("email", "")).replace("\x00", ""), "contains a NUL character",
                          "non_field_errors")
    email = email_normalise(values.get("email", ""))
    if not email:
        return RowProblem(line, "", "missing email")
    problem = email_syntax_error(email)
    if problem:
        return RowProblem(line, email, f"invalid email: {problem}")
    if not email.rpartition("@")[0].isascii():
        return RowProblem(line, email, "the part before the @ has non-ASCII characters: most mail servers cannot deliver to it")
    values = dict(values)
    full_name = values.pop(FULL_NAME, "")
    if full_name and not (values.get("first_name") or "").strip() and not (values.get("last_name") or "").strip():
        values["first_name"], values["last_name"] = _name_split(" ".join(full_name.split()))
    fields = {}
    for name in LEAD_FIELDS:
        if name == "email":
            continue
        value = " ".join((values.get(name) or "").split())
        if len(value) > _MAX_LENGTHS[name]:
            return RowProblem(line, email, f"{name} is longer than {_MAX_LENGTHS[name]} characters", name)
        if has_control_characters(value):
            return RowProblem(line, email, f"{name} contains control characters", name)
        fields[name] = value
    extra, cuts = _extra_capped(extra)
    if fields["timezone"] and not time_zone_name(fields["timezone"]):
        # Kept as given, but not used to time emails: a lead is not refused for its time zone.
        extra.setdefault("time zone", fields["timezone"])
        cuts.append(f"time zone {fields['timezone'][:40]!r} is not an IANA name (such as Europe/Paris): not used")
        fields["timezone"] = ""
    elif fields["timezone"]:
        fields["timezone"] = time_zone_name(fields["timezone"])
    return LeadRow(line=line, email=email, fields=fields, extra=extra, cuts=cuts)


class _TooLong(Exception):
    """A line (or a row over several lines) longer than the limits: the reason, in words."""


class _Lines:
    """The physical lines of a text stream opened with newline="", each read with a bounded
    readline: a line longer than MAX_LINE_LENGTH is read on to its end in pieces and dropped,
    and _TooLong is raised in its place (the next call goes on with the following line).
    `count` is the number of lines read so far; `row_chars` counts the characters of the row
    being read (the caller resets it for each row)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.count = 0
        self.row_chars = 0
        self._cut_cr = False  # the last read ended with a "\r" at the limit: a "\n" may follow

    def __iter__(self):
        return self

    def _readline(self, size: int) -> str:
        text = self.stream.readline(size)
        if self._cut_cr and text == "\n":  # the rest of a "\r\n" the limit cut in two
            text = self.stream.readline(size)
        self._cut_cr = len(text) == size and text.endswith("\r")
        return text

    def __next__(self) -> str:
        text = self._readline(MAX_LINE_LENGTH + 1)
        if not text:
            raise StopIteration
        self.count += 1
        if len(text) > MAX_LINE_LENGTH and not text.endswith(("\n", "\r")):
            while (rest := self._readline(_DRAIN_CHARS)) and not rest.endswith(("\n", "\r")):
                pass
            raise _TooLong(f"line longer than {MAX_LINE_LENGTH:,} characters")
        self.row_chars += len(text)
        if self.row_chars > MAX_ROW_LENGTH:
            raise _TooLong(f"row longer than {MAX_ROW_LENGTH:,} characters over several lines (a quote left open?)")
        return text


def _header_find(lines: _Lines, echo_header: bool):
    """The header: the first row with an email column. Up to MAX_LINES_BEFORE_HEADER leading
    rows of one cell at most (blank lines, LinkedIn's "Notes:") are skipped; a row of several
    cells without an email column is a header without one. Returns the reader positioned after
    it (its delimiter is the header's), the header and its columns_map."""
    shown = None
    for _ in range(MAX_LINES_BEFORE_HEADER + 1):
        try:
            first = next(lines, "")
            # Excel writes ';' where the decimal separator is ',' (most of Europe); some tools use tabs.
            delimiter = max(DELIMITERS, key=first.count) if any(d in first for d in DELIMITERS) else ","
            # strict: an unterminated quote is reported as a bad row, not silently merged into one field.
            reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter, strict=True)
            header = next(reader, None)
        except _TooLong:
            raise LeadFileError(f"the header line is longer than {MAX_LINE_LENGTH:,} characters") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise LeadFileError(f"not a CSV text file: {exc}") from None
        if header is None:
            break
        cells = [cell for cell in header if cell.strip()]
        columns = columns_map(header)
        if "email" in columns:
            return reader, header, columns
        if len(cells) > 1:
            shown = header
            break
        shown = shown or (header if cells else None)
    if shown is None:
        raise LeadFileError("the file is empty: expected a header row with an email column")
    if not echo_header:
        raise LeadFileError("no email column in the header")
    raise LeadFileError(f"no email column in the header (found {', '.join(repr(h[:40]) for h in shown[:8])})")


def csv_rows(stream: TextIO, *, echo_header: bool = True) -> Iterator[LeadRow | RowProblem]:
    """Stream a CSV file of leads row by row, with the line number each row starts on, in
    bounded memory (see _Lines).

    Raises LeadFileError before the first row if the file is not CSV text or has no email
    column; its message quotes the header cells found only if `echo_header` (an upload, shown
    to whoever sent it; never for a lead source, whose errors must not echo a file's contents).
    """
    lines = _Lines(stream)
    reader, header, columns = _header_find(lines, echo_header)
    line = lines.count + 1
    while True:
        lines.row_chars = 0
        try:
            cells = next(reader)
        except StopIteration:
            return
        except (csv.Error, _TooLong) as exc:
            # A broken line (NUL byte, oversized field, too long) is one bad row; reading goes on after it.
            start, line = line, lines.count + 1
            reason = str(exc) if isinstance(exc, _TooLong) else f"not readable as CSV: {exc}"
            yield RowProblem(start, "", reason, "non_field_errors")
            continue
        start, line = line, lines.count + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header) and not any(cell.strip() for cell in cells[len(header):]):
            cells = cells[: len(header)]  # trailing empty cells, as spreadsheets often save
        if len(cells) != len(header):
            yield RowProblem(start, "", f"has {len(cells)} fields, the header has {len(header)}", "non_field_errors")
            continue
        values, extra = {}, {}
        for name, column, cell in zip(header, columns, cells):
            if column:
                values[column] = cell
            elif column is None and name.strip() and cell.strip():
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
        top = [(key, value) for key, value in record.items() if key != "extra"]
        columns = columns_map([str(key) for key, _ in top])
        items = [*((k, v, c) for (k, v), c in zip(top, columns)), *((k, v, None) for k, v in (nested or {}).items())]
        for key, value, column in items:
            if isinstance(value, (dict, list)):
                if not problem:
                    named = (_ALIAS_RANK.get(_header_key(str(key))) or ("",))[0] if column is not None else ""
                    problem = f"{key} must be text, not {type(value).__name__}"
                    field = named if named in LEAD_FIELDS else "extra"
                continue
            text = "" if value is None else str(value)
            if column:
                values[column] = text
            elif column is None and text.strip():
                extra[str(key)] = text.strip()
        email = email_normalise(values.get("email", ""))
        yield RowProblem(line, email, problem, field) if problem else lead_row_clean(line, values, extra)

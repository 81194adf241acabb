"""CSV exports, streamed: rows are read from the database in chunks and written as they go, so an
export of a million leads holds a chunk in memory, not the million.

Cells a spreadsheet would run as a formula (text starting with =, +, -, @, a tab or a carriage
return: "=HYPERLINK(…)" in a company name a lead source supplied) are written with a leading
apostrophe, which spreadsheets show as text (OWASP's advice for CSV injection). Numbers are
written as they are.
"""

import csv
from collections.abc import Iterable
from datetime import date, datetime

from django.http import StreamingHttpResponse

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 2000


def cell(value) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(item) for item in value)
    text = str(value).replace("\x00", "")
    return f"'{text}" if text.startswith(FORMULA_START) else text


class _Line:
    """csv.writer's file: hands back each line instead of keeping it."""

    def write(self, line: str) -> str:
        return line


def csv_response(*, filename: str, header: list[str], rows: Iterable[Iterable]) -> StreamingHttpResponse:
    """A streamed CSV download: `rows` is consumed as the client reads (pass a queryset's
    values_list(...).iterator(chunk_size=CHUNK)). UTF-8 with a byte-order mark, so Excel reads
    accented names right."""
    writer = csv.writer(_Line())

    def lines():
        yield "\ufeff" + writer.writerow(header)
        for row in rows:
            yield writer.writerow([cell(value) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"  # personal data: not kept by proxies or the browser's cache
    return response


def queryset_csv(*, queryset, columns: tuple[tuple[str, str], ...], filename: str) -> StreamingHttpResponse:
    """`queryset` streamed as CSV: `columns` are (header, field) pairs, fields as values_list
    takes them (lookups through relations included), read CHUNK rows at a time."""
    rows = queryset.values_list(*(name for _, name in columns)).iterator(chunk_size=CHUNK)
    return csv_response(filename=filename, header=[header for header, _ in columns], rows=rows)

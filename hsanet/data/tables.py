"""Reading a user's CSV/TSV of molecules, and writing exports that are safe to open.

Implements the upload path of the app and the CLI: :func:`read_table` decodes the bytes (UTF-8,
with or without a byte-order mark), detects the delimiter (Python's ``csv.Sniffer`` with a
fallback), finds the SMILES column and enforces size and row limits. Every failure is a
:class:`TableError` (a ``ValueError``) whose message says what was found and what to do.

:func:`safe_csv_cell` and :func:`to_safe_csv` neutralize spreadsheet formula injection ("CSV
injection", OWASP): a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is prefixed with a single quote so that a spreadsheet shows it as text instead of running it.
"""
from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hsanet.featurizers.parse import smiles_problem

DELIMITERS = ",\t;|"
SNIFF_CHARS = 64_000
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".smi")
# SMILES column names by priority (compared lower-cased, with spaces and hyphens as "_").
SMILES_NAMES = (
    ("smiles",),
    ("canonical_smiles", "canonicalsmiles", "isomeric_smiles", "isomericsmiles", "smiles_string",
     "input_smiles", "smi"),
    ("mol", "molecule"),
)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class TableError(ValueError):
    """A user table cannot be read; the message explains why and what to do."""


@dataclass
class UserTable:
    """A parsed user table.

    Attributes
    ----------
    columns : list[str]
        Column names, in file order.
    rows : list[dict[str, str]]
        One dict per data row (missing trailing cells are ``""``).
    smiles_column : str
        The column holding the SMILES.
    delimiter : str
        The detected delimiter.
    has_header : bool
        False when the file was a bare list of SMILES (the column is then named ``"smiles"``).
    """

    columns: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    smiles_column: str = "smiles"
    delimiter: str = ","
    has_header: bool = True

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def smiles(self) -> list[str]:
        """The SMILES cells, stripped of surrounding whitespace."""
        return [row[self.smiles_column].strip() for row in self.rows]


# --- reading ----------------------------------------------------------------------------------

def _read_source(source: str | bytes | os.PathLike, max_bytes: int) -> bytes:
    """The raw bytes of ``source``: bytes as given; a path (or a one-line str naming an existing
    file) is read from disk; any other str is the table text itself."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, os.PathLike) or _names_a_file(source):
        path = Path(source)
        if not path.is_file():
            raise TableError(f"file not found: {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise TableError(_too_big(size, max_bytes))
        data = path.read_bytes()
    elif isinstance(source, str):
        data = source.encode("utf-8")
    else:
        raise TypeError(f"source must be a path, bytes or str, got {type(source).__name__}")
    if len(data) > max_bytes:
        raise TableError(_too_big(len(data), max_bytes))
    return data


def _names_a_file(source: object) -> bool:
    """True for a one-line str that is an existing file or ends like a table file name."""
    if not isinstance(source, str) or not source or "\n" in source:
        return False
    return Path(source).is_file() or source.lower().endswith(TABLE_SUFFIXES)


def _too_big(size: int, max_bytes: int) -> str:
    return (f"the file is {size:,} bytes; the limit is {max_bytes:,} bytes. "
            "Split it into smaller files or keep only the rows you need.")


def _decode(data: bytes) -> str:
    """UTF-8 text of ``data`` (a UTF-8 byte-order mark is dropped)."""
    if data.startswith(b"PK\x03\x04"):
        raise TableError("this looks like an Excel/zip file, not a CSV; "
                         "save it as 'CSV UTF-8' and upload that")
    if data.startswith(b"\x1f\x8b"):
        raise TableError("this is a gzip-compressed file; decompress it and upload the CSV/TSV")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise TableError("the file is UTF-16 text; save it as UTF-8 (e.g. 'CSV UTF-8') and retry")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TableError(
            f"the file is not UTF-8 text (byte 0x{data[err.start]:02x} at position {err.start}); "
            "save it as UTF-8 (e.g. 'CSV UTF-8') and retry"
        ) from None
    if "\x00" in text:
        raise TableError("the file contains NUL bytes: it is a binary file, not a CSV/TSV table")
    return text


def _detect_delimiter(text: str) -> str:
    """The delimiter: ``csv.Sniffer`` restricted to ``, TAB ; |``, checked against the header
    line; otherwise the most frequent of those in the header line, else a comma."""
    header = text.splitlines()[0] if text else ""
    try:
        delimiter = csv.Sniffer().sniff(text[:SNIFF_CHARS], delimiters=DELIMITERS).delimiter
        if delimiter in header:
            return delimiter
    except csv.Error:
        pass
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _normalize(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def find_smiles_column(columns: list[str], smiles_column: str | None = None) -> str:
    """The SMILES column among ``columns``.

    Parameters
    ----------
    columns : list[str]
        Column names.
    smiles_column : str, optional
        An explicit choice: matched exactly, else case-insensitively.

    Raises
    ------
    TableError
        If the explicit column is absent, or no column or several columns look like SMILES.
    """
    if smiles_column is not None:
        if smiles_column in columns:
            return smiles_column
        matches = [c for c in columns if c.strip().lower() == smiles_column.strip().lower()]
        if len(matches) == 1:
            return matches[0]
        raise TableError(f"column {smiles_column!r} not found; the columns are {columns}")
    for names in SMILES_NAMES:
        matches = [c for c in columns if _normalize(c) in names]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise TableError(f"several columns could hold the SMILES: {matches}; choose one "
                             f"(smiles_column=...). The columns are {columns}")
    raise TableError(f"no SMILES column found; the columns are {columns}. Name the column "
                     "'smiles' or choose it explicitly (smiles_column=...)")


def _looks_like_smiles(cell: str) -> bool:
    cell = cell.strip()
    return bool(cell) and " " not in cell and smiles_problem(cell) is None


def _header(records: list[list[str]], delimiter: str) -> tuple[list[str], bool]:
    """Column names and whether the first record is a header (a bare SMILES list has none)."""
    first = [c.strip() for c in records[0]]
    if len(first) == 1 and delimiter not in records[0][0] and _normalize(first[0]) not in {
        n for names in SMILES_NAMES for n in names
    } and _looks_like_smiles(first[0]):
        return ["smiles"], False
    if any(not c for c in first):
        raise TableError(f"the header has an empty column name: {first}")
    duplicates = sorted({c for c in first if first.count(c) > 1})
    if duplicates:
        raise TableError(f"the header repeats column names {duplicates}; rename them")
    return first, True


def _records_to_rows(records: list[list[str]], columns: list[str],
                     first_line: int) -> list[dict[str, str]]:
    rows = []
    for number, record in enumerate(records, start=first_line):
        extra = record[len(columns):]
        if any(cell.strip() for cell in extra):
            raise TableError(f"data row {number} has {len(record)} cells but the header has "
                             f"{len(columns)} columns; check the delimiter and quoting")
        cells = record[:len(columns)] + [""] * (len(columns) - len(record))
        rows.append(dict(zip(columns, cells)))
    return rows


def read_table(source: str | bytes | os.PathLike, max_bytes: int = 5_000_000,
               max_rows: int = 1000, smiles_column: str | None = None) -> UserTable:
    """Read a user's CSV/TSV table of molecules.

    Parameters
    ----------
    source : path-like, bytes or str
        A path; the file's bytes (e.g. an upload); or the table text. A ``str`` without a newline
        that names an existing file is read as a path.
    max_bytes : int
        Largest accepted size in bytes.
    max_rows : int
        Largest accepted number of data rows (blank lines are not counted).
    smiles_column : str, optional
        The SMILES column; by default found by name (``smiles``, ``canonical_smiles``,
        ``isomeric_smiles``, ``mol``, ... case-insensitive). A single-column file without a
        header is read as a list of SMILES.

    Returns
    -------
    UserTable

    Raises
    ------
    TableError
        For undecodable, empty, oversized or malformed tables and a missing or ambiguous SMILES
        column.
    """
    text = _decode(_read_source(source, max_bytes))
    if not text.strip():
        raise TableError("the file is empty")
    delimiter = _detect_delimiter(text)
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
                   if any(cell.strip() for cell in r)]
    except csv.Error as err:
        raise TableError(f"the table cannot be parsed as CSV/TSV: {err}") from None
    columns, has_header = _header(records, delimiter)
    data = records[1:] if has_header else records
    if not data:
        raise TableError(f"the table has a header ({columns}) but no data rows")
    if len(data) > max_rows:
        raise TableError(f"the table has {len(data):,} rows; the limit is {max_rows:,}. "
                         "Split it or keep only the rows you need.")
    column = find_smiles_column(columns, smiles_column)
    rows = _records_to_rows(data, columns, first_line=1)
    return UserTable(columns=columns, rows=rows, smiles_column=column, delimiter=delimiter,
                     has_header=has_header)


# --- writing ----------------------------------------------------------------------------------

def safe_csv_cell(value: object) -> object:
    """Neutralize spreadsheet formula injection in one cell.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
    single quote. Plain numbers (``-1.5``, also as text) and non-text values are returned unchanged;
    ``None`` becomes ``""``.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_PREFIXES) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def to_safe_csv(rows: Iterable[Mapping[str, object]], columns: list[str] | None = None) -> str:
    """CSV text of ``rows`` with every cell (and header) passed through :func:`safe_csv_cell`.

    Parameters
    ----------
    rows : iterable of mappings
        The records; missing keys give empty cells.
    columns : list[str], optional
        Column order; by default the keys in order of first appearance.
    """
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([safe_csv_cell(c) for c in columns])
    for row in rows:
        writer.writerow([safe_csv_cell(row.get(c)) for c in columns])
    return buffer.getvalue()

"""CSV exports that officers download from systems without an API: one file or a folder of `*.csv`.

Columns are mapped by header with the same `fields` table as json_api. Files are re-read only when one
changed (mtime or size), otherwise the previous batch is returned again. A file that is still being
written (changed during the read, modified within `settle`, or ending in a short row) fails the sync
instead of producing a partial listing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import structlog
from pydantic import Field, field_validator

from monitor.configtypes import ConfigPath, Duration
from monitor.dossiers.model import SyncBatch, SyncError, SyncFailure

from .batch import BatchBuilder
from .json_api import _MappedConfig

__all__ = ["CsvSource", "CsvSourceConfig"]

log = structlog.get_logger("tthc.sources")

_SNIFF_DELIMITERS = ",;\t|"


class CsvSourceConfig(_MappedConfig):
    type: Literal["csv"]
    # A .csv file, or a folder whose *.csv files are all read (newest last, so its rows win).
    path: ConfigPath
    # None = sniffed from the header line among , ; tab |.
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    encoding: str = "utf-8-sig"
    # A file modified less than this long ago may still be being written.
    settle: Duration = timedelta(seconds=2)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            "".encode(value)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {value!r}") from exc
        # A BOM is optional in exports: utf-8-sig reads files with and without one.
        return "utf-8-sig" if value.lower().replace("_", "-") in ("utf-8", "utf8") else value


# (path, mtime_ns, size) of every file read: the batch is reused while this is unchanged.
_Signature = tuple[tuple[str, int, int], ...]


class CsvSource:
    """CSV file(s) on disk; there is no modified filter, so every fetch is a full listing."""

    supports_incremental = False

    def __init__(self, config: CsvSourceConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.name = config.name
        self.type = config.type
        self._mapper = config.mapper(dotted=False)
        self._clock = clock
        self._signature: _Signature | None = None
        self._batch: SyncBatch | None = None
        self.reads = 0

    async def fetch(self, *, since: datetime | None) -> SyncBatch:
        # Reading tens of thousands of rows is blocking work: keep it off the event loop.
        return await asyncio.to_thread(self._fetch_blocking)

    async def close(self) -> None:
        self._batch = None
        self._signature = None

    def _files(self) -> list[tuple[Path, int, int]]:
        path = self.config.path
        try:
            if path.is_dir():
                candidates = [
                    entry for entry in path.iterdir() if entry.suffix.lower() == ".csv" and entry.is_file()
                ]
            else:
                candidates = [path]
            stats = [(entry, entry.stat()) for entry in candidates]
        except OSError as exc:
            raise SyncError(
                SyncFailure.ERROR, f"{self.name}: cannot read {path}: {exc.strerror or exc}"
            ) from None
        if not stats:
            raise SyncError(SyncFailure.ERROR, f"{self.name}: no .csv files in {path}")
        stats.sort(key=lambda pair: (pair[1].st_mtime_ns, pair[0].name))
        return [(entry, stat.st_mtime_ns, stat.st_size) for entry, stat in stats]

    def _fetch_blocking(self) -> SyncBatch:
        files = self._files()
        signature: _Signature = tuple((str(path), mtime, size) for path, mtime, size in files)
        if signature == self._signature and self._batch is not None:
            return self._batch
        now = self._clock()
        settle = self.config.settle.total_seconds()
        builder = BatchBuilder(self.name, self._mapper, self._mapper.code_of)
        for path, mtime_ns, size in files:
            if now - mtime_ns / 1e9 < settle:
                raise SyncError(
                    SyncFailure.PARSE, f"{self.name}: {path.name} was modified just now; still being written?"
                )
            self._read_file(path, mtime_ns, size, builder)
        self.reads += 1
        batch = builder.build(full=True, total_reported=builder.records)
        self._signature = signature
        self._batch = batch
        return batch

    def _read_file(self, path: Path, mtime_ns: int, size: int, builder: BatchBuilder) -> None:
        try:
            raw = path.read_bytes()
            after = path.stat()
        except OSError as exc:
            raise SyncError(
                SyncFailure.ERROR, f"{self.name}: cannot read {path.name}: {exc.strerror or exc}"
            ) from None
        if after.st_mtime_ns != mtime_ns or after.st_size != size or len(raw) != size:
            raise SyncError(SyncFailure.PARSE, f"{self.name}: {path.name} changed while being read")
        try:
            content = raw.decode(self.config.encoding)
        except UnicodeDecodeError as exc:
            raise SyncError(
                SyncFailure.PARSE,
                f"{self.name}: {path.name} is not {self.config.encoding} (byte {exc.start})",
            ) from None
        if not content.strip():
            return  # an export with no rows at all
        delimiter = self.config.delimiter or _sniff(content)
        reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
        try:
            header = [column.strip() for column in next(reader)]
            width = len(header)
            for line_number, row in enumerate(reader, start=2):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) < width:
                    # A short row is what a half-written last line looks like.
                    raise SyncError(
                        SyncFailure.PARSE,
                        f"{self.name}: {path.name} line {line_number} has {len(row)} of {width} columns",
                    )
                builder.add(dict(zip(header, row, strict=False)))
        except csv.Error as exc:
            raise SyncError(SyncFailure.PARSE, f"{self.name}: {path.name}: {exc}") from None


def _sniff(content: str) -> str:
    header = content.split("\n", 1)[0]
    counts = {delimiter: header.count(delimiter) for delimiter in _SNIFF_DELIMITERS}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","

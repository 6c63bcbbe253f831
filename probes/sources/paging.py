"""Paging over a listing: the `pagination:` kinds and the walk that reads every page of one.

A walk either yields every page or raises `SyncError`: truncated when the listing comes up short of
its own total, parse when a page has no item list, a next link loops or leaves the listing's origin,
oversized when the server ignores the page size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urljoin

from pydantic import Field

from monitor.configtypes import StrictModel
from monitor.dossiers.model import SyncError, SyncFailure

from .fetcher import HttpFetcher
from .paths import Path, split_path
from .rejections import quoted_value
from .replies import MISSING, loggable_url, origin_of

__all__ = [
    "CursorPaging",
    "NextLinkPaging",
    "NoPaging",
    "OffsetPaging",
    "Page",
    "PageNumberPaging",
    "PagingConfig",
    "StartEndPaging",
    "read_pages",
]


class NoPaging(StrictModel):
    """One request returns everything (small vendor APIs only)."""

    kind: Literal["none"] = "none"


class PageNumberPaging(StrictModel):
    kind: Literal["page"]
    page_param: str = "page"
    size_param: str = "size"
    first_page: Literal[0, 1] = 1


class OffsetPaging(StrictModel):
    kind: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"


class StartEndPaging(StrictModel):
    """Liferay style positions, `end` exclusive. OpenCPS returns everything without `end`."""

    kind: Literal["start_end"]
    start_param: str = "start"
    end_param: str = "end"


class NextLinkPaging(StrictModel):
    kind: Literal["next_link"]
    next_path: str = "next"
    # Sent on the first request only; the next links carry their own.
    size_param: str | None = None


class CursorPaging(StrictModel):
    kind: Literal["cursor"]
    cursor_path: str = "next_cursor"
    cursor_param: str = "cursor"
    size_param: str | None = None


PagingConfig = Annotated[
    NoPaging | PageNumberPaging | OffsetPaging | StartEndPaging | NextLinkPaging | CursorPaging,
    Field(discriminator="kind"),
]


@dataclass(frozen=True, slots=True)
class Page:
    """One decoded page: its items and the source's own total when it reports one."""

    items: list[Any]
    total: int | None


async def read_pages(
    fetcher: HttpFetcher,
    url: str,
    *,
    paging: NoPaging | PageNumberPaging | OffsetPaging | StartEndPaging | NextLinkPaging | CursorPaging,
    page_size: int,
    items_path: Path,
    total_path: Path | None,
    params: Mapping[str, str] | None = None,
    method: str = "GET",
    body: Any = None,
    max_pages: int = 100_000,
) -> AsyncIterator[Page]:
    """Every page of a listing, in order. Raises SyncError(truncated) when the listing comes up short
    of its own total, SyncError(parse) when a page has no item list."""
    base_params = dict(params or {})
    home = origin_of(url)
    paths: dict[str, Path] = {"items": items_path}
    if total_path:
        paths["total"] = total_path
    if isinstance(paging, NextLinkPaging):
        paths["link"] = split_path(paging.next_path)
    elif isinstance(paging, CursorPaging):
        paths["link"] = split_path(paging.cursor_path)
    # Kinds that always ask for page_size records: a longer page means the server ignored that.
    sized = isinstance(paging, PageNumberPaging | OffsetPaging | StartEndPaging) or bool(
        getattr(paging, "size_param", None)
    )
    seen = 0
    total: int | None = None
    offset = 0
    page_number = paging.first_page if isinstance(paging, PageNumberPaging) else 0
    next_url: str | None = url
    cursor: str | None = None
    visited: set[str] = set()
    for page_index in range(max_pages):
        request_url = url
        query = dict(base_params)
        if isinstance(paging, PageNumberPaging):
            query[paging.page_param] = str(page_number)
            query[paging.size_param] = str(page_size)
        elif isinstance(paging, OffsetPaging):
            query[paging.offset_param] = str(offset)
            query[paging.limit_param] = str(page_size)
        elif isinstance(paging, StartEndPaging):
            query[paging.start_param] = str(offset)
            query[paging.end_param] = str(offset + page_size)
        elif isinstance(paging, NextLinkPaging):
            assert next_url is not None
            request_url = next_url
            if page_index > 0:
                query = {}  # the link carries its own query
            elif paging.size_param:
                query[paging.size_param] = str(page_size)
        elif isinstance(paging, CursorPaging):
            if paging.size_param:
                query[paging.size_param] = str(page_size)
            if cursor is not None:
                query[paging.cursor_param] = cursor
        values = await fetcher.get_values(
            request_url, paths, home=home, params=query or None, method=method, body=body
        )
        page = _decode_page(values, items_path, fetcher.name, page_index)
        if sized and len(page.items) > page_size:
            raise SyncError(
                SyncFailure.OVERSIZED,
                f"{fetcher.name}: page {page_index + 1} has {len(page.items)} records, more than page_size"
                f" {page_size}: the server ignores the paging parameters",
            )
        link = values.get("link", MISSING)
        if page.total is not None:
            total = page.total
        seen += len(page.items)
        yield page
        count = len(page.items)
        if isinstance(paging, NoPaging):
            break
        if isinstance(paging, NextLinkPaging):
            if not link or not isinstance(link, str) or link is MISSING:
                break
            next_url = urljoin(request_url, link)
            fetcher.check_origin(next_url, home, f"the next link of page {page_index + 1}")
            if next_url in visited:
                raise SyncError(
                    SyncFailure.PARSE, f"{fetcher.name}: next link loops back to {loggable_url(next_url)}"
                )
            visited.add(next_url)
            continue
        if isinstance(paging, CursorPaging):
            value = None if link is MISSING else link
            if value in (None, "") or count == 0:
                break
            cursor = str(value)
            if cursor in visited:
                raise SyncError(SyncFailure.PARSE, f"{fetcher.name}: cursor {cursor!r} repeats")
            visited.add(cursor)
            continue
        # Numbered kinds: with a total, page until it is reached (a server that caps the page size
        # below ours still gets read whole); without one, a short page is the last.
        if total is not None:
            if seen >= total or count == 0:
                break
        elif count < page_size:
            break
        offset += count
        page_number += 1
    else:
        raise SyncError(SyncFailure.PARSE, f"{fetcher.name}: more than {max_pages} pages, giving up")
    if total is not None and seen < total:
        raise SyncError(
            SyncFailure.TRUNCATED, f"{fetcher.name}: listing returned {seen} items but reports {total}"
        )


def _decode_page(values: Mapping[str, Any], items_path: Path, name: str, index: int) -> Page:
    items = values["items"]
    raw_total = values.get("total", MISSING)
    if items in (MISSING, None) and items_path and raw_total in (0, "0"):
        # OpenCPS and others omit the list entirely when nothing matches; only accept that with total 0.
        return Page([], 0)
    if not isinstance(items, list):
        where = ".".join(map(str, items_path)) or "<root>"
        raise SyncError(SyncFailure.PARSE, f"{name}: page {index + 1} has no item list at {where}")
    total: int | None = None
    if raw_total not in (MISSING, None):
        try:
            total = int(raw_total)
        except (TypeError, ValueError):
            raise SyncError(
                SyncFailure.PARSE, f"{name}: page {index + 1} total {quoted_value(raw_total)} is not a number"
            ) from None
    return Page(items, total)

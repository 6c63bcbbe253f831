"""Hostile-reply guards of the HTTP sources: where a reply may come from, how big it may be, and decoding
a big one without stalling the event loop.

- Origins: next links and redirects are followed only to the listing's own origin (scheme, host, port)
  or to an origin named in `allowed_origins`; credentials go to the listing's origin only, never to
  another one, allowed or not.
- Size: a reply is read in chunks and abandoned as soon as it passes `max_reply_bytes` (a server that
  ignores `end` or streams forever fails the sync instead of exhausting memory).
- Decoding: `json.loads` holds the GIL for its whole run (a worker thread does not help: 0.4 s stall of
  the loop for 31 MB either way), so a reply above `INLINE_DECODE_BYTES` is parsed incrementally with
  ijson's C backend, a slice at a time, yielding to the loop between slices.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import ijson
from yarl import URL

from monitor.dossiers.model import SyncError, SyncFailure, collector_paused

from .paths import Path, get_path

__all__ = [
    "DEFAULT_MAX_REPLY_BYTES",
    "INLINE_DECODE_BYTES",
    "MISSING",
    "ReplyTooLarge",
    "decode_paths",
    "loggable_url",
    "origin_of",
    "read_capped",
]

DEFAULT_MAX_REPLY_BYTES: Final = 32 * 1024 * 1024
# Below this a reply is decoded in one go (about 5 ms); a normal page of 500 records is ~250 KB.
INLINE_DECODE_BYTES: Final = 1024 * 1024
# Each slice is parsed by up to three ijson coroutines: ~3 ms per 32 KiB slice, far below 50 ms.
_SLICE_BYTES: Final = 32 * 1024
_READ_CHUNK: Final = 64 * 1024
MISSING: Final = object()


class ReplyTooLarge(SyncError):
    """A reply passed the source's byte cap."""


def origin_of(url: str | URL) -> str:
    """`https://host:port` of a URL (default ports left out), the unit of trust for credentials."""
    parsed = URL(url) if isinstance(url, str) else url
    if not parsed.is_absolute():
        return ""
    return str(parsed.origin())


def loggable_url(url: str) -> str:
    """The URL as it may appear in errors, logs and the API: no user:password@, no query string (some
    vendors put API keys there), no fragment."""
    try:
        return str(URL(url).with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return url.split("?", 1)[0].rsplit("@", 1)[-1]


async def read_capped(response: aiohttp.ClientResponse, cap: int, source: str, where: str) -> bytearray:
    """The whole body, or ReplyTooLarge the moment it passes `cap` bytes (the connection is dropped).

    Returned as the bytearray it was read into: copying it to bytes would double the peak for a big page.
    """
    too_large = ReplyTooLarge(
        SyncFailure.OVERSIZED,
        f"{source}: {where} reply is larger than max_reply_bytes ({cap} bytes); the sync is abandoned",
    )
    if response.content_length is not None and response.content_length > cap:
        response.close()
        raise too_large
    body = bytearray()
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        body += chunk
        if len(body) > cap:
            # close() drops the connection instead of draining an endless body back into the pool.
            response.close()
            del body
            raise too_large
    return body


def _prefix(path: Path) -> str | None:
    """The ijson prefix of a path, or None when ijson cannot express it (indices, dotted keys)."""
    if any(isinstance(part, int) or "." in part for part in path):
        return None
    return ".".join(path)


async def decode_paths(payload: bytes | bytearray, paths: Mapping[str, Path]) -> dict[str, Any]:
    """The values at `paths` in a JSON document (MISSING where absent). Raises ValueError on bad JSON.

    A small document is decoded at once. A big one is parsed a slice at a time by one ijson coroutine per
    path, each building only its own value, with an `await` between slices so probes and /healthz run.
    """
    prefixes = {name: _prefix(path) for name, path in paths.items()}
    if len(payload) <= INLINE_DECODE_BYTES or any(prefix is None for prefix in prefixes.values()):
        document = json.loads(payload)
        return {name: get_path(document, path, MISSING) for name, path in paths.items()}
    sinks = {name: ijson.sendable_list() for name in paths}
    parsers = {
        name: ijson.items_coro(sinks[name], prefix or "", use_float=True) for name, prefix in prefixes.items()
    }
    view = memoryview(payload)
    try:
        for start in range(0, len(payload), _SLICE_BYTES):
            piece = bytes(view[start : start + _SLICE_BYTES])
            with collector_paused():
                for parser in parsers.values():
                    parser.send(piece)
            await asyncio.sleep(0)
        for parser in parsers.values():
            parser.close()
    except ijson.JSONError as exc:
        raise ValueError(str(exc)[:200]) from None
    finally:
        view.release()
    return {name: sink[0] if sink else MISSING for name, sink in sinks.items()}

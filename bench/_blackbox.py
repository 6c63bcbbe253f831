"""The processes of bench/probe_load.py that are not ours, each run as `python bench/_blackbox.py ROLE ...`.

- `page`: an aiohttp server for the Vietnamese test page (used when nginx is not installed).
- `drive`: drives blackbox_exporter's /probe at N targets / interval probes per second over keep-alive
  connections and reads blackbox_exporter's CPU time from /proc, so the driver's own CPU stays out.
- `scrape`: plays Prometheus against our /metrics, so the scrape client's CPU stays out of ours.

Each role prints one JSON object on stdout when it is done. The parent also imports the helpers
below (config writing, process start with a parent-death signal).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "BLACKBOX_BINARY",
    "KEYWORD",
    "MODULE",
    "free_port",
    "page_html",
    "proc_cpu_seconds",
    "proc_rss_bytes",
    "spawn",
    "wait_http",
    "write_blackbox_config",
]

BLACKBOX_BINARY = "/usr/bin/prometheus-blackbox-exporter"
MODULE = "http_keyword"
# The keyword both sides look for; a maintenance page served with 200 would lack it.
KEYWORD = "Bộ phận một cửa"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_PROCEDURES = (
    "Cấp giấy chứng nhận quyền sử dụng đất lần đầu",
    "Đăng ký khai sinh",
    "Cấp giấy phép xây dựng nhà ở riêng lẻ",
    "Chứng thực bản sao từ bản chính",
    "Đăng ký thành lập hộ kinh doanh",
    "Cấp phiếu lý lịch tư pháp",
    "Thủ tục chuyển trường đối với học sinh trung học cơ sở",
    "Đăng ký kết hôn",
)


def page_html(size: int = 5000) -> bytes:
    """A one-stop office portal page of about `size` bytes (UTF-8), with KEYWORD near the end."""
    head = (
        '<!doctype html>\n<html lang="vi"><head><meta charset="utf-8">'
        "<title>Cổng dịch vụ công tỉnh Hậu Giang</title></head><body>\n"
        "<h1>Hệ thống thông tin giải quyết thủ tục hành chính</h1>\n<table>\n"
    )
    # The keyword comes last, so a keyword check has to scan the whole body, as in real pages.
    tail = f"</table>\n<footer>{KEYWORD} - UBND xã Long Khánh, tỉnh Đồng Tháp</footer></body></html>\n"
    rows = []
    used = len(head.encode()) + len(tail.encode())
    index = 0
    while used < size:
        procedure = _PROCEDURES[index % len(_PROCEDURES)]
        row = (
            f"<tr><td>H23.{index:04d}</td><td>{procedure}</td>"
            "<td>Sở Giáo dục và Đào tạo</td><td>Đúng hạn</td></tr>\n"
        )
        rows.append(row)
        used += len(row.encode())
        index += 1
    return (head + "".join(rows) + tail).encode()


def write_blackbox_config(directory: Path) -> Path:
    """A blackbox_exporter module doing what our target does: GET, 2xx, keyword in the body."""
    path = directory / "blackbox.yml"
    # JSON is YAML; json.dumps keeps the Vietnamese keyword safely quoted.
    module = {
        "prober": "http",
        "timeout": "10s",
        "http": {
            "method": "GET",
            "preferred_ip_protocol": "ip4",
            "fail_if_body_not_matches_regexp": [KEYWORD],
        },
    }
    path.write_text(json.dumps({"modules": {MODULE: module}}, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the child gets SIGTERM if the bench dies, even by SIGKILL, so nothing lingers.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)


def spawn(argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a child process that dies with us."""
    return subprocess.Popen(list(argv), preexec_fn=_die_with_parent, **kwargs)  # type: ignore[call-overload]


def wait_http(port: int, path: str = "/", timeout: float = 15.0) -> None:
    """Block until 127.0.0.1:port answers an HTTP request (any status)."""
    deadline = time.monotonic() + timeout
    request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode()
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                if sock.recv(16).startswith(b"HTTP/"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")
        time.sleep(0.05)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as file:
        # The command name may hold spaces; the fields after its closing parenthesis are fixed.
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def proc_rss_bytes(pid: int | str = "self", field: str = "VmRSS") -> int:
    """VmRSS (or VmHWM, the peak) of a process, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def spawn_page_server(port: int, page_bytes: int = 5000) -> subprocess.Popen[bytes]:
    """The page server role (below) in a child process that dies with us, answering on 127.0.0.1:port."""
    return spawn(
        [sys.executable, __file__, "page", "--port", str(port), "--page-bytes", str(page_bytes)],
        stderr=subprocess.DEVNULL,
    )


def parse_metrics(text: str, names: tuple[str, ...] = ("",)) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text format → {name: [(labels, value)]} (enough for counters, gauges and histograms),
    for the samples whose name starts with one of `names` (all of them by default)."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or not line.startswith(names):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: dict[str, str] = {}
        if rest:
            for part in rest.rstrip("}").split('",'):
                key, _, raw = part.partition("=")
                if key:
                    labels[key.strip()] = raw.strip('"')
        samples.setdefault(name, []).append((labels, float(value)))
    return samples


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --- roles ------------------------------------------------------------------------------------------


def _serve_page(args: argparse.Namespace) -> None:
    from aiohttp import web

    body = page_html(args.page_bytes)

    async def page(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    # access_log=None: logging every request would cost more than serving it.
    web.run_app(
        app, host="127.0.0.1", port=args.port, access_log=None, print=None, reuse_port=True, backlog=4096
    )


async def _drive(args: argparse.Namespace) -> dict[str, object]:
    import aiohttp

    rate = args.targets / args.interval
    urls = [
        f"{args.blackbox}/probe?module={MODULE}&target=http://127.0.0.1:{args.page_port}/p/{index}"
        for index in range(args.targets)
    ]
    busy = bytearray(args.targets)  # a target still in flight is skipped, as our scheduler does
    semaphore = asyncio.Semaphore(args.concurrency)
    loop = asyncio.get_running_loop()
    started = loop.time()
    window_start = started + args.warmup
    window_end = window_start + args.duration
    counts = {"probes": 0, "success": 0, "failure": 0, "skipped": 0, "errors": 0}
    durations: list[float] = []
    lateness: list[float] = []
    tasks: set[asyncio.Task[None]] = set()

    async def probe(index: int, due: float) -> None:
        try:
            async with semaphore:
                begun = loop.time()
                if window_start <= begun < window_end:
                    lateness.append(begun - due)
                try:
                    async with session.get(urls[index]) as response:
                        body = await response.read()
                except aiohttp.ClientError:
                    ok = None
                else:
                    ok = response.status == 200 and b"\nprobe_success 1\n" in body
                finished = loop.time()
        finally:
            busy[index] = 0
        if window_start <= finished < window_end:
            counts["probes"] += 1
            durations.append(finished - begun)
            if ok is None:
                counts["errors"] += 1
            else:
                counts["success" if ok else "failure"] += 1

    cpu_start: float | None = None
    cpu_end = 0.0
    rss_peak = 0
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        launched = 0
        next_rss = started
        while True:
            now = loop.time()
            if cpu_start is None and now >= window_start:
                cpu_start = proc_cpu_seconds(args.pid)
            if now >= window_end:
                cpu_end = proc_cpu_seconds(args.pid)
                break
            if now >= next_rss:
                rss_peak = max(rss_peak, proc_rss_bytes(args.pid))
                next_rss = now + 0.5
            # Targets are spread evenly over the interval (our side uses random start jitter).
            due_total = int((now - started) * rate) + 1
            while launched < due_total:
                index = launched % args.targets
                due = started + launched / rate
                launched += 1
                if busy[index]:
                    counts["skipped"] += 1
                    continue
                busy[index] = 1
                task = asyncio.create_task(probe(index, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.002)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "probes": counts["probes"],
        "success": counts["success"],
        "failure": counts["failure"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
        "window": args.duration,
        "cpu_seconds": cpu_end - (cpu_start or 0.0),
        "rss_end": proc_rss_bytes(args.pid),
        "rss_peak": max(rss_peak, proc_rss_bytes(args.pid)),
        "duration_p50": _percentile(durations, 0.50),
        "duration_p99": _percentile(durations, 0.99),
        "driver_lateness_p99": _percentile(lateness, 0.99),
        "driver_cpu_seconds": time.process_time(),
    }


async def _scrape(args: argparse.Namespace) -> dict[str, object]:
    import aiohttp

    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.seconds
    durations: list[float] = []
    size = 0
    failures = 0
    async with aiohttp.ClientSession() as session:
        next_at = loop.time() + args.offset
        while next_at < deadline:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            begun = loop.time()
            try:
                async with session.get(args.url) as response:
                    body = await response.read()
                    size = len(body)
                    failures += response.status != 200
            except aiohttp.ClientError:
                failures += 1
            durations.append(loop.time() - begun)
            next_at += args.interval
    return {
        "scrapes": len(durations),
        "failures": failures,
        "bytes": size,
        "duration_max": max(durations, default=math.nan),
        "duration_p50": _percentile(durations, 0.5),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    page = roles.add_parser("page", help="serve the test page on 127.0.0.1")
    page.add_argument("--port", type=int, required=True)
    page.add_argument("--page-bytes", type=int, default=5000)
    drive = roles.add_parser("drive", help="drive blackbox_exporter at targets/interval probes per second")
    drive.add_argument("--blackbox", required=True, help="base URL, e.g. http://127.0.0.1:9115")
    drive.add_argument("--pid", type=int, required=True, help="blackbox_exporter's pid, for its CPU time")
    drive.add_argument("--page-port", type=int, required=True)
    drive.add_argument("--targets", type=int, required=True)
    drive.add_argument("--interval", type=float, required=True)
    drive.add_argument("--warmup", type=float, required=True)
    drive.add_argument("--duration", type=float, required=True)
    drive.add_argument("--concurrency", type=int, default=256)
    scrape = roles.add_parser("scrape", help="GET a /metrics URL every interval")
    scrape.add_argument("--url", required=True)
    scrape.add_argument("--interval", type=float, required=True)
    scrape.add_argument("--offset", type=float, default=0.0, help="seconds before the first scrape")
    scrape.add_argument("--seconds", type=float, required=True, help="stop after this long")
    args = parser.parse_args(argv)
    if args.role == "page":
        _serve_page(args)
        return
    result = asyncio.run(_drive(args) if args.role == "drive" else _scrape(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

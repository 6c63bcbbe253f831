"""Probe benchmark: the real Daemon against N local HTTP targets, side by side with blackbox_exporter.

    python bench/probe_load.py --targets 1000 --interval 10 --duration 60
    python bench/probe_load.py --targets 10000 --interval 10 --duration 60
    python bench/probe_load.py --targets 1000 --profile /tmp/ours.txt   # needs `pip install py-spy`

One page server (nginx when installed, else aiohttp; its own process) serves a ~5 KB Vietnamese page at
/p/<i> on 127.0.0.1. Then, one after the other (`--together` runs them at once):

1. ours: `monitor.daemon.Daemon` in this process with N http targets (keyword check, default
   scheduler and store settings, start jitter on), its /metrics scraped by a separate process every
   `--scrape-interval`. After a warm-up of one interval, a window of `--duration` seconds measures
   probes/s, CPU seconds per probe (this process, all threads), lateness from the scheduler's own
   observations, GC pauses, RSS and store growth.
2. blackbox_exporter with an http module and `fail_if_body_not_matches_regexp`, driven at the same
   N/interval probes per second by a separate aiohttp process; its CPU comes from /proc/<pid>/stat.

Everything talks to 127.0.0.1 only, stops by itself, and takes its child processes down with it.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import json
import math
import os
import platform
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import _blackbox  # the sibling module: run as a script, this folder is first on sys.path

from monitor.config import Config
from monitor.daemon import Daemon
from monitor.logging import configure_logging

KEYWORD = _blackbox.KEYWORD
free_port = _blackbox.free_port
proc_rss_bytes = _blackbox.proc_rss_bytes
spawn = _blackbox.spawn
wait_http = _blackbox.wait_http

HELPER = str(Path(_blackbox.__file__).resolve())
TABLES = ("probe_results", "rollup_minute", "rollup_hour", "targets", "incidents")
# Goals from issue 2, for a 2-core machine.
RATIO_GOAL = 0.75
STORE_DAY_GOAL = 100e6


def lateness_goal(targets: int) -> float:
    return 0.020 if targets <= 1000 else 0.050


# --- the page server ------------------------------------------------------------------------------


_NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    types {{ text/html html; }}
    charset utf-8;
    server {{
        listen 127.0.0.1:{port} backlog=8192;
        root {dir}/www;
        location / {{ try_files /index.html =404; }}
    }}
}}
"""


def start_page_server(kind: str, workdir: Path, page_bytes: int) -> tuple[subprocess.Popen[bytes], int, str]:
    """Start the page server in its own process; return it, its port and a description."""
    port = free_port()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if kind == "nginx" and nginx is None:
        raise SystemExit("nginx is not installed (apt-get install nginx-light); or --page-server aiohttp")
    if kind in ("auto", "nginx") and nginx is not None:
        directory = workdir / "nginx"
        (directory / "www").mkdir(parents=True)
        (directory / "tmp").mkdir()
        (directory / "www" / "index.html").write_bytes(_blackbox.page_html(page_bytes))
        # nginx workers run as nobody when started by root: they must be able to read the page.
        for path in (workdir, directory, directory / "www"):
            path.chmod(0o755)
        (directory / "www" / "index.html").chmod(0o644)
        conf = directory / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(dir=directory, port=port), encoding="utf-8")
        version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        process = spawn([nginx, "-c", str(conf)], stderr=subprocess.DEVNULL)
        description = version.removeprefix("nginx version: ")
    else:
        process = spawn(
            [sys.executable, HELPER, "page", "--port", str(port), "--page-bytes", str(page_bytes)],
            stderr=subprocess.DEVNULL,
        )
        description = "aiohttp (one process)"
    wait_http(port)
    return process, port, description


# --- what we measure on our side ------------------------------------------------------------------


class GcWatch:
    """Pauses of the cyclic garbage collector (gc.callbacks), on the loop's clock."""

    def __init__(self) -> None:
        self.starts = array("d")
        self.ends = array("d")
        self.generations = array("b")
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        now = time.monotonic()
        if phase == "start":
            self._began = now
        else:
            self.starts.append(self._began)
            self.ends.append(now)
            self.generations.append(info["generation"])

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def overlapping(self, low: float, high: float) -> bool:
        """Whether any pause overlaps [low, high] (pauses are in time order and never overlap)."""
        index = bisect.bisect_left(self.ends, low)
        return index < len(self.starts) and self.starts[index] <= high


class LatenessRecorder:
    """Wraps the scheduler's observe_lateness: keeps every observation made inside the window."""

    def __init__(self, wrapped: Callable[[float], None]) -> None:
        self._wrapped = wrapped
        self.recording = False
        self.values = array("d")
        self.fired_at = array("d")

    def __call__(self, seconds: float) -> None:
        self._wrapped(seconds)
        if self.recording:
            self.values.append(seconds)
            # asyncio's loop clock is time.monotonic, like GcWatch's.
            self.fired_at.append(time.monotonic())


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    logical_bytes: int  # pages in use, WAL included (what the database holds, not the file's slack)
    file_bytes: int  # the .db and -wal files
    rows: dict[str, int]
    table_bytes: dict[str, int] = field(default_factory=dict)  # table + its indexes, from dbstat


def store_snapshot(path: Path, *, with_sizes: bool = False) -> StoreSnapshot:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        rows = {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}
        sizes: dict[str, int] = {}
        if with_sizes:
            owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE tbl_name IS NOT NULL"))
            for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
                table = owner.get(name, name)
                sizes[table] = sizes.get(table, 0) + size
    finally:
        conn.close()
    files = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    return StoreSnapshot((pages - free) * page_size, files, rows, sizes)


@dataclass(slots=True)
class Ours:
    wanted_rate: float
    probes: int = 0
    failures: int = 0
    window: float = 0.0
    cpu_seconds: float = 0.0
    cpu_user: float = 0.0
    cpu_system: float = 0.0
    lateness_p50: float = math.nan
    lateness_p99: float = math.nan
    lateness_max: float = math.nan
    lateness_samples: int = 0
    late_5ms: int = 0
    late_5ms_in_gc: int = 0
    gc_collections: dict[int, int] = field(default_factory=dict)
    gc_total: float = 0.0
    gc_max: float = 0.0
    gc_max_generation: int = -1
    rss_end: int = 0
    rss_window_peak: int = 0
    rss_lifetime_peak: int = 0
    store_delta: int = 0
    store_file_delta: int = 0
    store_end: int = 0
    rows_added: dict[str, int] = field(default_factory=dict)
    table_bytes: dict[str, int] = field(default_factory=dict)
    pending_writes_end: int = 0
    scrape: dict[str, object] = field(default_factory=dict)
    profile: str = ""

    @property
    def rate(self) -> float:
        return self.probes / self.window if self.window else 0.0

    @property
    def cpu_per_probe(self) -> float:
        return self.cpu_seconds / self.probes if self.probes else math.nan


def _targets(count: int, port: int, interval: int) -> list[dict[str, object]]:
    return [
        {
            "type": "http",
            "name": f"page-{index:05d}",
            "url": f"http://127.0.0.1:{port}/p/{index}",
            "interval": f"{interval}s",
            "timeout": f"{min(interval, 10)}s",
            "expect": {"body_contains": [KEYWORD]},
        }
        for index in range(count)
    ]


def _quantile(values: array[float] | list[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _probe_counts(daemon: Daemon) -> tuple[int, int]:
    total = failures = 0
    for tracker in daemon.scheduler.trackers.values():
        counts = tracker.probes_by_result
        total += counts["success"] + counts["degraded"] + counts["failure"]
        failures += counts["failure"]
    return total, failures


async def run_ours(args: argparse.Namespace, page_port: int, workdir: Path) -> Ours:
    store_path = workdir / "store.db"
    config = Config.model_validate(
        {
            "listen": "127.0.0.1:0",
            "store": {"path": str(store_path)},
            "targets": _targets(args.targets, page_port, args.interval),
        }
    )
    daemon = Daemon(config)
    # The scheduler was handed metrics.probe_lateness.observe; keep feeding it and record every value too.
    recorder = LatenessRecorder(daemon.scheduler._observe_lateness)
    daemon.scheduler._observe_lateness = recorder
    result = Ours(wanted_rate=args.targets / args.interval)
    scraper: subprocess.Popen[bytes] | None = None
    profiler: subprocess.Popen[bytes] | None = None
    await daemon.start()
    if args.gc_threshold:
        gc.set_threshold(*(int(part) for part in args.gc_threshold.split(",")))
    if args.gc_freeze:
        # What a daemon could do once started: move everything alive now (config, targets, trackers,
        # tasks) out of the collector's sight, so a full collection no longer walks it.
        gc.collect()
        gc.freeze()
    try:
        if args.scrape_interval > 0:
            scraper = spawn(
                [
                    sys.executable, HELPER, "scrape",
                    "--url", f"{daemon.base_url}/metrics",
                    "--interval", str(args.scrape_interval),
                    "--offset", str(args.warmup + 0.5),
                    "--seconds", str(args.warmup + args.duration),
                ],
                stdout=subprocess.PIPE,
            )  # fmt: skip
        await asyncio.sleep(args.warmup)

        # Start from an empty buffer so the window's rows are the window's results.
        await daemon.store.flush()
        before = await asyncio.to_thread(store_snapshot, store_path)
        if args.profile:
            profiler = _start_profiler(args)
        watch = GcWatch()
        with watch:
            recorder.recording = True
            rss_peak = 0
            usage0 = resource.getrusage(resource.RUSAGE_SELF)
            cpu0 = time.process_time()
            probes0, failures0 = _probe_counts(daemon)
            began = time.monotonic()
            deadline = began + args.duration
            while (now := time.monotonic()) < deadline:
                rss_peak = max(rss_peak, proc_rss_bytes())
                await asyncio.sleep(min(0.5, deadline - now))
            cpu1 = time.process_time()
            usage1 = resource.getrusage(resource.RUSAGE_SELF)
            probes1, failures1 = _probe_counts(daemon)
            result.window = time.monotonic() - began
            recorder.recording = False
        result.pending_writes_end = daemon.store.pending_writes
        # Let the last batch reach the file so both snapshots see whole flushes.
        await daemon.store.flush()
        after = await asyncio.to_thread(store_snapshot, store_path, with_sizes=True)
    finally:
        await daemon.stop()
        if profiler is not None:
            result.profile = _finish_profiler(profiler, args)
        if scraper is not None:
            out, _ = await asyncio.to_thread(scraper.communicate, timeout=60)
            result.scrape = json.loads(out or b"{}")

    result.probes = probes1 - probes0
    result.failures = failures1 - failures0
    result.cpu_seconds = cpu1 - cpu0
    result.cpu_user = usage1.ru_utime - usage0.ru_utime
    result.cpu_system = usage1.ru_stime - usage0.ru_stime
    values = recorder.values
    result.lateness_samples = len(values)
    result.lateness_p50 = _quantile(values, 0.50)
    result.lateness_p99 = _quantile(values, 0.99)
    result.lateness_max = max(values, default=math.nan)
    for seconds, fired in zip(values, recorder.fired_at, strict=True):
        if seconds >= 0.005:
            result.late_5ms += 1
            result.late_5ms_in_gc += watch.overlapping(fired - seconds, fired)
    pauses = [end - start for start, end in zip(watch.starts, watch.ends, strict=True)]
    result.gc_collections = dict(sorted(Counter(watch.generations).items()))
    result.gc_total = sum(pauses)
    if pauses:
        longest = max(range(len(pauses)), key=pauses.__getitem__)
        result.gc_max, result.gc_max_generation = pauses[longest], watch.generations[longest]
    result.rss_end = proc_rss_bytes()
    result.rss_window_peak = max(rss_peak, result.rss_end)
    result.rss_lifetime_peak = proc_rss_bytes(field="VmHWM")
    result.store_delta = after.logical_bytes - before.logical_bytes
    result.store_file_delta = after.file_bytes - before.file_bytes
    result.store_end = after.logical_bytes
    result.rows_added = {table: after.rows[table] - before.rows[table] for table in TABLES}
    result.table_bytes = dict(after.table_bytes)
    return result


# --- the profiler -----------------------------------------------------------------------------------


def _start_profiler(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return spawn(
        [
            py_spy, "record", "--pid", str(os.getpid()), "--duration", str(int(args.duration)),
            "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(args.profile),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _finish_profiler(profiler: subprocess.Popen[bytes], args: argparse.Namespace) -> str:
    try:
        profiler.wait(timeout=30)
    except subprocess.TimeoutExpired:
        profiler.terminate()
        profiler.wait()
    path = Path(args.profile)
    if not path.exists():
        return "py-spy wrote no profile"
    return summarise_profile(path.read_text(encoding="utf-8"))


def summarise_profile(collapsed: str, top: int = 25) -> str:
    """Top functions by own samples and by total samples, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_short_frame(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return "no samples"
    lines = [f"{samples} samples; own time:"]
    lines += [f"  {count / samples:6.1%}  {frame}" for frame, count in own.most_common(top)]
    lines.append("total time (own + callees):")
    lines += [f"  {count / samples:6.1%}  {frame}" for frame, count in total.most_common(top)]
    return "\n".join(lines)


def _short_frame(frame: str) -> str:
    # "function (/path/to/module.py:123)" -> "function (module.py)": lines would split one function.
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else file
    return f"{name} ({short})"


# --- blackbox_exporter ------------------------------------------------------------------------------


def start_blackbox(workdir: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    binary = _blackbox.BLACKBOX_BINARY
    if not Path(binary).exists():
        raise SystemExit(f"{binary} not found: apt-get install prometheus-blackbox-exporter")
    config = _blackbox.write_blackbox_config(workdir)
    port = free_port()
    log = (workdir / "blackbox.log").open("wb")
    process = spawn(
        [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    wait_http(port, "/-/healthy")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True)
    first = (version.stdout or version.stderr).splitlines()[0]
    return process, port, first.replace("blackbox_exporter, version ", "")


def start_driver(args: argparse.Namespace, blackbox: subprocess.Popen[bytes], port: int, page_port: int):
    return spawn(
        [
            sys.executable, HELPER, "drive",
            "--blackbox", f"http://127.0.0.1:{port}", "--pid", str(blackbox.pid),
            "--page-port", str(page_port), "--targets", str(args.targets),
            "--interval", str(args.interval), "--warmup", str(args.warmup),
            "--duration", str(args.duration),
        ],
        stdout=subprocess.PIPE,
    )  # fmt: skip


async def finish_driver(driver: subprocess.Popen[bytes], args: argparse.Namespace) -> dict[str, float]:
    out, _ = await asyncio.to_thread(driver.communicate, timeout=args.warmup + args.duration + 120)
    if driver.returncode != 0:
        raise RuntimeError(f"the blackbox driver failed with exit code {driver.returncode}")
    return json.loads(out)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the run ----------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    page, page_port, page_kind = start_page_server(args.page_server, workdir, args.page_bytes)
    blackbox = driver = None
    try:
        bb: dict[str, float] = {}
        blackbox_version = ""
        if args.together:
            blackbox, bb_port, blackbox_version = start_blackbox(workdir)
            driver = start_driver(args, blackbox, bb_port, page_port)
            ours = await run_ours(args, page_port, workdir)
            bb = await finish_driver(driver, args)
        else:
            ours = await run_ours(args, page_port, workdir)
            if not args.skip_blackbox:
                blackbox, bb_port, blackbox_version = start_blackbox(workdir)
                driver = start_driver(args, blackbox, bb_port, page_port)
                bb = await finish_driver(driver, args)
    finally:
        for process in (driver, blackbox, page):
            _stop(process)
    return {"page_server": page_kind, "blackbox_version": blackbox_version, "ours": ours, "blackbox": bb}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def _mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB" if abs(size) >= 1e6 else f"{size / 1e3:.0f} kB"


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(args: argparse.Namespace, outcome: dict[str, object]) -> str:
    ours: Ours = outcome["ours"]  # type: ignore[assignment]
    bb: dict[str, float] = outcome["blackbox"]  # type: ignore[assignment]
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    goal = lateness_goal(args.targets)
    per_day = 86400 / ours.window if ours.window else math.nan
    lines = [
        f"# {args.targets:,} HTTP targets every {args.interval} s = {ours.wanted_rate:,.1f} probes/s wanted;"
        f" {ours.window:.0f} s window after {args.warmup:g} s warm-up;"
        f" {'ours and blackbox_exporter at once' if args.together else 'ours, then blackbox_exporter'}",
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs ({cpu_model}), Python"
        f" {platform.python_version()}, SQLite {sqlite3.sqlite_version},"
        f" page server {outcome['page_server']}, blackbox_exporter {outcome['blackbox_version'] or '-'}",
        "",
        "ours (monitor.daemon.Daemon, this process)"
        + ("; experiment: gc.freeze() after start" if args.gc_freeze else "")
        + (f"; experiment: gc threshold {args.gc_threshold}" if args.gc_threshold else "")
        + ("; experiment: uvloop" if args.uvloop else ""),
        f"  probes/s         {ours.rate:,.1f} of {ours.wanted_rate:,.1f} wanted"
        f" ({ours.probes:,} probes, {ours.failures:,} failed)",
        f"  CPU per probe    {_us(ours.cpu_per_probe)} (user {_us(ours.cpu_user / max(ours.probes, 1))},"
        f" system {_us(ours.cpu_system / max(ours.probes, 1))};"
        f" {ours.cpu_seconds / ours.window:.0%} of a core)",
        f"  lateness         p50 {_ms(ours.lateness_p50)}, p99 {_ms(ours.lateness_p99)},"
        f" max {_ms(ours.lateness_max)} ({ours.lateness_samples:,} starts)"
        f"  [goal p99 < {goal * 1000:.0f} ms: {_verdict(ours.lateness_p99 < goal)}]",
        f"  GC               {sum(ours.gc_collections.values())} collections {ours.gc_collections},"
        f" {_ms(ours.gc_total)} in all, longest {_ms(ours.gc_max)} (generation {ours.gc_max_generation});"
        f" {ours.late_5ms_in_gc} of {ours.late_5ms} starts late by >= 5 ms overlapped a GC pause",
        f"  RSS              end {_mb(ours.rss_end)}, peak in window {_mb(ours.rss_window_peak)},"
        f" process peak {_mb(ours.rss_lifetime_peak)}",
        f"  store            +{_mb(ours.store_delta)} in use (+{_mb(ours.store_file_delta)} on disk) in the"
        f" window = {_mb(ours.store_delta * per_day)}/day extrapolated"
        f"  [goal < 100 MB/day: {_verdict(ours.store_delta * per_day < STORE_DAY_GOAL)}];"
        f" {ours.pending_writes_end} results still buffered at the end",
        "  store rows added "
        + (", ".join(f"{table} {count:,}" for table, count in ours.rows_added.items() if count) or "none"),
    ]
    if ours.table_bytes:
        lines.append(
            "  store at the end "
            + ", ".join(
                f"{table} {_mb(size)}"
                for table, size in ours.table_bytes.items()
                if size and table.startswith(("probe_", "rollup_", "targets", "incidents"))
            )
            + " (table + indexes, dbstat); a 60 s window sees neither the hourly/daily rows nor the"
            " 5-minute success samples start: bench/store_growth.py simulates whole days for the"
            " steady state"
        )
    if ours.scrape:
        scrape = ours.scrape
        lines.append(
            f"  /metrics         {scrape.get('scrapes')} scrapes by a separate process,"
            f" {_mb(scrape.get('bytes', 0))} each, p50 {_ms(scrape.get('duration_p50', math.nan))},"
            f" max {_ms(scrape.get('duration_max', math.nan))}"
            " (served by our loop, so counted in our CPU)"
        )
    if bb:
        bb_rate = bb["probes"] / bb["window"]
        bb_cpu = bb["cpu_seconds"] / bb["probes"] if bb["probes"] else math.nan
        ratio = ours.cpu_per_probe / bb_cpu if bb_cpu else math.nan
        lines += [
            "",
            "blackbox_exporter (its own process; driver's CPU not counted)",
            f"  probes/s         {bb_rate:,.1f} of {ours.wanted_rate:,.1f} wanted ({bb['probes']:,} probes,"
            f" {bb['success']:,} succeeded, {bb['failure']:,} failed, {bb['errors']} driver errors,"
            f" {bb['skipped']} skipped as still running)",
            f"  CPU per probe    {_us(bb_cpu)} ({bb['cpu_seconds'] / bb['window']:.0%} of a core)",
            f"  /probe duration  p50 {_ms(bb['duration_p50'])}, p99 {_ms(bb['duration_p99'])}"
            f" (driver lateness p99 {_ms(bb['driver_lateness_p99'])})",
            f"  RSS              end {_mb(bb['rss_end'])}, peak {_mb(bb['rss_peak'])}",
            "",
            f"CPU per probe, ours / blackbox_exporter: {ratio:.2f}"
            f"  [goal <= {RATIO_GOAL}: {_verdict(ratio <= RATIO_GOAL)}]",
        ]
    if ours.profile:
        lines += ["", "py-spy profile of our process during the window", ours.profile]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=10, help="seconds between probes of a target")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured, after the warm-up")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (default: one interval)")
    parser.add_argument(
        "--scrape-interval", type=float,
        help="seconds between scrapes of our /metrics (default: the probe interval, so each result is"
        " exported once as with blackbox_exporter; 0 = no scraping)",
    )  # fmt: skip
    parser.add_argument("--page-server", choices=("auto", "nginx", "aiohttp"), default="auto")
    parser.add_argument("--page-bytes", type=int, default=5000)
    parser.add_argument("--together", action="store_true", help="run blackbox_exporter alongside ours")
    parser.add_argument("--skip-blackbox", action="store_true", help="measure ours only")
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks of our process to this file")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    experiments = parser.add_argument_group(
        "experiments", "changes the daemon does not make (yet), to measure a proposed fix"
    )
    experiments.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after the daemon starts")
    experiments.add_argument(
        "--gc-threshold", help="gc.set_threshold() after the start, e.g. 10000,50,100 (Python: 700,10,10)"
    )
    experiments.add_argument("--uvloop", action="store_true", help="run on uvloop (pip install uvloop)")
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = float(args.interval)
    if args.scrape_interval is None:
        args.scrape_interval = float(args.interval)
    configure_logging(args.log_level, "json")
    # SIGTERM unwinds like Ctrl-C, through the finally blocks that stop the child processes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="tthc-bench-") as directory:
        if args.uvloop:
            import uvloop

            outcome = uvloop.run(bench(args, Path(directory)))
        else:
            outcome = asyncio.run(bench(args, Path(directory)))
    text = report(args, outcome)
    print(text)
    if args.json:
        options = {key: str(value) for key, value in vars(args).items()}
        data = {**outcome, "ours": asdict(outcome["ours"]), "args": options}
        args.json.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()

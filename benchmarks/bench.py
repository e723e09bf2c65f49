"""`leadflow bench`: the real-time path, a backlog and memory, with their targets.

    .venv/bin/leadflow bench --quick                      # a smaller run, about 3 minutes
    .venv/bin/leadflow bench --json bench.json --chart bench.svg

It starts its own Prefect server (`prefect server start`, SQLite, a temporary home;
or uses PREFECT_API_URL when set, e.g. a server on PostgreSQL) and stub vendors on
loopback (benchmarks/stub_vendors.py: real sockets, a latency per call, 429 with
Retry-After past their rate limits), then measures:

A. the real-time path end to end (benchmarks/realtime.py): `leadflow serve-webhook`
   in its own process with leadflow's adapters at the stub vendors, one lead at a
   time at 50 and 100 ms per call, beside the bound (plain asyncio, the fan-out
   concurrent), the old way (every call one after another) and `process_lead`; then
   a burst of 500 leads POSTed by 50 clients at once.
B. a backlog at 50 ms per call under the vendors' limits, through the bench's stub
   adapters (benchmarks/stub_adapters.py): `process_file` in groups of 100 on all of
   it, then a shadow run of the same file beside the example current process
   (`shadow_file`, when it runs on this engine), the legacy loop and `process_file`
   in groups of one on samples; leads/s and the 429s the vendors sent.
C. memory: peak RSS of `process_file` over generated files (embedded adapters, no
   latency), each in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import logging
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for where in (HERE, ROOT):  # the modules beside this one and examples/, however started
    if str(where) not in sys.path:
        sys.path.insert(0, str(where))
BIN = Path(sys.executable).parent

VENDOR_LIMIT = 100  # requests per second per vendor (stub); the client keeps 90% of it
VENDOR_CONCURRENT = 20
CLIENT_LIMIT = 90
CLIENT_CONCURRENT = 16
SHADOW_LEGACY = "python:examples.legacy.process:decide"  # the README's current process

FULL = {
    "latencies": (50, 100),
    "one_lead": 30,
    "warmup": 3,
    "burst": 500,
    "backlog": 2000,
    "legacy_sample": 200,
    "group_of_one_sample": 200,
    "memory": (20_000, 200_000),
}
QUICK = {
    "latencies": (50,),
    "one_lead": 8,
    "warmup": 2,
    "burst": 200,
    "backlog": 500,
    "legacy_sample": 6,
    "group_of_one_sample": 32,
    "memory": (1_000, 2_000),  # a check that part C runs, not a flatness figure
}


# --- processes we start ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, seconds: float, what: str) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{what} not up after {seconds:.0f} s ({url})")


@contextlib.contextmanager
def started(
    args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen]:
    """A child process for the block, stopped (by its pid) at the end."""
    with log.open("w") as output:
        process = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def prefect_server(workdir: Path) -> Iterator[str]:
    """PREFECT_API_URL if set, else a `prefect server start` of our own (SQLite in a
    temporary PREFECT_HOME, or PREFECT_SERVER_DATABASE_CONNECTION_URL if set)."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(workdir / "prefect-server"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    args = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with started(args, env, workdir / "prefect-server.log") as process:
        url = f"http://127.0.0.1:{port}/api"
        wait_until_up(f"{url}/health", process, 180, "prefect server")
        yield url


@contextlib.contextmanager
def stub_vendors(workdir: Path) -> Iterator[str]:
    port = free_port()
    args = [
        sys.executable,
        str(HERE / "stub_vendors.py"),
        "--port",
        str(port),
        "--requests",
        str(VENDOR_LIMIT),
        "--concurrent",
        str(VENDOR_CONCURRENT),
    ]
    with started(args, dict(os.environ), workdir / "stub-vendors.log") as process:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/_health", process, 60, "stub vendors")
        yield url


# --- leads -------------------------------------------------------------------------------

TITLES = ("VP Sales", "Director of Marketing", "Analyst", "CTO", "Engineer", "Head of Growth")
COUNTRIES = ("US", "GB", "DE", "FR", "CA", "BR", "IN", "AU")
SIZES = ("15", "120", "800", "4000", "60")
SOURCES = ("webinar", "website", "referral", "event")
COLUMNS = ("email", "first_name", "title", "country", "employee_count", "source")


def lead_record(tag: str, number: int) -> dict[str, str]:
    """A generated lead (part B and C); part A's leads carry an id too (realtime.py)."""
    return {
        "email": f"{tag}{number}@co{number % 997}.test",
        "first_name": f"Lead{number}",
        "title": TITLES[number % len(TITLES)],
        "country": COUNTRIES[number % len(COUNTRIES)],
        "employee_count": SIZES[number % len(SIZES)],
        "source": SOURCES[number % len(SOURCES)],
    }


def write_leads(path: Path, tag: str, count: int) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for number in range(count):
            writer.writerow(lead_record(tag, number))
    return path


async def _vendors(base_url: str, **config: Any) -> dict[str, int]:
    import httpx

    async with httpx.AsyncClient(base_url=base_url) as client:
        if config:
            await client.post("/_config", json=config)
        return (await client.get("/_stats")).json()


def describe(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50": statistics.median(ordered),
        "p95": p95,
        "max": ordered[-1],
        "mean": statistics.mean(ordered),
    }


# --- B: a backlog ----------------------------------------------------------------------


async def backlog(runtime, base_url: str, workdir: Path, sizes: dict) -> dict:
    from realtime import in_process_ways

    from leadflow.flows.files import process_file

    await _vendors(base_url, latency_ms=50, requests=VENDOR_LIMIT, concurrent=VENDOR_CONCURRENT)
    tag = uuid.uuid4().hex[:6]
    result: dict[str, Any] = {"n": sizes["backlog"]}

    # Groups of 100 first: after many task runs the Prefect server is still working
    # through their events for a while, which would slow the next run.
    path = write_leads(workdir / "backlog.csv", f"bb{tag}.", sizes["backlog"])
    began = time.perf_counter()
    summary = await _summary(process_file(path=path, batch_size=100, return_state=True))
    result["groups_of_100"] = _rate(summary.processed, time.perf_counter() - began)
    result["groups_of_100"]["failed"] = summary.failed_total

    result["shadow"] = await _shadow(path, workdir)

    legacy = in_process_ways(runtime)["legacy"]
    began = time.perf_counter()
    for number in range(sizes["legacy_sample"]):
        await legacy(lead_record(f"bl{tag}.", number))
    result["legacy"] = _rate(sizes["legacy_sample"], time.perf_counter() - began)

    path = write_leads(workdir / "groups-of-one.csv", f"b1{tag}.", sizes["group_of_one_sample"])
    began = time.perf_counter()
    summary = await _summary(process_file(path=path, batch_size=1, return_state=True))
    result["groups_of_1"] = _rate(summary.processed, time.perf_counter() - began)
    result["groups_of_1"]["failed"] = summary.failed_total
    stats = await _vendors(base_url)
    result["rate_limited_responses"] = stats.get("rate_limited", 0)
    result["vendor_requests"] = stats.get("requests", 0)
    return result


async def _shadow(path: Path, workdir: Path) -> dict[str, Any]:
    """The same file in a shadow run beside the example current process (at backlog
    scale a shadow run must not be slower than the run it judges); a note instead
    while shadow mode does not run on this engine."""
    try:
        from leadflow.flows.shadow import shadow_file
    except ImportError as exc:
        return {"skipped": f"shadow_file does not import on this engine ({exc})"}
    began = time.perf_counter()
    try:
        with environment(LEADFLOW_SHADOW__DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/shadow.db"):
            shadowed = await _summary(
                shadow_file(path=path, legacy=SHADOW_LEGACY, return_state=True)
            )
    except Exception as exc:
        return {"skipped": f"shadow_file failed: {type(exc).__name__}: {str(exc)[:200]}"}
    result = _rate(shadowed.compared, time.perf_counter() - began)
    result["failed"] = len(shadowed.candidate_errors)
    return result


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Environment variables set for a block (a shadow run reads its settings there)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def _summary(run):
    """The run's summary, also when some leads failed (counted, not fatal here)."""
    from leadflow.flows.files import LeadsFailedError

    state = await run
    result = await state.aresult(raise_on_failure=False)
    if isinstance(result, LeadsFailedError):
        return result.summary
    if isinstance(result, BaseException):
        raise result
    return result


def _rate(leads: int, seconds: float) -> dict[str, float]:
    return {"leads": leads, "seconds": seconds, "leads_per_s": leads / seconds}


# --- C: memory -------------------------------------------------------------------------


def memory(workdir: Path, sizes: tuple[int, ...], api_url: str) -> dict[int, dict]:
    results = {}
    for count in sizes:
        where = workdir / f"memory-{count}"
        where.mkdir()
        write_leads(where / "leads.csv", "m.", count)
        env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(where / "home")}
        done = subprocess.run(
            [sys.executable, str(HERE / "bench.py"), "--memory-child", str(where)],
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"memory run of {count} leads failed:\n{done.stderr[-3000:]}")
        results[count] = json.loads(done.stdout.strip().splitlines()[-1])
        shutil.rmtree(where, ignore_errors=True)
    return results


def memory_child(where: Path) -> None:
    """In a fresh process: `process_file` over where/leads.csv (groups of 100),
    embedded adapters; prints peak RSS and throughput as one JSON line."""
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    from prefect.logging.handlers import APILogHandler

    from leadflow.app.runtime import build_runtime, use_runtime
    from leadflow.db import dispose_engines
    from leadflow.flows.files import process_file
    from leadflow.integrations.local_crm import LocalCRM
    from leadflow.integrations.terminal_notifier import TerminalNotifier
    from leadflow.logging import configure_logging
    from leadflow.settings import LogSettings, Settings

    configure_logging(LogSettings(level="WARNING"))
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{where / 'leadflow.db'}",
        rules_path=ROOT / "examples" / "rules.toml",
    )
    runtime = build_runtime(
        settings,
        crm=LocalCRM(settings.database_url, ROOT / "examples" / "crm_seed.json"),
        notifier=TerminalNotifier(where / "outbox.jsonl", echo=False),
    )

    async def run():
        with use_runtime(runtime):
            began = time.perf_counter()
            summary = await process_file(path=where / "leads.csv", batch_size=100)
            seconds = time.perf_counter() - began
        await runtime.aclose()
        await dispose_engines()
        await APILogHandler.aflush()
        return summary, seconds

    summary, seconds = asyncio.run(run())
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "leads": summary.processed,
                "failed": summary.failed_total,
                "seconds": seconds,
                "leads_per_s": summary.processed / seconds,
                "rss_mb": peak_kb / 1024,
            }
        )
    )


# --- the whole run ---------------------------------------------------------------------


class ApiRetries(logging.Handler):
    """Counts the Prefect client's retries of a request the API answered 503 (or
    another retryable status): each costs the lead about 2 s. Prefect logs them at
    DEBUG on `prefect.client`; the console handler still shows only warnings."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retryable status code" in record.getMessage():
            self.count += 1

    @contextlib.contextmanager
    def counting(self) -> Iterator[ApiRetries]:
        # Prefect sets its logging up when `prefect.main` is first imported (lazily,
        # by `from prefect import flow`), which would take this handler off again:
        # import it before the count, not during it.
        import prefect.main  # noqa: F401

        logger = logging.getLogger("prefect.client")
        level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.DEBUG)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)


async def measure(
    api_url: str, vendors_url: str, workdir: Path, sizes: dict, part: str, **where: str
) -> dict:
    """Part A (`where` has the receiver's URL) or part B, against the Prefect API at
    `api_url`."""
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        with ApiRetries().counting() as retries:
            if part == "a":
                from realtime import measure_realtime

                results = await measure_realtime(where["receiver_url"], vendors_url, workdir, sizes)
            else:
                results = {"backlog": await measure_backlog(vendors_url, workdir, sizes)}
        await APILogHandler.aflush()  # before our server stops
    results["api_retries"] = retries.count
    return results


async def measure_backlog(vendors_url: str, workdir: Path, sizes: dict) -> dict:
    from stub_adapters import make_runtime

    from leadflow.app.runtime import prefect_clients, use_runtime
    from leadflow.db import dispose_engines

    (workdir / "b").mkdir(exist_ok=True)
    runtime = make_runtime(
        workdir / "b", vendors_url, requests_per_second=CLIENT_LIMIT, concurrent=CLIENT_CONCURRENT
    )
    try:
        await runtime.prepare_stores()
        async with prefect_clients():
            with use_runtime(runtime):
                return await backlog(runtime, vendors_url, workdir / "b", sizes)
    finally:
        await runtime.http_client.aclose()
        await runtime.aclose()
        await dispose_engines()


def summarise(results: dict) -> dict:
    """The figures in the schema of `--json`: seconds; p50 unless named; what was
    lost or repeated beside them (the test suite runs `--quick` and checks those)."""
    from realtime import WAYS

    mem = results.get("memory", {})

    def ways(run: dict) -> dict:
        figures = {f"{way}_{q}_s": run[way][q] for way in WAYS for q in ("p50", "p95", "max")}
        figures["repeated"] = sum(run[way]["repeated"] for way in WAYS)
        return figures

    b = results.get("backlog")
    return {
        "realtime": {str(run["latency_ms"]): ways(run) for run in results.get("one_lead", [])},
        "burst": results.get("burst")
        and {
            key: results["burst"][key]
            for key in ("leads", "done", "last_done_s", "rate_limited", "receiver_503", "repeated")
        },
        "backlog": b
        and {
            "n": b["n"],
            "seconds": b["groups_of_100"]["seconds"],
            "groups_of_100_leads_per_s": b["groups_of_100"]["leads_per_s"],
            "groups_of_1_leads_per_s": b["groups_of_1"]["leads_per_s"],
            "legacy_leads_per_s": b["legacy"]["leads_per_s"],
            "shadow_leads_per_s": b["shadow"].get("leads_per_s"),
            "shadow_skipped": b["shadow"].get("skipped"),
            "failed": b["groups_of_100"]["failed"] + b["groups_of_1"]["failed"],
            "rate_limited_responses": b["rate_limited_responses"],
        },
        "memory": {
            "rss_mb_20k": mem.get(20_000, {}).get("rss_mb"),
            "rss_mb_200k": mem.get(200_000, {}).get("rss_mb"),
            "runs": {
                str(count): {key: m[key] for key in ("leads", "failed", "rss_mb")}
                for count, m in mem.items()
            },
        },
    }


def run_bench(
    *,
    quick: bool = False,
    json_path: Path | None = None,
    chart_path: Path | None = None,
    parts: str = "abc",
) -> dict:
    """Run the benchmark, print the tables, write the JSON and the chart."""
    from report import print_report, write_chart

    from leadflow.logging import configure_logging
    from leadflow.settings import LogSettings

    # As `leadflow run` has it: INFO to the Prefect API, warnings on the terminal.
    configure_logging(LogSettings(), console_level="WARNING")
    sizes = QUICK if quick else FULL
    load = os.getloadavg()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect-client"))
        results: dict[str, Any] = {"api_retries": {}}
        with prefect_server(workdir) as api_url, stub_vendors(workdir) as vendors_url:
            if "a" in parts:
                from realtime import receiver

                with receiver(workdir, api_url, vendors_url) as url:
                    found = asyncio.run(
                        measure(api_url, vendors_url, workdir, sizes, "a", receiver_url=url)
                    )
                results["api_retries"]["a"] = found.pop("api_retries")
                results.update(found)
            if "b" in parts:
                found = asyncio.run(measure(api_url, vendors_url, workdir, sizes, "b"))
                results["api_retries"]["b"] = found.pop("api_retries")
                results.update(found)
            if "c" in parts:
                results["memory"] = memory(workdir, sizes["memory"], api_url)
    results["machine"] = {
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "prefect_api": "PREFECT_API_URL" if os.environ.get("PREFECT_API_URL") else "own server",
        "prefect_db": "postgresql"
        if "postgres" in os.environ.get("PREFECT_SERVER_DATABASE_CONNECTION_URL", "")
        else "sqlite",
        "quick": quick,
        "seconds": round(time.perf_counter() - began, 1),
    }
    figures = summarise(results)
    print_report(results, figures)
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
        json_path.with_suffix(".details.json").write_text(
            json.dumps(results, indent=2, default=str) + "\n"
        )
    if chart_path:
        write_chart(results, chart_path)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, about 3 minutes")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--chart", type=Path, help="write an SVG chart here")
    parser.add_argument("--parts", default="abc", help="which parts to run: a, b, c")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return
    run_bench(quick=args.quick, json_path=args.json, chart_path=args.chart, parts=args.parts)


if __name__ == "__main__":
    main()

"""How `leadflow bench` shows its figures: tables on the terminal, an SVG chart."""

from __future__ import annotations

import shutil
from html import escape
from pathlib import Path

from rich.console import Console
from rich.table import Table

WAYS = (
    ("legacy", "old way: calls one by one"),
    ("process_lead", "process_lead (manual)"),
    ("realtime", "real-time: serve-webhook"),
    ("bound", "bound: asyncio, fan-out"),
)

TARGETS = {
    "p50": 1.10,  # the real-time path's p50 over the bound's
    "p95": 1.25,  # its p95 over the bound's p95
    "vs_old": 0.80,  # its p50 over the old way's: at least 20% faster
    "worst_over_s": 0.250,  # its worst lead over the bound's worst
    "burst_s": 5.0,
    "backlog_seconds": 10.0,
    "vs_legacy": 100,
    "rss_mb": 400,
}


def print_report(results: dict, figures: dict) -> None:
    console = Console(width=max(110, shutil.get_terminal_size().columns))
    machine = results["machine"]
    console.print(
        f"[bold]leadflow bench[/] ({'quick' if machine['quick'] else 'full'}), "
        f"{machine['cpus']} CPUs, load {machine['load_before']} -> {machine['load_after']}, "
        f"Prefect API: {machine['prefect_api']} ({machine['prefect_db']}), {machine['seconds']} s",
        highlight=False,
    )
    if retries := results.get("api_retries"):
        console.print(
            "Prefect client retries after a retryable API answer (503: about 2 s each): "
            + ", ".join(f"{part} {count}" for part, count in retries.items()),
            highlight=False,
        )
    for run in results.get("one_lead", []):
        _one_lead_table(console, run)
    if burst := results.get("burst"):
        _burst_line(console, burst)
    if "backlog" in results:
        _backlog_table(console, results["backlog"])
    if "memory" in results:
        _memory_table(console, results["memory"])
    console.print(verdicts(results, figures), highlight=False)


def _one_lead_table(console: Console, run: dict) -> None:
    bound = run["bound"]
    load = " -> ".join(f"{x:.2f}" for x in run["load"])
    manual = " -> ".join(f"{x:.2f}" for x in run.get("load_process_lead", []))
    table = Table(
        title=f"A. one lead at a time, {run['latency_ms']} ms per call, {run['leads']} leads "
        f"each, from the POST or call to the last side effect answered (load {load}; "
        f"process_lead in a pass of its own, load {manual})",
        title_justify="left",
    )
    columns = ("way", "p50 ms", "p95 ms", "max ms", "p50 / bound", "p95 / bound", "repeats")
    for column in columns:
        table.add_column(column, justify="left" if column == "way" else "right")
    for key, label in WAYS:
        s = run[key]
        table.add_row(
            label,
            f"{s['p50'] * 1000:.0f}",
            f"{s['p95'] * 1000:.0f}",
            f"{s['max'] * 1000:.0f}",
            f"{s['p50'] / bound['p50']:.2f}x",
            f"{s['p95'] / bound['p95']:.2f}x",
            str(s.get("repeated", 0)),
        )
    console.print(table)


def _burst_line(console: Console, burst: dict) -> None:
    from realtime import CLIENT_CONCURRENT, CLIENT_RATE, VENDOR_CONCURRENT, VENDOR_RATE

    last = burst["last_done_s"]
    per = burst["per_lead"] or {}
    console.print(
        f"[bold]A. burst[/]: {burst['leads']} leads POSTed by {burst['clients']} clients at once, "
        f"50 ms per call, vendors {VENDOR_RATE}/s and {VENDOR_CONCURRENT} in flight "
        f"(adapters {CLIENT_RATE}/s, {CLIENT_CONCURRENT}); load "
        + " -> ".join(f"{x:.2f}" for x in burst["load"])
        + f"\n  all accepted in {burst['accepted_s']:.2f} s; {burst['done']} of {burst['leads']} "
        f"done, the last {last:.2f} s after the first POST"
        + (f" (per lead p50 {per['p50']:.2f} s, p95 {per['p95']:.2f} s)" if per else "")
        + f"\n  responses 429 from the vendors: {burst['rate_limited']}; 503 from the receiver: "
        f"{burst['receiver_503']}; side effects repeated: {burst['repeated']}",
        highlight=False,
    )


def _backlog_table(console: Console, b: dict) -> None:
    batched = b["groups_of_100"]["leads_per_s"]
    table = Table(
        title=f"B. backlog, 50 ms per call, vendor limit {_limit()} "
        f"({b['rate_limited_responses']} responses 429 of {b['vendor_requests']} requests)",
        title_justify="left",
    )
    for column in ("way", "leads", "failed", "seconds", "leads/s", "groups of 100 are"):
        table.add_column(column, justify="left" if column == "way" else "right")
    for key, label in (
        ("groups_of_100", "process_file, groups of 100"),
        ("shadow", "shadow run of the same file (shadow_file)"),
        ("legacy", "legacy loop (sample)"),
        ("groups_of_1", "process_file, groups of one (sample)"),
    ):
        r = b[key]
        if "skipped" in r:
            table.add_row(label, "", "", "", "", "skipped (below)")
            continue
        table.add_row(
            label,
            str(r["leads"]),
            str(r.get("failed", 0)),
            f"{r['seconds']:.1f}",
            f"{r['leads_per_s']:.1f}",
            f"{batched / r['leads_per_s']:.1f}x",
        )
    console.print(table)
    if "skipped" in b["shadow"]:
        console.print(f"  shadow run skipped: {b['shadow']['skipped']}", highlight=False)


def _memory_table(console: Console, memory: dict) -> None:
    table = Table(
        title="C. memory, process_file in groups of 100, embedded adapters", title_justify="left"
    )
    for column in ("leads", "peak RSS MB", "seconds", "leads/s"):
        table.add_column(column, justify="right")
    for count, m in sorted(memory.items()):
        table.add_row(
            f"{count:,}", f"{m['rss_mb']:.0f}", f"{m['seconds']:.1f}", f"{m['leads_per_s']:.0f}"
        )
    console.print(table)


def _limit() -> str:
    from bench import VENDOR_CONCURRENT, VENDOR_LIMIT

    return f"{VENDOR_LIMIT}/s, {VENDOR_CONCURRENT} at once"


def verdicts(results: dict, figures: dict) -> str:
    backlog, memory = figures["backlog"], figures["memory"]
    lines = ["Targets:"]

    def line(ok: bool | None, text: str) -> None:
        mark = "n/a " if ok is None else ("met " if ok else "MISS")
        lines.append(f"  {mark} {text}")

    for run in results.get("one_lead", []):
        _realtime_verdicts(run, line)
    if burst := results.get("burst"):
        last = burst["last_done_s"]
        everyone = burst["done"] == burst["leads"]
        line(
            everyone and last is not None and last <= TARGETS["burst_s"],
            f"burst: {burst['done']} of {burst['leads']} leads done, the last after "
            f"{last:.2f} s (all within 5 s)",
        )
        line(burst["rate_limited"] == 0, f"burst: {burst['rate_limited']} responses 429 (0)")
    if backlog:
        _backlog_verdicts(backlog, line)
    small, large = memory["rss_mb_20k"], memory["rss_mb_200k"]
    if small is None or large is None:
        line(None, "memory at 20k / 200k leads: the full run measures it")
    else:
        line(large < TARGETS["rss_mb"], f"{large:.0f} MB at 200k leads (< 400 MB)")
        line(large <= small * 1.1, f"200k / 20k RSS {large / small:.2f} (<= 1.10)")
    return "\n".join(lines)


def _realtime_verdicts(run: dict, line) -> None:
    bound, realtime, old = run["bound"], run["realtime"], run["legacy"]
    at = f"{run['latency_ms']} ms:"
    p50 = realtime["p50"] / bound["p50"]
    p95 = realtime["p95"] / bound["p95"]
    line(p50 <= TARGETS["p50"], f"{at} real-time p50 {p50:.2f}x the bound's (<= 1.10x)")
    line(p95 <= TARGETS["p95"], f"{at} real-time p95 {p95:.2f}x the bound's p95 (<= 1.25x)")
    faster = 1 - realtime["p50"] / old["p50"]
    line(
        realtime["p50"] <= TARGETS["vs_old"] * old["p50"],
        f"{at} real-time p50 {faster:.0%} faster than the old way's (>= 20%)",
    )
    over = realtime["max"] - bound["max"]
    line(
        over <= TARGETS["worst_over_s"],
        f"{at} worst lead {over * 1000:.0f} ms over the bound's worst (<= 250 ms)",
    )


def _backlog_verdicts(backlog: dict, line) -> None:
    seconds = backlog["seconds"]
    line(
        seconds <= TARGETS["backlog_seconds"],
        f"{backlog['n']} leads in {seconds:.1f} s through process_file, groups of 100 (<= 10 s)",
    )
    line(
        backlog["rate_limited_responses"] == 0, f"{backlog['rate_limited_responses']} responses 429"
    )
    vs_legacy = backlog["groups_of_100_leads_per_s"] / backlog["legacy_leads_per_s"]
    line(vs_legacy >= TARGETS["vs_legacy"], f"{vs_legacy:.1f}x the legacy loop (>= 100x)")
    if backlog["shadow_leads_per_s"] is None:
        line(None, "shadow run of the same file: skipped (see above)")
    else:
        shadow = backlog["groups_of_100_leads_per_s"] / backlog["shadow_leads_per_s"]
        line(shadow <= 1.0, f"shadow run of the same file: {shadow:.2f}x the run's time (<= 1x)")


# --- the chart ---------------------------------------------------------------------------


def write_chart(results: dict, path: Path) -> None:
    """Three panels of horizontal bars, plain SVG."""
    panels: list[tuple[str, str, list[tuple[str, float]]]] = []
    for run in results.get("one_lead", []):
        panels.append(
            (
                f"A. one lead at {run['latency_ms']} ms per call: p50 / p95 (ms)",
                "ms",
                [
                    (f"{label} p{q}", run[key][f"p{q}"] * 1000)
                    for key, label in WAYS
                    for q in (50, 95)
                ],
            )
        )
    if b := results.get("backlog"):
        rows = [
            (label, b[key]["leads_per_s"])
            for key, label in (
                ("legacy", "legacy loop"),
                ("groups_of_1", "process_file, groups of one"),
                ("groups_of_100", "process_file, groups of 100"),
            )
        ]
        panels.append(("B. backlog at 50 ms per call (leads/s)", "leads/s", rows))
    if memory := results.get("memory"):
        rows = [(f"{count:,} leads", m["rss_mb"]) for count, m in sorted(memory.items())]
        panels.append(("C. peak RSS of process_file (MB)", "MB", rows))
    width, label_w, bar_w, row_h = 760, 300, 380, 18
    parts, y = [], 10
    for title, unit, rows in panels:
        top = max(value for _, value in rows) or 1
        parts.append(f'<text x="10" y="{y + 14}" font-weight="bold">{escape(title)}</text>')
        y += 24
        for label, value in rows:
            length = bar_w * value / top
            parts.append(f'<text x="10" y="{y + 13}">{escape(label)}</text>')
            parts.append(
                f'<rect x="{label_w}" y="{y + 2}" width="{length:.1f}" height="{row_h - 4}" '
                f'fill="#4a7bd0"/>'
            )
            parts.append(
                f'<text x="{label_w + length + 6:.1f}" y="{y + 13}">{value:,.1f} {unit}</text>'
            )
            y += row_h
        y += 14
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
        f'font-family="sans-serif" font-size="12">'
        f'<rect width="100%" height="100%" fill="white"/>{"".join(parts)}</svg>\n'
    )
    path.write_text(svg)

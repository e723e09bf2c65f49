"""How `leadflow bench` shows its figures: tables on the terminal, an SVG chart."""

from __future__ import annotations

from html import escape
from pathlib import Path

from rich.console import Console
from rich.table import Table

WAYS = (
    ("legacy", "legacy: 7 steps one after another"),
    ("sequential_fanout", "process_lead, fan-out sequential"),
    ("process_lead", "process_lead"),
    ("bound", "bound: plain asyncio, fan-out concurrent"),
)

TARGETS = {
    "p50": 1.15,
    "p95": 1.5,
    "backlog_seconds": 10.0,
    "vs_per_lead": 20,
    "vs_legacy": 100,
    "rss_mb": 400,
}


def print_report(results: dict, figures: dict) -> None:
    console = Console()
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
    for run in results["one_lead"]:
        bound = run["bound"]
        table = Table(
            title=f"A. one lead, warm process, {run['latency_ms']} ms per call, "
            f"{run['leads']} leads each",
            title_justify="left",
        )
        for column in ("way", "p50 ms", "p95 ms", "max ms", "p50 / bound", "p95 / bound"):
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
            )
        console.print(table)
    if "backlog" in results:
        _backlog_table(console, results["backlog"])
    if "memory" in results:
        _memory_table(console, results["memory"])
    console.print(verdicts(results, figures), highlight=False)


def _backlog_table(console: Console, b: dict) -> None:
    micro = b["micro_batch"]["leads_per_s"]
    table = Table(
        title=f"B. backlog, 50 ms per call, vendor limit {_limit()} "
        f"({b['rate_limited_responses']} responses 429 of {b['vendor_requests']} requests)",
        title_justify="left",
    )
    for column in ("way", "leads", "failed", "seconds", "leads/s", "micro-batch is"):
        table.add_column(column, justify="left" if column == "way" else "right")
    for key, label in (
        ("legacy", "legacy loop"),
        ("per_lead_flows", "per-lead tasks (process_file, 32 at once)"),
        ("micro_batch", "micro-batch (process_file_batched)"),
        ("shadow", "shadow run of the same file (shadow_file)"),
    ):
        r = b[key]
        table.add_row(
            label,
            str(r["leads"]),
            str(r.get("failed", 0)),
            f"{r['seconds']:.1f}",
            f"{r['leads_per_s']:.1f}",
            f"{micro / r['leads_per_s']:.1f}x",
        )
    console.print(table)


def _memory_table(console: Console, memory: dict) -> None:
    table = Table(title="C. memory, micro-batch path, embedded adapters", title_justify="left")
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
    per_lead, backlog, memory = figures["per_lead"], figures["backlog"], figures["memory"]
    lines = ["Targets:"]

    def line(ok: bool | None, text: str) -> None:
        mark = "n/a " if ok is None else ("met " if ok else "MISS")
        lines.append(f"  {mark} {text}")

    if per_lead:
        _per_lead_verdicts(results, per_lead, line)
    if backlog:
        _backlog_verdicts(backlog, line)
    small, large = memory["rss_mb_20k"], memory["rss_mb_200k"]
    if small is None or large is None:
        line(None, "memory at 20k / 200k leads: the full run measures it")
    else:
        line(large < TARGETS["rss_mb"], f"{large:.0f} MB at 200k leads (< 400 MB)")
        line(large <= small * 1.1, f"200k / 20k RSS {large / small:.2f} (<= 1.10)")
    return "\n".join(lines)


def _per_lead_verdicts(results: dict, per_lead: dict, line) -> None:
    at50 = next(r for r in results["one_lead"] if r["latency_ms"] == 50)

    p50 = per_lead["process_lead_s"] / per_lead["bound_s"]
    p95 = per_lead["process_lead_p95_s"] / at50["bound"]["p95"]
    line(p50 <= TARGETS["p50"], f"process_lead p50 {p50:.2f}x the bound (<= 1.15x)")
    line(p95 <= TARGETS["p95"], f"process_lead p95 {p95:.2f}x the bound's p95 (<= 1.5x)")
    worst = at50["process_lead"]["max"] - at50["bound"]["max"]
    line(worst <= 1.0, f"worst lead {worst * 1000:.0f} ms over the bound's worst (<= 1 s)")


def _backlog_verdicts(backlog: dict, line) -> None:
    seconds = backlog["n"] / backlog["micro_batch_leads_per_s"]
    line(
        seconds <= TARGETS["backlog_seconds"], f"{backlog['n']} leads in {seconds:.1f} s (<= 10 s)"
    )
    line(
        backlog["rate_limited_responses"] == 0, f"{backlog['rate_limited_responses']} responses 429"
    )
    vs_per_lead = backlog["micro_batch_leads_per_s"] / backlog["per_lead_flows_leads_per_s"]
    vs_legacy = backlog["micro_batch_leads_per_s"] / backlog["legacy_leads_per_s"]
    line(vs_per_lead >= TARGETS["vs_per_lead"], f"{vs_per_lead:.1f}x per-lead tasks (>= 20x)")
    line(vs_legacy >= TARGETS["vs_legacy"], f"{vs_legacy:.1f}x the legacy loop (>= 100x)")
    shadow = backlog["micro_batch_leads_per_s"] / backlog["shadow_leads_per_s"]
    line(shadow <= 1.0, f"shadow run of the same file: {shadow:.2f}x the micro-batch time (<= 1x)")


# --- the chart ---------------------------------------------------------------------------


def write_chart(results: dict, path: Path) -> None:
    """Three panels of horizontal bars, plain SVG."""
    panels: list[tuple[str, str, list[tuple[str, float]]]] = []
    for run in results["one_lead"]:
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
                ("per_lead_flows", "per-lead tasks"),
                ("micro_batch", "micro-batch"),
            )
        ]
        panels.append(("B. backlog at 50 ms per call (leads/s)", "leads/s", rows))
    if memory := results.get("memory"):
        rows = [(f"{count:,} leads", m["rss_mb"]) for count, m in sorted(memory.items())]
        panels.append(("C. peak RSS of the micro-batch path (MB)", "MB", rows))
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

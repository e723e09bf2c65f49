"""The shadow report as markdown (Prefect artifacts, the terminal), one self-contained
HTML file with inline SVG charts (opens offline: no script, no CDN, no server), and a
CSV of mismatches for a spreadsheet.

Lead data is untrusted: every value goes through `html.escape` in the HTML and
through `_cell` in the CSV, where a leading =, +, - or @ (which a spreadsheet would run
as a formula) is neutralised with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from html import escape

from leadflow.markdown import escape as escape_md
from leadflow.markdown import table
from leadflow.models import Decision
from leadflow.report import ShadowReport, Timeline

SIDE_COLOURS = {"control": "#8a8f98", "candidate": "#2f6fde"}


@dataclass(frozen=True)
class Labels:
    """What the report and its two sides are called. The shadow report compares the
    current process with leadflow and judges gates, noise and latency; a backtest
    (leadflow.backtest) compares the stored decisions with new rules' and has none."""

    title: str = "Shadow report"
    control: str = "current process"
    candidate: str = "leadflow"
    control_column: str = "current"
    candidate_column: str = "leadflow"
    shadow: bool = True


SHADOW = Labels()
BACKTEST = Labels("Backtest", "stored decisions", "new rules", "stored", "new", shadow=False)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def verdict_line(report: ShadowReport) -> str:
    if report.verdict == "not ready":
        return f"not ready: {', '.join(g.name for g in report.failed_gates)} failed"
    return report.verdict


def as_markdown(report: ShadowReport) -> str:
    """The report for the Prefect artifact: every value from outside (lead data,
    legacy names, gate details) through leadflow.markdown's one escaper, every table
    through its `table()`: a `javascript:` link in a lead's email is text."""
    legacy = ", ".join(escape_md(name) for name in report.legacy) or "nothing"
    lines = [
        f"# Shadow report {report.since:%Y-%m-%d} to {report.until:%Y-%m-%d}",
        "",
        f"**Verdict: {escape_md(verdict_line(report))}**",
        "",
        f"{report.sample} leads compared against {legacy}; "
        f"noise baseline from {report.baseline_sample} re-runs of the current process.",
        "",
        table(
            ("field", "agreement", "current process's own noise"),
            [(f, _pct(a), _pct(report.noise.get(f))) for f, a in report.agreement.items()],
        ),
        "",
        table(
            ("side", "p50", "p95", "error rate"),
            [
                (name, _ms(s.p50_ms), _ms(s.p95_ms), _pct(s.error_rate))
                for name, s in (("current process", report.control), ("leadflow", report.candidate))
            ],
        ),
        "",
        table(
            ("gate", "result", "detail"),
            [(g.name, "pass" if g.passed else "FAIL", g.detail) for g in report.gates],
        ),
    ]
    if report.pilot_leads:
        lines += ["", f"Pilot: {report.fallbacks} of {report.pilot_leads} leads fell back."]
    if report.patterns:
        lines += ["", "## Commonest mismatches", ""]
        lines.append(
            table(
                ("leads", "difference", "example"),
                [
                    (p.count, p.label, p.examples[0].email or p.examples[0].lead_id)
                    for p in report.patterns
                ],
            )
        )
    return "\n".join(lines)


def agreement_table(report: ShadowReport) -> list[dict[str, str]]:
    """Rows for the table artifact."""
    return [
        {"field": f, "agreement": _pct(a), "noise": _pct(report.noise.get(f))}
        for f, a in report.agreement.items()
    ]


# --- CSV -----------------------------------------------------------------------------

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def mismatches_csv(report: ShadowReport, labels: Labels = SHADOW) -> str:
    buffer = io.StringIO()
    # RFC 4180 line ends: a lone \r or \n inside a cell is then quoted, not a row break.
    writer = csv.writer(buffer, lineterminator="\r\n")
    fields = list(report.agreement) or Decision.COMPARED_FIELDS
    sides = (labels.control_column, labels.candidate_column)
    writer.writerow(
        [
            "compared_at",
            "lead_id",
            "email",
            "mismatched",
            *(f"{f}_{side}" for f in fields for side in sides),
            *(f"{side}_reasons" for side in sides),
        ]
    )
    for r in report.mismatches:
        values = []
        for f in fields:
            result = {**r.comparison.fields, **r.comparison.effects}.get(f)
            if result is None:
                values += ["", ""]
                continue
            values += [result.control, result.candidate]
        reasons = [
            "; ".join(f"{x.rule}: {x.points:+d}" for x in d.score_reasons) if d else ""
            for d in (r.control, r.candidate)
        ]
        row = [
            r.compared_at.isoformat(),
            r.lead_id,
            r.email,
            " ".join(r.comparison.mismatched_fields),
        ]
        writer.writerow([_cell(v) for v in [*row, *values, *reasons]])
    return buffer.getvalue()


# --- HTML ----------------------------------------------------------------------------


def _svg_agreement(report: ShadowReport) -> str:
    width, height, pad = 640, 200, 36
    days = report.by_day
    if not days:
        return "<p>No leads in the window.</p>"
    step = (width - 2 * pad) / max(1, len(days))
    bars = []
    for i, (day, leads, share) in enumerate(days):
        h = (height - 2 * pad) * share
        x = pad + i * step
        bars.append(
            f'<rect class="bar" x="{x + 2:.1f}" y="{height - pad - h:.1f}" width="{step - 4:.1f}" '
            f'height="{h:.1f}" fill="{SIDE_COLOURS["candidate"]}"><title>{escape(day)}: '
            f"{share:.1%} of {leads} leads agree</title></rect>"
            f'<text x="{x + step / 2:.1f}" y="{height - pad + 14}" font-size="10" '
            f'text-anchor="middle">{escape(day[5:])}</text>'
        )
    axis = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#333"/>'
        f'<text x="4" y="{pad + 4}" font-size="10">100%</text>'
        f'<text x="4" y="{height - pad}" font-size="10">0%</text>'
    )
    return (
        f'<svg data-chart="agreement" width="{width}" height="{height}" role="img" '
        f'aria-label="agreement by day">{axis}{"".join(bars)}</svg>'
    )


def _svg_latency(report: ShadowReport) -> str:
    width, height, pad, bins = 640, 220, 36, 12
    sides = {"control": report.control.durations_ms, "candidate": report.candidate.durations_ms}
    everything = [v for values in sides.values() for v in values]
    if not everything:
        return "<p>No timings in the window.</p>"
    top = max(everything) or 1.0
    size = top / bins
    counts = {
        side: [sum(1 for v in values if min(int(v / size), bins - 1) == b) for b in range(bins)]
        for side, values in sides.items()
    }
    tallest = max(max(c) for c in counts.values()) or 1
    slot = (width - 2 * pad) / bins
    shapes = []
    for offset, (side, found) in enumerate(counts.items()):
        for b, n in enumerate(found):
            h = (height - 2 * pad) * n / tallest
            x = pad + b * slot + offset * slot / 2
            shapes.append(
                f'<rect class="bar {side}" x="{x + 1:.1f}" y="{height - pad - h:.1f}" '
                f'width="{slot / 2 - 2:.1f}" height="{h:.1f}" fill="{SIDE_COLOURS[side]}">'
                f"<title>{side}: {n} leads at {b * size:.0f}-{(b + 1) * size:.0f} ms</title></rect>"
            )
    labels = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#333"/>'
        f'<text x="{pad}" y="{height - pad + 14}" font-size="10">0 ms</text>'
        f'<text x="{width - pad}" y="{height - pad + 14}" font-size="10" text-anchor="end">'
        f"{top:.0f} ms</text>"
        f'<text x="{pad}" y="14" font-size="11" fill="{SIDE_COLOURS["control"]}">'
        "current process</text>"
        f'<text x="{pad + 120}" y="14" font-size="11" fill="{SIDE_COLOURS["candidate"]}">'
        "leadflow</text>"
    )
    return (
        f'<svg data-chart="latency" width="{width}" height="{height}" role="img" '
        f'aria-label="latency distributions">{labels}{"".join(shapes)}</svg>'
    )


def _svg_timeline(timeline: Timeline) -> str:
    rows = [("current process", "control", s) for s in timeline.control]
    rows += [("leadflow", "candidate", s) for s in timeline.candidate]
    if not rows:
        return ""
    width, row_h, label_w = 640, 18, 190
    end = max(start + length for _, _, (_, start, length) in rows) or 1.0
    scale = (width - label_w - 10) / end
    shapes = []
    for i, (who, side, (step, start, length)) in enumerate(rows):
        y = 4 + i * row_h
        shapes.append(
            f'<text x="4" y="{y + 12}" font-size="11">{escape(who)}: {escape(step)}</text>'
            f'<rect class="bar {side}" x="{label_w + start * scale:.1f}" y="{y}" '
            f'width="{max(1.0, length * scale):.1f}" height="{row_h - 4}" '
            f'fill="{SIDE_COLOURS[side]}"><title>{escape(step)}: {length:.1f} ms from '
            f"{start:.1f} ms</title></rect>"
        )
    height = 8 + len(rows) * row_h + 14
    axis = (
        f'<text x="{label_w}" y="{height - 2}" font-size="10">0 ms</text>'
        f'<text x="{width - 10}" y="{height - 2}" font-size="10" text-anchor="end">'
        f"{end:.1f} ms</text>"
    )
    return (
        f"<h3>{escape(timeline.email or timeline.lead_id)} ({escape(timeline.outcome)})</h3>"
        f'<svg data-chart="timeline" width="{width}" height="{height}" role="img" '
        f'aria-label="timeline">{"".join(shapes)}{axis}</svg>'
    )


def _confusion(report: ShadowReport, labels: Labels) -> str:
    tiers = sorted({*report.confusion, *(t for row in report.confusion.values() for t in row)})
    if not tiers:
        return "<p>No tiers to compare.</p>"
    biggest = max((n for row in report.confusion.values() for n in row.values()), default=1)
    head = "".join(f"<th>{escape(t)}</th>" for t in tiers)
    body = []
    for old in tiers:
        cells = []
        for new in tiers:
            n = report.confusion.get(old, {}).get(new, 0)
            tone = "220,235,255" if old == new else "255,220,215"
            alpha = 0.15 + 0.85 * n / biggest if n else 0
            cells.append(f'<td style="background: rgba({tone},{alpha:.2f})">{n}</td>')
        body.append(f"<tr><th>{escape(old)}</th>{''.join(cells)}</tr>")
    return (
        '<table data-chart="confusion" class="confusion">'
        f"<tr><th>{escape(labels.control)} \\ {escape(labels.candidate)}</th>"
        f"{head}</tr>{''.join(body)}</table>"
    )


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
.verdict { font-size: 1.4em; padding: .4em .8em; display: inline-block; border-radius: 4px; }
.ready { background: #dff5e1; } .not-ready { background: #fde2df; }
.not-enough-data { background: #fff4d6; }
.confusion td { text-align: right; min-width: 3em; }
.reasons { font-size: 12px; color: #444; }
"""


def as_html(report: ShadowReport, labels: Labels = SHADOW) -> str:
    """The report as one self-contained page; `labels`: the shadow report's (gates,
    noise, latency, timelines) or a backtest's (the changes only)."""
    control, candidate = escape(labels.control), escape(labels.candidate)
    agreement = _table(
        ["field", "agreement", f"{labels.control}'s own noise"]
        if labels.shadow
        else ["field", "unchanged"],
        [
            [f, _pct(a), _pct(report.noise.get(f))] if labels.shadow else [f, _pct(a)]
            for f, a in report.agreement.items()
        ],
    )
    patterns = []
    for p in report.patterns:
        examples = "".join(
            f"<li>{escape(e.email or e.lead_id)}"
            f'<div class="reasons">{control}: {escape(", ".join(e.control_reasons))} '
            f"({escape(e.control_rule or '')})<br>{candidate}: "
            f"{escape(', '.join(e.candidate_reasons))} "
            f"({escape(e.candidate_rule or '')})</div></li>"
            for e in p.examples
        )
        patterns.append(
            f"<h3>{p.count} lead{'' if p.count == 1 else 's'}: {escape(p.label)}</h3>"
            f'<ul class="examples">{examples}</ul>'
        )
    outcomes = escape(", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items())))
    if labels.shadow:
        summary = f"""<p class="verdict {report.verdict.replace(" ", "-")}" id="verdict">{
            escape(verdict_line(report))
        }</p>
<p>{report.sample} leads compared against {escape(", ".join(report.legacy) or "nothing")};
outcomes: {outcomes}.
Noise baseline: {report.baseline_sample} leads decided twice by the current process.
{_pilot(report)}</p>
<h2>Gates</h2>{_gates_table(report)}"""
    else:
        summary = f"""<p class="verdict" id="verdict">{escape(report.verdict)}</p>
<p>{report.sample} leads replayed ({escape(", ".join(report.legacy))}); outcomes: {outcomes}
(matched: nothing would change).</p>"""
    heading = "Agreement" if labels.shadow else "Unchanged"
    differences = "Commonest mismatches" if labels.shadow else "Commonest changes"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>leadflow {escape(labels.title.lower())}</title><style>{_STYLE}</style></head>
<body>
<h1>{escape(labels.title)}, {report.since:%Y-%m-%d} to {report.until:%Y-%m-%d}</h1>
{summary}
<h2>{heading} by field</h2>{agreement}
<h2>{heading} over time</h2>{_svg_agreement(report)}
<h2>Tier confusion</h2>{_confusion(report, labels)}
{_timing(report) if labels.shadow else ""}
<h2>{differences}</h2>{"".join(patterns) or "<p>None.</p>"}
{_timelines_section(report) if labels.shadow else ""}
</body></html>
"""


def _pilot(report: ShadowReport) -> str:
    if not report.pilot_leads:
        return ""
    return f"Pilot: {report.fallbacks} of {report.pilot_leads} leads fell back."


def _gates_table(report: ShadowReport) -> str:
    return _table(
        ["gate", "result", "detail"],
        [[g.name, "pass" if g.passed else "FAIL", g.detail] for g in report.gates],
    )


def _timing(report: ShadowReport) -> str:
    sides = _table(
        ["side", "leads", "p50", "p95", "error rate"],
        [
            [name, str(s.leads), _ms(s.p50_ms), _ms(s.p95_ms), _pct(s.error_rate)]
            for name, s in (("current process", report.control), ("leadflow", report.candidate))
        ],
    )
    return f"<h2>Latency</h2>{sides}{_svg_latency(report)}"


def _timelines_section(report: ShadowReport) -> str:
    timelines = "".join(_svg_timeline(t) for t in report.timelines)
    return f"""<h2>Where the time goes, old beside new</h2>
<p>Each step as a bar; leadflow's three side effects start together after the decision.</p>
{timelines or "<p>No step timings recorded.</p>"}"""

"""How many of the people in each export style reach the pipeline.

    .venv/bin/python benchmarks/exports.py

Reads every fixture in tests/fixtures/exports/ (one per export style, written from the
tools' documented column names; expected.json says how many people with a usable
email each holds) the way `leadflow run` reads a file (leadflow.flows.files:
`open_file`, then both passes of `StreamedIntake`), with the example rules' settings,
and prints per style: valid people, leads that reach the pipeline, records set aside,
fields left out of a lead that went on, and leads with an ISO country code. A file
leadflow refuses counts 0 with the first words of why. Run it on two checkouts to
compare them: it uses only what both have.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "exports"


def measure(path: Path) -> tuple[int, int, int, int, str]:
    from leadflow.flows.batch_intake import StreamedIntake
    from leadflow.integrations.file_source import open_file

    try:
        whole = StreamedIntake(open_file(path)).whole()
    except Exception as exc:  # refused: what a user sees
        return 0, 0, 0, 0, str(exc).split(": ", 1)[-1][:50]
    warnings = len(getattr(whole, "warnings", []))
    coded = sum(bool(lead.country) and len(lead.country) == 2 for lead in whole.leads)
    return len(whole.leads), len(whole.bad), warnings, coded, ""


def main() -> int:
    expected = json.loads((FIXTURES / "expected.json").read_text())
    rows = [("export style", "file", "valid", "reach", "set aside", "fields left out", "ISO")]
    totals = [0, 0]
    for name, about in expected.items():
        if name.startswith("_"):
            continue
        leads, bad, warnings, coded, refused = measure(FIXTURES / name)
        totals[0] += about["valid"]
        totals[1] += leads
        note = f" (refused: {refused})" if refused else ""
        rows.append(
            (about["style"], name, str(about["valid"]), f"{leads}{note}", str(bad),
             str(warnings), str(coded))
        )  # fmt: skip
    rows.append(("all", "", str(totals[0]), str(totals[1]), "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())

"""Write a CSV of N distinct, valid leads, for timing `leadflow run` on a big file.

    .venv/bin/python benchmarks/make_leads.py 2000 /tmp/leads-2000.csv
    time .venv/bin/leadflow run /tmp/leads-2000.csv     # first run: every side effect
    time .venv/bin/leadflow run /tmp/leads-2000.csv     # rerun: nothing left to do

The emails are fixed by N (no randomness), so the same file can be generated again
and a rerun finds its leads already done.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

TITLES = ["VP Sales", "Analyst", "Director of Marketing", "CTO", "Intern"]
COUNTRIES = ["US", "DE", "GB", "JP", "BR", "CA"]
SIZES = [15, 120, 600, 3000]


def write_leads(count: int, target: Path) -> None:
    fields = ["email", "first_name", "company", "title", "country", "employee_count", "source"]
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for i in range(count):
            writer.writerow(
                {
                    "email": f"lead{i}@company{i % 97}.test",
                    "first_name": f"Lead{i}",
                    "company": f"Company {i % 97}",
                    "title": TITLES[i % len(TITLES)],
                    "country": COUNTRIES[i % len(COUNTRIES)],
                    "employee_count": SIZES[i % len(SIZES)],
                    "source": "website",
                }
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    write_leads(args.count, args.target)
    print(f"{args.count} leads written to {args.target}")


if __name__ == "__main__":
    main()

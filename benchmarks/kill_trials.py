"""Kill trials: SIGKILL at random moments on every way in, then finish, and count at
the vendor what became of each side effect.

    .venv/bin/python benchmarks/kill_trials.py --trials 10
    .venv/bin/python benchmarks/kill_trials.py --trials 3 --paths batch,receiver --seed 7

The paths (batch, single, receiver, two, sigint), the stub vendor they count at and
what is counted are described in leadflow/kill_trials.py, which holds the machinery;
this script runs the trials and prints the table. tests/reliability/test_kill_trials.py
runs one trial of each path in CI.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from leadflow.kill_trials import DEFAULT_LEADS, PATHS, Setup, Trial, run_path

HERE = Path(__file__).resolve().parent


# --- the table -------------------------------------------------------------------------


@dataclass
class Row:
    path: str
    trials: int = 0
    leads: int = 0
    sent: int = 0
    lost: int = 0
    repeated: int = 0
    other_key: int = 0
    resent: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, trial: Trial) -> None:
        self.trials += 1
        self.leads += trial.count.leads
        self.sent += trial.count.sent
        self.lost += trial.count.lost
        self.repeated += trial.count.repeated
        self.other_key += trial.count.other_key
        self.resent += trial.resent
        if trial.count.lost:
            self.notes.append(f"lost {trial.count.lost_examples[:3]}")
        if trial.count.two_decisions:
            self.notes.append(f"{trial.count.two_decisions} leads sent with two decisions")
        if "rerun sent" in trial.notes:
            self.notes.append(trial.notes)


def table(rows: list[Row]) -> str:
    head = (
        "path",
        "trials",
        "leads",
        "side effects sent",
        "lost",
        "repeated (same key)",
        "repeats under another key",
        "re-sent (rerun's summary)",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (r.path, r.trials, r.leads, r.sent, r.lost, r.repeated, r.other_key, r.resent)
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


PATH_NAMES = {
    "batch": "leadflow run --batch-size 100",
    "single": "leadflow run --batch-size 1 --concurrency 16",
    "receiver": "serve-webhook, new receiver",
    "two": "two runs, one killed",
    "sigint": "Ctrl-C, drain 1 s",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per path")
    parser.add_argument(
        "--leads", type=int, default=0, help=f"leads per trial [default: {DEFAULT_LEADS}]"
    )
    parser.add_argument("--paths", default=",".join(PATHS), help=f"some of {','.join(PATHS)}")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    paths = [p for p in args.paths.split(",") if p]
    rows = {p: Row(PATH_NAMES[p]) for p in paths}
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from bench import prefect_server

    with (
        tempfile.TemporaryDirectory(prefix="kill-trials-") as tmp,
        prefect_server(Path(tmp)) as api_url,
    ):
        for number in range(args.trials):
            for path in paths:
                folder = Path(tmp) / f"{path}-{number}"
                folder.mkdir()
                started = time.monotonic()
                leads = args.leads or DEFAULT_LEADS[path]
                setup = Setup(folder, api_url, rng, leads, f"{path}{number}")
                try:
                    trial = run_path(path, setup)
                except (AssertionError, TimeoutError) as exc:  # the trial itself failed
                    rows[path].notes.append(f"trial {number + 1} failed: {exc}"[:2000])
                    print(f"{path} #{number + 1}: FAILED: {exc}"[:2000], flush=True)
                    continue
                rows[path].add(trial)
                print(
                    f"{path} #{number + 1}: {trial.line()} ({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
    print()
    print(table(list(rows.values())))
    for row in rows.values():
        for note in row.notes:
            print(f"{row.path}: {note}")
    return 1 if any(r.lost or r.other_key or r.notes for r in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

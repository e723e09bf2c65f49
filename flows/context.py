"""The one accessor for the runtime inside flows and tasks: `current_runtime()`.

Flow and task parameters must be plain data: Prefect records them, shows them in the
UI and hashes them for caching, so adapters, stores and engines cannot be passed as
parameters. A flow, a task, a cache-key function or a Prefect hook therefore asks
`current_runtime()`; a plain helper that a flow calls takes the runtime as an
argument instead, so a reader following a lead sees where it comes from.

`use_runtime()` puts a runtime in place for a block: `Runtime.open` does it for the
command line, tests and benchmarks do it to substitute adapters. With none in place
(a deployment run in a worker), the first call builds the runtime from the settings
and keeps it for later runs in the same process and event loop; the composition root
is imported there, inside the function, so flows do not depend on it at import.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

_in_place: ContextVar[Runtime | None] = ContextVar("leadflow_runtime", default=None)
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = (
    weakref.WeakKeyDictionary()
)


def current_runtime() -> Runtime:
    """The runtime in place, else the one built from settings for this event loop."""
    runtime = _in_place.get()
    if runtime is not None:
        return runtime
    loop = asyncio.get_running_loop()
    if loop not in _per_loop:
        from leadflow.app.runtime import build_runtime
        from leadflow.logging import ensure_logging

        built = build_runtime()
        ensure_logging(built.settings.log)
        _per_loop[loop] = built
    return _per_loop[loop]


def runtime_in_place() -> Runtime | None:
    """The runtime `current_runtime()` would answer with, without building one."""
    runtime = _in_place.get()
    if runtime is not None:
        return runtime
    try:
        return _per_loop.get(asyncio.get_running_loop())
    except RuntimeError:  # no running loop
        return None


@contextmanager
def use_runtime(runtime: Runtime) -> Iterator[Runtime]:
    """`current_runtime()` is `runtime` inside the block (this context only)."""
    token = _in_place.set(runtime)
    try:
        yield runtime
    finally:
        _in_place.reset(token)

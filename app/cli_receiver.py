"""`leadflow serve-webhook`: the webhook receiver as a command.

It binds its socket before saying anything (a busy port is one line), starts the
receiver (leadflow.flows.webhook_app) under uvicorn, and stops on Ctrl-C or SIGTERM
(a service manager's stop) by no longer taking leads and finishing those in flight;
its last words say what it did. Added to the app by leadflow.app.cli.
"""

from __future__ import annotations

import asyncio
import functools
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from leadflow.app.console import checked_settings, err, fail, run_command, runtime_for
from leadflow.settings import SettingsError, load_settings

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime


def serve_webhook(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every log line.")] = False,
) -> None:
    """Receive leads over HTTP: POST one lead as JSON to /leads. It is kept in
    leadflow's inbox, answered 202, and run through the pipeline inside a long-lived
    lead-stream flow run (422 names a bad field; 503 with Retry-After when too many
    are waiting). Ctrl-C stops taking leads, lets those in flight finish, and keeps
    the rest for the next start."""
    settings = checked_settings(verbose)
    from leadflow.flows.webhook_app import ReceiverSettings

    try:
        own = load_settings(ReceiverSettings)
    except SettingsError as exc:
        raise fail(str(exc)) from None
    host, port = host or own.host, port or own.port
    try:
        own.check_exposure(host)
    except SettingsError as exc:
        raise fail(str(exc)) from None
    runtime = runtime_for(settings)
    listening_socket = _listen(host, port)
    stream = run_command(
        _serve_webhook(runtime, own, listening_socket, f"http://{host}:{port}/leads")
    )
    err.print(stream.describe(), highlight=False, soft_wrap=True)  # one line, however long
    err.print("stopped: leads not finished are kept in the inbox for the next start")


def _listen(host: str, port: int):
    """The receiver's socket, bound before anything is said or started: a port in use
    is one line naming the setting, not a traceback after "receiving leads"."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise fail(
            f"cannot listen on {host}:{port} ({exc.strerror}); stop what uses it, or choose "
            "another port with --port or LEADFLOW_RECEIVER_PORT"
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _serve_webhook(runtime: Runtime, own, sock, where: str):
    """Serve until stopped; returns the receiver's lead stream, for its last words."""
    from leadflow.flows.receiver_guard import server_config
    from leadflow.flows.temporary_server import prefect_api
    from leadflow.flows.webhook_app import create_app

    async with prefect_api():
        async with runtime.opened():
            app = create_app(runtime, settings=own)
            config = server_config(app, own, backlog=2048)
            server = _stopping_server()(config)
            stop = {sig: functools.partial(server.handle_exit, sig, None) for sig in STOP_SIGNALS}
            app.state.stream.keep_signals(stop)  # its flow runs must not take SIGTERM over
            err.print(f"receiving leads at {where} (Ctrl-C to stop)", highlight=False)
            await server.serve(sockets=[sock])
    return app.state.stream


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and a service manager's stop


def _stopping_server():
    """uvicorn's Server, stopped by SIGINT or SIGTERM without re-raising the signal
    once stopped (its default, which turns a clean stop into tracebacks): the first
    signal stops taking requests and lets the receiver drain; a second one forces."""
    from contextlib import contextmanager

    import uvicorn

    class StoppingServer(uvicorn.Server):
        @contextmanager
        def capture_signals(self):
            loop = asyncio.get_running_loop()
            signals = STOP_SIGNALS
            for sig in signals:
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in signals:
                    loop.remove_signal_handler(sig)

    return StoppingServer

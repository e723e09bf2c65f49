"""The adapter contract kit: the checks every leadflow adapter must pass, for an
adapter package's own tests (leadflow runs it over each of its built-in adapters).

Subclass the class for your adapter's kind in a test module and give it the fixtures
it asks for; pytest collects the inherited tests:

    from leadflow.testing import CRMContract, HttpVendor

    class TestAcmeCRM(CRMContract):
        @pytest.fixture
        def entry_point(self):            # the name in [project.entry-points."leadflow.adapters"]
            return "crm.acme"

        @pytest.fixture
        def vendor(self):                 # a stand-in for Acme's API
            return HttpVendor(ok=acme_answers, effects=acme_keeps)

        @pytest.fixture
        def adapter(self, vendor):        # the adapter, talking to the stand-in
            return AcmeCRM(AcmeSettings(token="t"), transport=vendor.transport)

What is checked, per kind:

- every adapter: its entry point loads the class and names its kind and name;
  `from_settings` (or `from_target`) connects to nothing, starts no process and
  writes no file; `aclose()` may be called twice; its `settings_class` is the
  settings type it gives the adapter base (`CRM[AcmeSettings]`), or a subclass;
- side-effecting adapters (crm, notifier, event_sink): a vendor failure with 503 or
  429 raises `TransientError` (a 429 `RateLimited`), with 400 `PermanentError`;
  writing the same lead twice with the same idempotency key leaves one effect; a bulk
  call with a lead twice inside leaves one effect per lead; a CRM's bulk methods
  answer in the order they were asked;
- scorers: `score_many` answers in order; sources: `records()` yields in the order
  the vendor lists them, and a 503 raises `TransientError`; legacy processes: built
  from their target without I/O, `decide` answers a Decision.

A vendor stand-in is any object with `fail(status)` and `kept(leads)` (see `Vendor`);
`HttpVendor` is one for HTTP adapters (an `httpx.MockTransport` handler) and
`LocalStore` one for adapters that keep their effects themselves.

Nothing in leadflow imports this module; it imports pytest, which only tests have.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast, get_args, get_origin

import httpx
import pytest

from leadflow.integrations.base import (
    CRM,
    KINDS,
    Adapter,
    EventSink,
    LeadEvent,
    LeadSource,
    LegacyProcess,
    Notifier,
    Scorer,
)
from leadflow.integrations.errors import PermanentError, RateLimited, TransientError
from leadflow.integrations.registry import ENTRY_POINT_GROUP, get_adapter_class
from leadflow.integrations.wiring import construct, own_settings
from leadflow.models import Decision, FollowUpType, Lead, ScoreReason
from leadflow.rules import Rules
from leadflow.settings import ScorerSettings, Settings, load_settings
from leadflow.shadow_settings import ShadowSettings

__all__ = [
    "AdapterContract",
    "CRMContract",
    "EventSinkContract",
    "HttpVendor",
    "LeadSourceContract",
    "LegacyContract",
    "LocalStore",
    "NotifierContract",
    "ScorerContract",
    "SideEffectContract",
    "Vendor",
    "make_decision",
    "make_event",
    "make_lead",
    "no_io",
    "sample_rules",
]


# --- sample data -----------------------------------------------------------------


def make_lead(i: int = 1, **extra: object) -> Lead:
    """Lead number `i`: a distinct person per number."""
    return Lead.from_record(
        {
            "email": f"Ava{i}.Stone@Northwind.test",
            "first_name": "Ava",
            "last_name": "Stone",
            "company": "Northwind",
            "title": "VP Sales",
            "country": "us",
            "source": "website",
            **extra,
        }
    )


def make_decision(lead: Lead, *, rep: str = "rep.one@example.test", score: int = 72) -> Decision:
    return Decision(
        lead_id=lead.id,
        score=score,
        score_reasons=[
            ScoreReason(group="fit", rule="title: vp", points=30),
            ScoreReason(group="engagement", rule="demo_requested", points=25),
            ScoreReason(group="fit", rule="country: US", points=10),
            ScoreReason(group="fit", rule="source: website", points=7),
        ],
        tier="hot",
        follow_up=FollowUpType.CALL,
        sla_minutes=15,
        due_at=datetime(2026, 11, 22, 9, 15, tzinfo=UTC),
        rep=rep,
        assignment_rule="territory:na/round_robin",
        rules_version="test-1",
    )


def make_event(lead: Lead, key: str) -> LeadEvent:
    return LeadEvent(
        event_id=key,
        lead_id=lead.id,
        occurred_at=datetime(2026, 11, 22, 8, tzinfo=UTC),
        decision=make_decision(lead),
    )


def sample_rules() -> Rules:
    """A small valid rules set, for adapters built from settings and rules."""
    return Rules.model_validate(
        {
            "version": "contract-1",
            "scoring": {"fit": {"title_keywords": [{"keywords": ["vp"], "points": 30}]}},
            "tiers": [
                {"name": "hot", "min_score": 25, "follow_up": "call", "sla_minutes": 15},
                {"name": "cold", "min_score": 0, "follow_up": "nurture"},
            ],
            "assignment": {"fallback_owner": "queue@example.test"},
        }
    )


# --- no I/O while building -------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_IO_EVENTS = {
    "socket.connect": "connects to",
    "socket.getaddrinfo": "resolves",
    "socket.bind": "binds",
    "subprocess.Popen": "starts",
    "os.system": "runs",
    "os.posix_spawn": "starts",
    "os.exec": "executes",
    "sqlite3.connect": "opens database",
    "os.mkdir": "creates folder",
    "os.remove": "removes",
    "os.rename": "renames",
}
_watch: dict[int, list[str]] = {}  # thread id -> what it did, while no_io() is open


def _audit(event: str, args: tuple[Any, ...]) -> None:
    seen = _watch.get(threading.get_ident())
    if seen is None:
        return
    if event == "open":
        path, mode, flags = (*args, None, None, 0)[:3]
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else False
        if writes or (mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS):
            if "__pycache__" not in str(path):  # importing a module is not the adapter's I/O
                seen.append(f"writes {path}")
    elif event in _IO_EVENTS:
        seen.append(f"{_IO_EVENTS[event]} {args[0] if args else ''}".strip())


_hooked = False


@contextmanager
def no_io() -> Iterator[list[str]]:
    """Collects what this thread does that is I/O (connections, name look-ups,
    processes, databases, writing or creating files) while the block runs; reading
    files (settings, rules) is allowed. An audit hook (PEP 578), installed once."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True
    seen: list[str] = []
    _watch[threading.get_ident()] = seen
    try:
        yield seen
    finally:
        _watch.pop(threading.get_ident(), None)


# --- vendor stand-ins --------------------------------------------------------------


class Vendor(Protocol):
    """What the kit needs from a stand-in for the vendor."""

    def fail(self, status: int) -> None:
        """Make the next writes fail as the vendor would with this HTTP status (503,
        429: try again; 400: never). Call `pytest.skip` when nothing remote can fail."""

    async def kept(self, leads: Sequence[Lead]) -> list[str]:
        """One entry per side effect the vendor keeps for these leads, after its own
        de-duplication: the lead's email or id."""


class HttpVendor:
    """An HTTP vendor as an `httpx.MockTransport` handler: records each request and
    answers with `ok(request)`, or with the status set by `fail` (reads, GET, answer
    normally, unless `reads_fail`: for sources). `effects(request, emails)` says what
    the vendor keeps from a request: (its de-duplication key, lead email or id) pairs;
    the same key twice is one effect. Pass `ok` as a class to get a fresh, stateful
    handler per vendor."""

    def __init__(
        self,
        ok: Callable[[httpx.Request], httpx.Response],
        effects: Callable[[httpx.Request, set[str]], list[tuple[str, str]]] | None = None,
        *,
        reads_fail: bool = False,
    ) -> None:
        self.ok = ok() if isinstance(ok, type) else ok
        self.effects = effects or (lambda request, emails: [])
        self.reads_fail = reads_fail
        self.fail_status: int | None = None
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.fail_status is not None and (self.reads_fail or request.method != "GET"):
            headers = {"Retry-After": "0"} if self.fail_status == 429 else {}
            return httpx.Response(self.fail_status, headers=headers, json={"error": "forced"})
        self.requests.append(request)
        return self.ok(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def fail(self, status: int) -> None:
        self.fail_status = status

    async def kept(self, leads: Sequence[Lead]) -> list[str]:
        emails = {lead.email for lead in leads}
        kept: dict[str, str] = {}
        for request in self.requests:
            for key, who in self.effects(request, emails):
                kept[key] = who
        return list(kept.values())

    def doubled(self, leads: Sequence[Lead]) -> list[str]:
        """Leads that one request carries twice (a bulk call must send each once)."""
        emails = {lead.email for lead in leads}
        found = []
        for request in self.requests:
            per = Counter(who for _, who in self.effects(request, emails))
            found += [who for who, n in per.items() if n > 1]
        return found


def mentioned(request: httpx.Request, emails: set[str]) -> list[str]:
    """The lead emails a request's body mentions, each once: for chat messages."""
    text = request.content.decode(errors="replace")
    return sorted(e for e in emails if e in text)


def json_body(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


class LocalStore:
    """For an adapter that keeps its effects itself (a database, a file): `read()`
    lists them, one lead email or id per effect. Nothing remote can fail."""

    def __init__(self, read: Callable[[], Awaitable[list[str]] | list[str]]) -> None:
        self.read = read

    def fail(self, status: int) -> None:
        pytest.skip("a local adapter has no remote that can fail")

    async def kept(self, leads: Sequence[Lead]) -> list[str]:
        found = self.read()
        return list(await found) if inspect.isawaitable(found) else list(found)


# --- the contracts ---------------------------------------------------------------


A = TypeVar("A", bound=Adapter[Any])
L = TypeVar("L", bound=LegacyProcess[Any])


def build_from_settings(cls: type[A], settings: Settings, rules: Rules) -> A:
    """`cls.from_settings` called as the wiring calls it (its own settings from
    `settings_class`; a scorer's carry the scoring rules)."""
    return construct(cls, settings, rules)


def build_from_target(cls: type[L], target: str, settings: Settings, rules: Rules) -> L:
    """`cls.from_target` called as `leadflow shadow --legacy KIND:TARGET` calls it."""
    shadow = load_settings(ShadowSettings)
    return cls.from_target(target, settings, own_settings(cls), shadow=shadow)


class AdapterContract(Generic[A]):
    """Checks for every adapter. Fixtures to give: `entry_point` ("kind.name") and
    `adapter` (built against your vendor stand-in); optionally `settings_env` (the
    environment `from_settings` needs, e.g. {"LEADFLOW_ACME_TOKEN": "t"})."""

    @pytest.fixture
    def settings_env(self) -> dict[str, str]:
        return {}

    @pytest.fixture
    def adapter_class(self, entry_point: str) -> type[A]:
        kind, _, name = entry_point.partition(".")
        # of this contract's kind: test_registered_under_its_entry_point checks it
        return cast(type[A], get_adapter_class(kind, name))

    @pytest.fixture
    def built_from_settings(
        self,
        adapter_class: type[A],
        settings_env: dict[str, str],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> Iterator[tuple[A, list[str]]]:
        """The adapter built the way a worker builds it, in an empty working folder,
        with what it did that was I/O."""
        monkeypatch.chdir(tmp_path)
        for key, value in settings_env.items():
            monkeypatch.setenv(key, value)
        settings, rules = load_settings(Settings), sample_rules()
        with no_io() as seen:
            adapter = self.build_from_settings(adapter_class, settings, rules)
        seen += [f"created {path.name}" for path in tmp_path.iterdir()]
        yield adapter, seen

    def build_from_settings(self, cls: type[A], settings: Settings, rules: Rules) -> A:
        return build_from_settings(cls, settings, rules)

    async def exercise(self, adapter: A) -> None:
        """One ordinary call, so that `aclose` has something to close."""

    def test_registered_under_its_entry_point(self, entry_point: str, adapter: A) -> None:
        kind, _, name = entry_point.partition(".")
        found = entry_points(group=ENTRY_POINT_GROUP, name=entry_point)
        assert found, f"no entry point {entry_point!r} in {ENTRY_POINT_GROUP}: is it installed?"
        cls = next(iter(found)).load()
        assert isinstance(adapter, cls), f"{entry_point} loads {cls}, not {type(adapter)}"
        assert kind in KINDS and issubclass(cls, KINDS[kind]), f"{cls} is not a {kind} adapter"
        assert cls.kind == kind
        assert get_adapter_class(kind, name) is cls
        # the name the class gives itself is registered too (aliases may add others)
        own = f"{cls.kind}.{cls.name}"
        assert any(e.load() is cls for e in entry_points(group=ENTRY_POINT_GROUP, name=own)), (
            f"{cls.__qualname__}.name is {cls.name!r}, but {own!r} is not an entry point"
        )

    async def test_from_settings_does_no_io(self, built_from_settings: tuple[A, list[str]]) -> None:
        adapter, seen = built_from_settings
        assert seen == [], f"building the adapter did I/O: {seen}"
        await adapter.aclose()
        await adapter.aclose()

    async def test_aclose_is_safe_twice(self, adapter: A) -> None:
        try:
            await self.exercise(adapter)
        finally:
            await adapter.aclose()
        await adapter.aclose()

    def test_settings_class_is_its_type_parameter(self, adapter_class: type[A]) -> None:
        declared = declared_settings(adapter_class)
        if declared is UNDECLARED:
            pytest.skip(f"{adapter_class.__qualname__} gives its base no settings type")
        built_with = adapter_class.settings_class
        if built_with is None and issubclass(adapter_class, Scorer):
            built_with = ScorerSettings  # what the wiring gives a scorer without one
        if declared is None:
            assert built_with is None, (
                f"{adapter_class.__qualname__} says it has no settings (None) but its "
                f"settings_class is {built_with.__qualname__}"
            )
        else:
            assert isinstance(declared, type) and built_with is not None, (
                f"{adapter_class.__qualname__} is typed with {declared!r} settings but its "
                "settings_class is None: `from_settings` would be given None"
            )
            assert issubclass(built_with, declared), (
                f"{adapter_class.__qualname__}.settings_class is {built_with.__qualname__}, "
                f"not the {declared.__qualname__} its type parameter says"
            )


UNDECLARED = object()


def declared_settings(cls: type[Adapter[Any]]) -> object:
    """The settings type `cls` gives the adapter base's type parameter (a class, or None
    for an adapter without settings), or UNDECLARED when no class on its way to
    Adapter fills the parameter in (`class AcmeCRM(CRM)`)."""
    for klass in cls.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Adapter):
                argument = next(iter(get_args(base)), None)
                if not isinstance(argument, TypeVar):
                    return None if argument is type(None) else argument
    return UNDECLARED


class SideEffectContract(AdapterContract[A]):
    """Checks for adapters with side effects. Fixtures to give besides the base
    ones: `vendor` (a `Vendor`: `HttpVendor`, `LocalStore` or your own)."""

    async def write(self, adapter: A, lead: Lead, key: str) -> Any:
        raise NotImplementedError

    async def write_many(self, adapter: A, leads: Sequence[Lead]) -> Any:
        raise NotImplementedError

    def key(self, lead: Lead) -> str:
        return f"contract:{lead.id}"

    async def exercise(self, adapter: A) -> None:
        await self.write(adapter, make_lead(1), self.key(make_lead(1)))

    @pytest.mark.parametrize("status", [503, 429])
    async def test_a_transient_failure_is_raised_as_transient(
        self, adapter: A, vendor: Vendor, status: int
    ) -> None:
        vendor.fail(status)
        try:
            with pytest.raises(TransientError) as caught:
                await self.write(adapter, make_lead(1), self.key(make_lead(1)))
            if status == 429 and isinstance(vendor, HttpVendor):
                assert isinstance(caught.value, RateLimited)
        finally:
            await adapter.aclose()

    async def test_a_permanent_failure_is_not_retried(self, adapter: A, vendor: Vendor) -> None:
        vendor.fail(400)
        try:
            with pytest.raises(PermanentError):
                await self.write(adapter, make_lead(1), self.key(make_lead(1)))
        finally:
            await adapter.aclose()

    async def test_a_repeated_write_leaves_one_effect(self, adapter: A, vendor: Vendor) -> None:
        lead = make_lead(1)
        try:
            first = await self.write(adapter, lead, "once:1")
            again = await self.write(adapter, lead, "once:1")
        finally:
            await adapter.aclose()
        assert first == again  # the same record id from a CRM; None from the others
        assert _per_lead(await vendor.kept([lead]), [lead]) == Counter({lead.email: 1})

    async def test_a_bulk_call_with_a_duplicate_inside(self, adapter: A, vendor: Vendor) -> None:
        leads = [make_lead(i) for i in (1, 2, 1, 3)]
        try:
            result = await self.write_many(adapter, leads)
        finally:
            await adapter.aclose()
        if isinstance(adapter, CRM):
            assert len(result) == 4 and result[0] == result[2]
        distinct = [make_lead(i) for i in (1, 2, 3)]
        kept = await vendor.kept(distinct)
        assert _per_lead(kept, distinct) == Counter({lead.email: 1 for lead in distinct})
        assert getattr(vendor, "doubled", lambda leads: [])(distinct) == []


def _per_lead(kept: list[str], leads: Sequence[Lead]) -> Counter[str]:
    """Effects per lead email, whether the vendor names leads by email or by id."""
    by_id = {lead.id: lead.email for lead in leads}
    return Counter(by_id.get(who, who) for who in kept)


class CRMContract(SideEffectContract[CRM[Any]]):
    async def write(self, adapter: CRM[Any], lead: Lead, key: str) -> str:
        return await adapter.upsert(lead, make_decision(lead), idempotency_key=key)

    async def write_many(
        self, adapter: CRM[Any], leads: Sequence[Lead]
    ) -> Sequence[str | BaseException]:
        return await adapter.upsert_many([(x, make_decision(x), self.key(x)) for x in leads])

    async def test_bulk_methods_keep_order(self, adapter: CRM[Any], vendor: Vendor) -> None:
        leads = [make_lead(i) for i in (3, 1, 2)]
        try:
            ids = await self.write_many(adapter, leads)
            one_by_one = [await self.write(adapter, x, self.key(x)) for x in leads]
            matches = await adapter.look_up_many(leads)
            single = [await adapter.look_up(x) for x in leads]
        finally:
            await adapter.aclose()
        assert len(set(ids)) == 3 and ids == one_by_one
        assert matches == single


class NotifierContract(SideEffectContract[Notifier[Any]]):
    async def write(self, adapter: Notifier[Any], lead: Lead, key: str) -> None:
        return await adapter.notify(lead, make_decision(lead), idempotency_key=key)

    async def write_many(self, adapter: Notifier[Any], leads: Sequence[Lead]) -> None:
        return await adapter.notify_many([(x, make_decision(x), self.key(x)) for x in leads])


class EventSinkContract(SideEffectContract[EventSink[Any]]):
    async def write(self, adapter: EventSink[Any], lead: Lead, key: str) -> None:
        return await adapter.record(make_event(lead, key))

    async def write_many(self, adapter: EventSink[Any], leads: Sequence[Lead]) -> None:
        return await adapter.record_many([make_event(x, self.key(x)) for x in leads])


class ScorerContract(AdapterContract[Scorer[Any]]):
    """Fixtures: `entry_point`, `adapter`."""

    async def exercise(self, adapter: Scorer[Any]) -> None:
        await adapter.score(make_lead(1), None)

    async def test_bulk_methods_keep_order(self, adapter: Scorer[Any]) -> None:
        titles = ["VP Sales", "Intern", "Director of Sales", "Head of Growth"]
        leads = [make_lead(i, title=t) for i, t in enumerate(titles)]
        try:
            many = await adapter.score_many(leads, [None] * len(leads))
            single = [await adapter.score(x, None) for x in leads]
        finally:
            await adapter.aclose()
        assert many == single
        assert len({s.value for s in single}) > 1, "the sample leads should score differently"


class LeadSourceContract(AdapterContract[LeadSource[Any]]):
    """Fixtures: `entry_point`, `vendor`, `adapter`, and `expected` (the emails the
    vendor lists, in its order)."""

    async def exercise(self, adapter: LeadSource[Any]) -> None:
        async for _ in adapter.records():
            break

    async def test_records_come_in_order(
        self, adapter: LeadSource[Any], expected: list[str]
    ) -> None:
        try:
            records = [r async for r in adapter.records()]
        finally:
            await adapter.aclose()
        assert [r.data.get("email") for r in records] == expected
        positions = [r.position for r in records]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)

    async def test_a_transient_failure_is_raised_as_transient(
        self, adapter: LeadSource[Any], vendor: Vendor
    ) -> None:
        vendor.fail(503)
        try:
            with pytest.raises(TransientError):
                await self.exercise(adapter)
        finally:
            await adapter.aclose()


class LegacyContract(AdapterContract[LegacyProcess[Any]]):
    """Fixtures: `entry_point`, `adapter`, `target` (the part after `KIND:` that
    `from_target` is built from) and `record` (a raw lead it can decide)."""

    def build_from_settings(
        self, cls: type[LegacyProcess[Any]], settings: Settings, rules: Rules
    ) -> LegacyProcess[Any]:
        return build_from_target(cls, self._target, settings, rules)

    @pytest.fixture(autouse=True)
    def _keep_target(self, target: str) -> None:
        self._target = target

    async def test_decide_answers_a_decision(
        self, adapter: LegacyProcess[Any], record: dict[str, Any]
    ) -> None:
        try:
            decision = await adapter.decide(record)
        finally:
            await adapter.aclose()
        assert isinstance(decision, Decision)

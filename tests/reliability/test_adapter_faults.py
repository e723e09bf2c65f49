"""Each side-effecting HTTP adapter against each fault, over a real loopback socket.

The pipeline decides what to retry from the error an adapter raises, so each fault
must come out as the right class: 5xx, resets, timeouts and a stalled body are
transient; a 429 is RateLimited with the wait the vendor asked for (seconds or an
HTTP date); a body that is not JSON, or an HTTP 200 that carries an error, is an
error of its own kind, never a crash and never taken as done. After the fault the
same adapter writes normally: the vendor then holds the effect exactly once.
"""

from __future__ import annotations

import time

import pytest

from leadflow.integrations.errors import AdapterError, RateLimited, TransientError
from leadflow.loopback_vendor import Fault, FaultServer, every_kind
from leadflow.once import once_key
from tests.support.builders import make_decision, make_lead
from tests.support.vendors import TIMEOUT, Vendor

FAULTS = every_kind(TIMEOUT, retry_after=2)
TRANSIENT = {"http_500", "http_503", "connection_reset", "read_timeout", "slow_drip"}


async def attempt(vendor: Vendor, adapter, n: int = 1):
    lead = make_lead(n)
    return await vendor.write(adapter, lead, make_decision(lead), once_key("notify", lead))


def kept(vendor: Vendor, server: FaultServer, n: int = 1) -> int:
    """How many effects the vendor holds for lead n, after its own de-duplication."""
    email = make_lead(n).email
    keys = {key for request in server.processed() for key, who in vendor.effects(request, {email})}
    return len(keys)


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_fault_is_classified_and_the_adapter_recovers(
    vendor: Vendor, server: FaultServer, fault: str
) -> None:
    adapter = vendor.build(server.base_url)
    try:
        server.inject(FAULTS[fault]())
        began = time.monotonic()
        try:
            await attempt(vendor, adapter)
            outcome: Exception | None = None
        except Exception as exc:
            outcome = exc
        took = time.monotonic() - began

        if fault in TRANSIENT:
            assert isinstance(outcome, TransientError), repr(outcome)
            # A stalled vendor is cut off: the call never outlives its deadline much.
            assert took < TIMEOUT * 3, f"{fault} held the call {took:.1f} s"
        elif fault.startswith("429"):
            assert isinstance(outcome, RateLimited), repr(outcome)
            expected = 2 if fault == "429_seconds" else 3  # the date: 3 s ahead
            assert expected - 2.5 <= outcome.retry_after <= expected  # whole-second dates
        else:  # malformed JSON: an error of its own, or a vendor that ignores bodies
            assert outcome is None or isinstance(outcome, AdapterError), repr(outcome)
            if outcome is not None:
                assert "not JSON" in str(outcome)
        assert server.faults_given()[FAULTS[fault]().kind] == 1

        # The vendor is back: the adapter writes, and the effect is there once.
        await attempt(vendor, adapter)
        assert kept(vendor, server) == 1 if vendor.dedupes or outcome else True
    finally:
        await adapter.aclose()


async def test_a_200_that_carries_an_error_is_not_taken_as_done(
    vendor: Vendor, server: FaultServer
) -> None:
    if vendor.error_200 is None:
        pytest.skip(f"{vendor.id}: the vendor's protocol has no error inside a 200")
    adapter = vendor.build(server.base_url)
    try:
        server.inject(Fault.ok_with_error(vendor.error_200))
        with pytest.raises(vendor.error_200_raises):
            await attempt(vendor, adapter)
        await attempt(vendor, adapter)
        assert kept(vendor, server) == 1
    finally:
        await adapter.aclose()

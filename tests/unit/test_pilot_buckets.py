"""Pilot buckets: sticky by lead id, and the share holds."""

from __future__ import annotations

import pytest

from leadflow.flows.cutover import in_pilot


@pytest.mark.parametrize("share", [0.05, 0.1, 0.5])
def test_the_share_of_leads_in_the_pilot_is_within_tolerance(share):
    ids = [f"lead_{i:06d}" for i in range(20_000)]
    chosen = sum(in_pilot(lead, share) for lead in ids)
    assert abs(chosen / len(ids) - share) < 0.01


def test_a_lead_always_lands_in_the_same_bucket_and_a_bigger_share_only_adds():
    ids = [f"lead_{i}" for i in range(2_000)]
    first = {lead for lead in ids if in_pilot(lead, 0.2)}
    assert first == {lead for lead in ids if in_pilot(lead, 0.2)}
    assert first <= {lead for lead in ids if in_pilot(lead, 0.3)}
    assert not any(in_pilot(lead, 0.0) for lead in ids)
    assert all(in_pilot(lead, 1.0) for lead in ids)

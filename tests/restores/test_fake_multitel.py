"""The simulated Multitel's counters (restores/fake_multitel.py), on which make chaos counts
numbers restored twice upstream."""

from __future__ import annotations

import requests

from restores.fake_multitel import FakeMultitelServer
from tests.support.parties import multitel_credentials


def restore(server: FakeMultitelServer, number: str) -> int:
    username, password = next(iter(multitel_credentials("owner").items()))
    return requests.get(
        f"{server.base_url}/v3/restore/{number}", auth=(username, password), timeout=5
    ).status_code


def test_it_counts_the_calls_that_restored_a_number_and_no_other(fake_multitel: FakeMultitelServer) -> None:
    assert restore(fake_multitel, "15551230101") == 200  # restored
    assert restore(fake_multitel, "15551230101") == 200  # restored again
    assert restore(fake_multitel, "15551230191") == 503  # ..91: 503 at the first call
    assert restore(fake_multitel, "15551230191") == 200  # then restored
    assert restore(fake_multitel, "15551230105") == 404  # ..5: not found
    assert restore(fake_multitel, "15551230102") == 200  # ..2: an error envelope, not restored
    requests.post(f"{fake_multitel.base_url}/_fake/outage", json={"seconds": 60}, timeout=5)
    assert restore(fake_multitel, "15551230111") == 503  # every call during an outage

    stats = fake_multitel.state.stats()

    assert stats["restored_by_number"] == {"15551230101": 2, "15551230191": 1}
    assert stats["calls_by_number"]["15551230191"] == 2

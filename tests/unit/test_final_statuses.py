"""The product and its test peer agree on which run statuses are final.

Each keeps its own list, written from the runs API docs
(https://developer.hashicorp.com/terraform/cloud-docs/api-docs/run#run-states, see
docs/tfc-api.md): the simulator must not import the product, or the end-to-end tests would
agree with the product by construction. This test is where a divergence shows.
"""

from __future__ import annotations

from watchdog.model import FINAL_STATUSES
from watchdog.simulator import runs


def test_the_product_and_the_simulator_have_the_same_final_statuses() -> None:
    only_product = FINAL_STATUSES - runs.FINAL
    only_simulator = runs.FINAL - FINAL_STATUSES
    assert (only_product, only_simulator) == (set(), set())


def test_the_simulators_final_status_group_is_its_final_list() -> None:
    # `filter[status_group]=final` answers with the same set the run state machine ends in.
    assert runs.STATUS_GROUPS["final"] == runs.FINAL


def test_the_simulator_keeps_its_own_list() -> None:
    # Equal, not the same object: an import would make the first test unable to fail.
    assert runs.FINAL is not FINAL_STATUSES

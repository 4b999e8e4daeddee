"""The suite's own machinery: what the test tiers rely on to run as designed."""

import pytest


@pytest.mark.xdist_group("suite-setup-check")
def test_xdist_groups_reach_one_worker(request):
    """Under `--dist loadgroup` (addopts), a grouped test's node id carries its group, which is how
    xdist sends a group (a loopback cluster's tests, a session-scoped sweep's) to one worker.
    pytest 9.2 with pytest-xdist 3.8 dropped the suffix silently: grouped tests spread over both
    workers and a shared sweep ran twice (constraints.txt pins pytest below 9.2)."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not an xdist worker under --dist loadgroup")
    assert request.node.nodeid.endswith("@suite-setup-check"), request.node.nodeid

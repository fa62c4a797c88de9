"""The queue tests' labs: each module's POC, rebuilt with its example pipelines and no request yet."""

import pytest

from pgqueue.queues import client, labs


@pytest.fixture
def lab(request):
    """The module's lab (its POC) with every step and the example pipelines, but no requests yet."""
    client.fresh_lab(request.module.POC)
    return request.module.POC


@pytest.fixture
def conn(lab):
    with labs.connect(lab) as connection:
        yield connection

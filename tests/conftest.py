from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import Mosquitto, running_mosquitto


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    with running_mosquitto() as broker:
        yield broker

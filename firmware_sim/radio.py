"""Received signal strength from distance: the log-distance path-loss model with shadowing.

``PathLossModel`` is the demo store's simple model; ``RadioParams`` parameterises the scenario
stores (see ``firmware_sim.channel``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

RSSI_FLOOR_DBM = -100
RSSI_CEILING_DBM = 0
# The model diverges at 0 m; closer than this a phone is effectively on the antenna.
_MIN_DISTANCE_M = 0.1


@dataclass(frozen=True)
class PathLossModel:
    rssi_at_1m: float = -59.0
    exponent: float = 2.0
    """2 in free space, 2.5 to 4 indoors through shelves and people."""
    shadowing_db: float = 2.5
    """Standard deviation of the log-normal shadowing around the mean."""

    def mean_rssi(self, distance_m: float) -> float:
        distance = max(distance_m, _MIN_DISTANCE_M)
        return self.rssi_at_1m - 10.0 * self.exponent * math.log10(distance)

    def rssi(self, distance_m: float, rng: random.Random) -> int:
        value = self.mean_rssi(distance_m) + rng.gauss(0.0, self.shadowing_db)
        return round(min(RSSI_CEILING_DBM, max(RSSI_FLOOR_DBM, value)))


class RadioParams(BaseModel):
    """The radio model of a simulated store; every value can be set per scenario (``radio:``).

    Received power of one packet, in dBm::

        rssi = tx_1m + device offset - 10 n log10(d) - walls - body + shadowing + fading

    where ``tx_1m`` is what the device delivers at 1 m in free space, ``d`` the 3-D distance in
    metres. docs/simulator.md gives the sources of the defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path_loss_exponent: float = Field(
        default=2.2,
        gt=0,
        description=(
            "n of the log-distance model: 2 in free space; ITU-R P.1238 gives about 2.2 for "
            "commercial areas and 2.8-3.0 for homes and offices around 2 GHz"
        ),
    )
    shadowing_db: float = Field(
        default=3.0,
        ge=0,
        description=(
            "standard deviation of the log-normal shadowing in line of sight (3GPP TR 38.901, "
            "indoor hotspot LOS: 3 dB)"
        ),
    )
    shadowing_nlos_db: float = Field(
        default=6.0,
        ge=0,
        description=(
            "the same through walls or shelves (TR 38.901 InH NLOS: 8.03 dB, less here since "
            "the walls' own losses are modelled)"
        ),
    )
    nlos_wall_db: float = Field(
        default=10.0,
        gt=0,
        description=(
            "wall loss on the path from which shadowing is the NLOS one; lighter walls (glass) "
            "blend the two"
        ),
    )
    shadowing_decorrelation_m: float = Field(
        default=2.5,
        gt=0,
        description="distance over which shadowing decorrelates (Gudmundson's model)",
    )
    rician_k_db: float = Field(
        default=3.0,
        description="Rician K factor of the per-packet fast fading; very low is Rayleigh",
    )
    device_spread_db: float = Field(
        default=2.0,
        ge=0,
        description="standard deviation of the true power at 1 m across phone models",
    )
    packet_loss: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="share of packets lost whatever the load (CRC errors, Wi-Fi coexistence)",
    )
    capture_share: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description=(
            "share of the other advertisers on air whose packets destroy a colliding one; the "
            "rest are weak enough for the capture effect to save it"
        ),
    )
    sensitivity_dbm: float = Field(
        default=-95.0, description="weakest packet a gateway's controller receives"
    )
    adv_delay_max_s: float = Field(
        default=0.01,
        ge=0,
        description="advDelay, the random 0-10 ms added to each advertising interval (Core 5.4)",
    )
    scan_window_s: float = Field(
        default=0.01125,
        gt=0,
        description="how long the scanner listens in each scan interval (Linux: 11.25 ms)",
    )
    scan_interval_s: float = Field(
        default=0.01125,
        gt=0,
        description="scan interval; window = interval scans continuously, as Linux discovery does",
    )

    def scan_duty(self) -> float:
        return min(1.0, self.scan_window_s / self.scan_interval_s)

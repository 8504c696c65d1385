"""Device profiles (survey Table 8): the numbers a roofline (`devices.roofline`) and the energy
model (`energy.estimate_energy`) both read. ``SURVEY_DEVICES`` has the survey's three phones;
their memory bandwidth is not in the survey: we *assume* 3.2 GB/s, a low-end LPDDR3 phone
figure, and say so in ``note``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ASSUMED_PHONE_BW", "DeviceProfile", "SURVEY_DEVICES"]

ASSUMED_PHONE_BW = 3.2e9  # bytes/s; not given by the survey (assumption, see module doc)


@dataclass(frozen=True)
class DeviceProfile:
    """A target device: memory sizes in bytes, MAC rate in MAC/s, DRAM bandwidth in bytes/s.

    ``cache_bytes`` is the largest on-chip cache (tensors that fit it cost SRAM energy).
    The survey quotes FLOPS; we take one MAC per FLOP as it does when ranking devices.
    """

    name: str
    dram_bytes: int
    cache_bytes: int
    macs_per_s: float
    dram_bw_bytes_per_s: float
    note: str = ""

    def __post_init__(self) -> None:
        for field_name in ("dram_bytes", "cache_bytes", "macs_per_s", "dram_bw_bytes_per_s"):
            value = getattr(self, field_name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"DeviceProfile.{field_name} must be a positive number, "
                                 f"got {value!r}")
        if self.cache_bytes > self.dram_bytes:
            raise ValueError(f"cache_bytes ({self.cache_bytes}) larger than dram_bytes "
                             f"({self.dram_bytes})")


_KB, _MB, _GB = 1024, 1024**2, 1024**3
_NOTE = "survey Table 8; bandwidth 3.2 GB/s assumed (not in the survey)"
SURVEY_DEVICES: dict[str, DeviceProfile] = {
    "device1": DeviceProfile("device1", 3 * _GB, 2 * _MB, 691.3e6, ASSUMED_PHONE_BW, _NOTE),
    "device2": DeviceProfile("device2", 4 * _GB, 1 * _MB, 3.87e9, ASSUMED_PHONE_BW, _NOTE),
    "device3": DeviceProfile("device3", 4 * _GB, 2 * _MB, 2.51e9, ASSUMED_PHONE_BW, _NOTE),
}

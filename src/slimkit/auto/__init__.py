"""Automatic compression for a device and a target (the survey's outlook).

``lut``: per-layer latency lookup tables measured on this host (NetAdapt, Yang et al. 2018),
the latency model that searches query instead of timing every candidate.
"""

from slimkit.auto.lut import BACKENDS, LatencyTable, Prediction, host_fingerprint, units

__all__ = ["BACKENDS", "LatencyTable", "Prediction", "host_fingerprint", "units"]

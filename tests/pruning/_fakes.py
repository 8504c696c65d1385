"""A stand-in Group exposing the weight views importance criteria read."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeMember:
    module_name: str
    module: object
    role: str
    offset: int = 0


@dataclass
class FakeGroup:
    outs: list
    bns: list = field(default_factory=list)
    members: list = field(default_factory=list)
    id: str = "g"

    @property
    def size(self) -> int:
        return self.outs[0].shape[0]

    def out_weights(self):
        return [w.reshape(w.shape[0], -1) for w in self.outs]

    def bn_weights(self):
        return list(self.bns)

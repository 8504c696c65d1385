"""A small DDPG agent in plain torch (Lillicrap et al., ICLR 2016), as AMC and HAQ use it.

Actor and critic are two-hidden-layer MLPs (300 units, as in AMC); the actor's output is a
sigmoid in [0, 1]. Exploration adds truncated-normal noise whose sigma decays per episode.
AMC gives every step of an episode the episode's final reward minus a moving-average
baseline; with that reward the critic regresses Q(s, a) on it directly (no bootstrapping),
which is what ``update`` does.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


def _mlp(n_in: int, n_out: int, hidden: int, out: nn.Module | None) -> nn.Sequential:
    layers = [nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)]
    return nn.Sequential(*layers, *([out] if out is not None else []))


@dataclass
class DDPGConfig:
    hidden: int = 300
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    batch_size: int = 64
    buffer: int = 2000
    sigma: float = 0.5
    sigma_decay: float = 0.95
    baseline_decay: float = 0.95
    updates_per_episode: int = 20


class DDPG:
    """Actor-critic with a replay buffer of (state, action, reward) and soft target updates."""

    def __init__(self, state_dim: int, action_dim: int = 1, config: DDPGConfig | None = None,
                 seed: int = 0) -> None:
        self.cfg = config or DDPGConfig()
        self.gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.actor = _mlp(state_dim, action_dim, self.cfg.hidden, nn.Sigmoid())
        self.critic = _mlp(state_dim + action_dim, 1, self.cfg.hidden, None)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.lr_actor)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=self.cfg.lr_critic)
        self.states: list[torch.Tensor] = []
        self.actions: list[torch.Tensor] = []
        self.rewards: list[float] = []
        self.sigma = self.cfg.sigma
        self.baseline: float | None = None

    def act(self, state: torch.Tensor, explore: bool = True) -> torch.Tensor:
        with torch.no_grad():
            a = self.actor(state.unsqueeze(0)).squeeze(0)
        if explore:
            noise = torch.randn(a.shape, generator=self.gen) * self.sigma
            a = a + noise.clamp(-2 * self.sigma, 2 * self.sigma)  # truncated normal
        return a.clamp(0.0, 1.0)

    def random_action(self, dim: int = 1) -> torch.Tensor:
        return torch.rand(dim, generator=self.gen)

    def remember(self, states: list[torch.Tensor], actions: list[torch.Tensor], reward: float) -> float:
        """Store one episode with its final reward minus the moving baseline; returns that."""
        self.baseline = reward if self.baseline is None else (
            self.cfg.baseline_decay * self.baseline + (1 - self.cfg.baseline_decay) * reward)
        advantage = reward - self.baseline
        for s, a in zip(states, actions):
            self.states.append(s)
            self.actions.append(a)
            self.rewards.append(advantage)
        over = len(self.rewards) - self.cfg.buffer
        if over > 0:
            del self.states[:over], self.actions[:over], self.rewards[:over]
        return advantage

    def update(self) -> None:
        if not self.rewards:
            return  # batches are drawn with replacement, so a short buffer still trains
        for _ in range(self.cfg.updates_per_episode):
            idx = torch.randint(len(self.rewards), (self.cfg.batch_size,), generator=self.gen)
            s = torch.stack([self.states[i] for i in idx])
            a = torch.stack([self.actions[i] for i in idx])
            r = torch.tensor([self.rewards[i] for i in idx]).unsqueeze(1)
            q = self.critic(torch.cat([s, a], 1))
            loss_c = nn.functional.mse_loss(q, r)
            self.opt_critic.zero_grad()
            loss_c.backward()
            self.opt_critic.step()
            loss_a = -self.critic(torch.cat([s, self.actor(s)], 1)).mean()
            self.opt_actor.zero_grad()
            loss_a.backward()
            self.opt_actor.step()
            with torch.no_grad():
                for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                    for p, pt in zip(net.parameters(), tgt.parameters()):
                        pt.mul_(1 - self.cfg.tau).add_(self.cfg.tau * p)
        self.sigma *= self.cfg.sigma_decay

    # --- resumable state (plain tensors and numbers only: loads with weights_only=True)
    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
            "opt_actor": self.opt_actor.state_dict(), "opt_critic": self.opt_critic.state_dict(),
            "states": torch.stack(self.states) if self.states else torch.zeros(0),
            "actions": torch.stack(self.actions) if self.actions else torch.zeros(0),
            "rewards": torch.tensor(self.rewards), "sigma": self.sigma,
            "baseline": self.baseline, "gen": self.gen.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "opt_actor", "opt_critic"):
            getattr(self, name).load_state_dict(state[name])
        self.states = list(state["states"]) if state["states"].numel() else []
        self.actions = list(state["actions"]) if state["actions"].numel() else []
        self.rewards = state["rewards"].tolist()
        self.sigma, self.baseline = float(state["sigma"]), state["baseline"]
        self.gen.set_state(state["gen"])

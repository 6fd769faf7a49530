"""A running system to tune: a storage cluster where initiators read chunks from 3 replicas.

Discrete time. Each tick every initiator issues a Poisson number of reads; a read's chunk lives on 3
distinct targets (placement by hashing the chunk id); the initiator picks one replica with its
*selection policy*; each target serves about ``service_rate`` reads per tick in FIFO order, so its
latency grows with its queue. Initiators see the targets' queue lengths only ``delay`` ticks late,
and learn a target's latency from their own completed reads.

The policy scores each replica by ``w_queue * queue + w_trend * (queue - queue a tick earlier) +
w_latency * latency seen + w_noise * N(0, 1)`` (all on the delayed view) and picks one with
probability proportional to ``exp(-score / temperature)``; x = (w_queue, w_trend, w_latency,
w_noise, log10 temperature). As an objective, one evaluation runs the *live* cluster for one window
of ticks with the policy x and returns minus the mean latency of the reads completed in it: the
cluster keeps its queues between evaluations, so F is noisy and depends on history.

Reference policies measured the same way: ``random``, ``round_robin``, ``least_queue`` (on the
delayed view) and ``informed`` (least queue with no delay: the ideal a real initiator cannot have).
Defaults as in the original Go experiment: 20 initiators, 20 targets, 2.9 reads served per target
per tick, 3 replicas, delay 2 ticks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .space import Space

BOUNDS = np.array([[0.0, 1.0], [-1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [-3.0, 1.0]])
PARAMETERS = ("w_queue", "w_trend", "w_latency", "w_noise", "log10_temperature")
WORKLOADS = ("steady", "bursty", "hotspot")
REFERENCES = ("random", "round_robin", "least_queue", "informed")


@dataclass
class ClusterConfig:
    """The simulated cluster's size, speed and traffic."""

    initiators: int = 20
    targets: int = 20
    service_rate: float = 2.9  # reads a target serves per tick (on average)
    replicas: int = 3
    delay: int = 2  # ticks before an initiator sees a target's queue length
    load: float = 0.9  # offered reads as a fraction of the cluster's service capacity
    chunks: int = 10000
    window: int = 100  # ticks per evaluation
    workload: str = "steady"  # steady | bursty (load swings between 0.6x and 1.4x) | hotspot (a moving hot set)


class ReadCluster:
    """The simulated cluster; ``run(policy, ticks)`` advances it and returns the reads' latencies."""

    def __init__(self, config: ClusterConfig | None = None, seed: int = 0):
        self.cfg = c = config or ClusterConfig()
        if c.workload not in WORKLOADS:
            raise ValueError(f"workload={c.workload!r}: choose from {', '.join(WORKLOADS)}")
        self.rng = np.random.default_rng(seed)
        placement = np.random.default_rng(seed + 1)  # the hash: a fixed random choice of 3 targets per chunk
        self.placement = np.argsort(placement.random((c.chunks, c.targets)), axis=1)[:, :c.replicas]
        self.queues: list[deque] = [deque() for _ in range(c.targets)]  # arrival ticks, FIFO
        self.history = deque([np.zeros(c.targets)] * (c.delay + 2), maxlen=c.delay + 2)  # queue lengths
        self.seen_latency = np.ones((c.initiators, c.targets))  # each initiator's moving average per target
        self.turn = np.zeros(c.initiators, dtype=int)
        self.tick = 0
        self.issued = self.served = 0

    def queue_lengths(self) -> np.ndarray:
        """Reads waiting at each target."""
        return np.array([len(q) for q in self.queues], dtype=float)

    def _rate(self) -> float:
        c = self.cfg
        rate = c.load * c.service_rate * c.targets / c.initiators
        if c.workload == "bursty":
            rate *= 1.4 if (self.tick // 25) % 2 == 0 else 0.6
        return rate

    def _chunks(self, n: int) -> np.ndarray:
        c = self.cfg
        if c.workload == "hotspot" and n:
            hot = (self.tick // 200) * 37 % c.chunks  # the hot set moves every 200 ticks
            is_hot = self.rng.random(n) < 0.5
            return np.where(is_hot, (hot + self.rng.integers(0, 20, n)) % c.chunks, self.rng.integers(0, c.chunks, n))
        return self.rng.integers(0, c.chunks, n)

    def run(self, policy: "Policy", ticks: int) -> np.ndarray:
        """Advance ``ticks`` ticks with ``policy``; the latencies (ticks) of the reads completed meanwhile."""
        c = self.cfg
        done: list[int] = []
        for _ in range(ticks):
            counts = self.rng.poisson(self._rate(), c.initiators)
            who = np.repeat(np.arange(c.initiators), counts)
            replicas = self.placement[self._chunks(len(who))]  # [reads, 3]
            if len(who):
                choice = policy.choose(self, who, replicas)
                for target in replicas[np.arange(len(who)), choice]:
                    self.queues[target].append(self.tick)
            self.issued += len(who)
            whole = int(c.service_rate)
            serve = whole + (self.rng.random(c.targets) < c.service_rate - whole)
            for t, q in enumerate(self.queues):
                k = min(serve[t], len(q))
                if k:
                    lat = [self.tick - q.popleft() + 1 for _ in range(k)]
                    done.extend(lat)
                    a = 1.0 / policy.memory  # the moving average's weight of the newest window
                    self.seen_latency[:, t] = (1.0 - a) * self.seen_latency[:, t] + a * float(np.mean(lat))
                    self.served += k
            self.history.append(self.queue_lengths())
            self.tick += 1
        return np.asarray(done, dtype=float)


class Policy:
    """A replica selection policy: tunable scores (x) or one of the reference policies (by name)."""

    def __init__(self, x: np.ndarray | None = None, name: str = "tuned", seed: int = 0, memory: int = 10):
        if name not in ("tuned", *REFERENCES):
            raise ValueError(f"policy {name!r}: choose tuned or one of {', '.join(REFERENCES)}")
        self.name, self.memory = name, memory  # memory: windows the latency seen is averaged over
        self.x = None if x is None else np.clip(np.asarray(x, dtype=float), BOUNDS[:, 0], BOUNDS[:, 1])
        self.rng = np.random.default_rng(seed)

    def choose(self, cluster: ReadCluster, who: np.ndarray, replicas: np.ndarray) -> np.ndarray:
        """For each read (issued by initiator ``who``), which of its ``replicas`` columns serves it."""
        n, r = replicas.shape
        if self.name == "random":
            return self.rng.integers(0, r, n)
        if self.name == "round_robin":
            out = np.empty(n, dtype=int)
            for i, w in enumerate(who):  # a per-initiator counter, in issue order
                out[i] = cluster.turn[w] % r
                cluster.turn[w] += 1
            return out
        d = cluster.cfg.delay
        seen = cluster.history[-1 - d] if d else cluster.queue_lengths()
        if self.name in ("least_queue", "informed"):
            view = cluster.queue_lengths() if self.name == "informed" else seen
            q = view[replicas] + 1e-3 * self.rng.random((n, r))  # random tie-break
            return np.argmin(q, axis=1)
        w_q, w_trend, w_lat, w_noise, log_temp = self.x
        trend = seen - cluster.history[-2 - d]
        score = (w_q * seen[replicas] + w_trend * trend[replicas] + w_lat * cluster.seen_latency[who[:, None], replicas]
                 + w_noise * self.rng.standard_normal((n, r)))
        z = -score / 10.0 ** log_temp
        p = np.exp(z - z.max(1, keepdims=True))
        u = self.rng.random(n)[:, None] * p.sum(1, keepdims=True)
        return np.minimum((np.cumsum(p, 1) < u).sum(1), r - 1)


class LiveObjective:
    """F(x) = minus the mean read latency over the next window of live traffic with policy x."""

    def __init__(self, config: ClusterConfig | None = None, seed: int = 0, warmup: int = 100):
        self.cluster = ReadCluster(config, seed)
        self.seed = seed
        self.calls = 0
        self.cluster.run(Policy(name="random", seed=seed), warmup)

    def __call__(self, x: np.ndarray, memory: int = 10) -> float:
        self.calls += 1
        policy = Policy(x, seed=self.seed * 100003 + self.calls, memory=memory)
        lat = self.cluster.run(policy, self.cluster.cfg.window)
        return -float(lat.mean()) if lat.size else -float(self.cluster.cfg.window)

    def setting(self, knobs: dict) -> float:
        """F of a setting of the named knobs (``knob_space``): the same policy, with the latency memory too."""
        x, memory = knobs_to_x(knobs)
        return self(x, memory=memory)


def knobs_to_x(knobs: dict) -> tuple[np.ndarray, int]:
    """The plain policy vector and the latency memory of a setting of the named knobs."""
    return np.array([knobs["w_queue"], knobs["w_trend"], knobs["w_latency"], knobs["w_noise"],
                     np.log10(knobs["temperature"])]), int(knobs["latency_memory"])


def knob_space() -> "Space":
    """The policy's knobs by name: the four weights, the temperature on a log scale, and how many windows of
    reads each initiator's latency estimate averages over (a whole number; the plain box fixes it at 10)."""
    from .space import Float, Int, Space

    return Space({"w_queue": Float(0.0, 1.0), "w_trend": Float(-1.0, 1.0), "w_latency": Float(0.0, 1.0),
                  "w_noise": Float(0.0, 1.0), "temperature": Float(1e-3, 10.0, log=True),
                  "latency_memory": Int(1, 100, log=True)})


def measure(policy_x: np.ndarray | None, name: str, seeds: range, config: ClusterConfig | None = None,
            windows: int = 10, warmup: int = 200, memory: int = 10) -> np.ndarray:
    """Mean latency of a policy on fresh traffic, one number per seed (after a warm-up with that policy)."""
    out = []
    for s in seeds:
        cluster = ReadCluster(config, seed=10_000 + s)
        policy = Policy(policy_x, name=name, seed=s, memory=memory)
        cluster.run(policy, warmup)
        out.append(float(cluster.run(policy, windows * cluster.cfg.window).mean()))
    return np.array(out)

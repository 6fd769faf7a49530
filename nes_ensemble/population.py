"""The population: a vectorized batch of deliberately diverse MLP surrogates.

All members live in one flat parameter tensor ``theta`` of shape ``[members, P]``. Every member
has the same padded layout (input layer, ``max_depth - 1`` hidden-to-hidden layers, output layer,
all ``max_width`` wide); what makes members differ is per-member data:

* a fixed mask over ``theta`` that zeroes the hidden units beyond the member's width and a random
  fraction (its sparsity) of every weight matrix,
* a per-layer gate that turns a hidden layer into the identity for members with fewer layers,
* a one-hot choice of activation, and per-member optimizer, learning rate and weight decay
  (used by ``training``).

So one ``torch.baddbmm`` per layer evaluates the whole population, and a member with width 32,
depth 2 and tanh computes exactly what a plain 32-wide, 2-hidden-layer tanh MLP would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import OPTIMIZERS, EnsembleConfig

_ACTS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "silu": torch.nn.functional.silu,
    "gelu": torch.nn.functional.gelu,
    "sigmoid": torch.sigmoid,
}


@dataclass
class Layout:
    """Where each weight matrix and bias sits in a member's flat parameter vector."""

    dim: int
    width: int
    depth: int

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        h = self.width
        out = [("w0", (self.dim, h)), ("b0", (h,))]
        for i in range(1, self.depth):
            out += [(f"w{i}", (h, h)), (f"b{i}", (h,))]
        out += [("wo", (h, 1)), ("bo", (1,))]
        return out

    @property
    def size(self) -> int:
        return sum(math.prod(s) for _, s in self.shapes())

    def views(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split ``theta`` [members, P] into named views [members, *shape]."""
        views, start = {}, 0
        for name, shape in self.shapes():
            n = math.prod(shape)
            views[name] = theta[:, start:start + n].view(theta.shape[0], *shape)
            start += n
        return views


class Population:
    """Members' weights, masks and hyper-parameters as tensors with a leading member dimension."""

    def __init__(self, dim: int, cfg: EnsembleConfig, generator: torch.Generator):
        k = cfg.members
        self.layout = Layout(dim, max(cfg.widths), max(cfg.depths))
        self.ids = list(range(k))
        g = generator

        def pick(choices: list, n: int) -> torch.Tensor:
            return torch.randint(len(choices), (n,), generator=g)

        def log_uniform(lo: float, hi: float, n: int) -> torch.Tensor:
            u = torch.rand(n, generator=g, dtype=torch.float64)
            return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))).float()

        self.width = torch.tensor(cfg.widths)[pick(cfg.widths, k)]
        self.depth = torch.tensor(cfg.depths)[pick(cfg.depths, k)]
        self.act_names = list(cfg.activations)
        # every activation present, members that share one side by side (so it is one call per block)
        act_idx = torch.sort(torch.arange(k) % len(self.act_names)).values
        self.act = torch.nn.functional.one_hot(act_idx, len(self.act_names)).float()
        # optimizers in turn, as in the original benchmark (RMSprop, Rprop, Adam, ...)
        self.optimizer = torch.tensor([OPTIMIZERS.index(cfg.optimizers[i % len(cfg.optimizers)]) for i in range(k)])
        self.lr = log_uniform(cfg.lr_min, cfg.lr_max, k)
        self.weight_decay = log_uniform(cfg.weight_decay_min, cfg.weight_decay_max, k)
        self.sparsity = cfg.sparsity_min + torch.rand(k, generator=g) * (cfg.sparsity_max - cfg.sparsity_min)
        self.generation = torch.zeros(k, dtype=torch.long)
        self.mask = self._make_mask(g)
        self.theta = self._init_weights(g) * self.mask

    _MEMBER_FIELDS = ("width", "depth", "act", "optimizer", "lr", "weight_decay", "sparsity", "generation",
                      "mask", "theta")

    @property
    def size(self) -> int:
        return len(self.width)

    def subset(self, index: torch.Tensor) -> "Population":
        """A new population holding copies of the members ``index`` (repeats allowed, e.g. for forks)."""
        out = Population.__new__(Population)
        out.layout, out.act_names = self.layout, self.act_names
        out.ids = [self.ids[int(i)] for i in index]
        for name in self._MEMBER_FIELDS:
            setattr(out, name, getattr(self, name)[index].clone())
        return out

    def put(self, index: torch.Tensor, other: "Population", ids: list[int]) -> None:
        """Overwrite the members ``index`` with ``other``'s members (same order), who take the given ids."""
        for name in self._MEMBER_FIELDS:
            getattr(self, name)[index] = getattr(other, name)
        for i, new_id in zip(index.tolist(), ids):
            self.ids[i] = new_id

    def structure(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """[members, P] mask of the entries a layout of ``cols`` live units fed by ``rows`` live units has.

        ``structure(w, w)`` is a member of width w without sparsity; ``structure(old, new) -
        structure(old, old)`` are the entries feeding the units a widening adds.
        """
        lay, k = self.layout, len(rows)
        h = torch.arange(lay.width)[None, :]
        live_r, live_c = (h < rows[:, None]).float(), (h < cols[:, None]).float()
        mask = torch.ones(k, lay.size)
        for name, view in lay.views(mask).items():
            if name == "w0":
                view.copy_(live_c[:, None, :].expand_as(view))
            elif name == "wo":
                view.copy_(live_r[:, :, None].expand_as(view))
            elif name.startswith("w"):
                view.copy_(live_r[:, :, None] * live_c[:, None, :])
            elif name != "bo":
                view.copy_(live_c)
        return mask

    def _make_mask(self, g: torch.Generator) -> torch.Tensor:
        k, lay = len(self.width), self.layout
        units = (torch.arange(lay.width)[None, :] < self.width[:, None]).float()  # [k, H]
        mask = torch.ones(k, lay.size)
        views = lay.views(mask)
        for name, view in views.items():
            if name.startswith("w"):
                keep = (torch.rand(view.shape, generator=g) >= self.sparsity.view(k, 1, 1)).float()
                if name != "w0":
                    keep = keep * units[:, :, None]  # rows: inputs from live units only
                if name != "wo":
                    keep = keep * units[:, None, :]  # columns: outputs to live units only
                view.copy_(keep)
            elif name != "bo":
                view.copy_(units)
        return mask

    def _init_weights(self, g: torch.Generator) -> torch.Tensor:
        """Xavier-uniform for each member's own fan-in and fan-out; zero biases."""
        lay = self.layout
        theta = torch.zeros(self.size, lay.size)
        views = lay.views(theta)
        w = self.width.float()
        for name, view in views.items():
            if not name.startswith("w"):
                continue
            fan_in = torch.full_like(w, lay.dim) if name == "w0" else w
            fan_out = torch.ones_like(w) if name == "wo" else w
            bound = torch.sqrt(6.0 / (fan_in + fan_out)).view(-1, 1, 1)
            view.copy_((torch.rand(view.shape, generator=g) * 2 - 1) * bound)
        return theta

    def gates(self) -> torch.Tensor:
        """[members, depth-1]: 1 where hidden layer i+1 is live for that member, 0 where it is skipped."""
        return (torch.arange(1, self.layout.depth)[None, :] < self.depth[:, None]).float()

    def forward(self, x: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """Predict for every member: x [members, n, dim] in the unit cube -> [members, n]."""
        theta = (self.theta if theta is None else theta) * self.mask
        return forward(self.layout, theta, x, self.act, self.act_names, self.gates())


def forward(layout: Layout, theta: torch.Tensor, x: torch.Tensor, act: torch.Tensor,
            act_names: list[str], gates: torch.Tensor) -> torch.Tensor:
    """Batched MLP: one baddbmm per layer for all members (theta already masked)."""
    v = layout.views(theta)
    k = theta.shape[0]
    activate = _activation(act, act_names)
    h = activate(torch.baddbmm(v["b0"].unsqueeze(1), 2 * x - 1, v["w0"]))
    for i in range(1, layout.depth):
        g = gates[:, i - 1].view(k, 1, 1)
        h = g * activate(torch.baddbmm(v[f"b{i}"].unsqueeze(1), h, v[f"w{i}"])) + (1 - g) * h
    return torch.baddbmm(v["bo"].unsqueeze(1), h, v["wo"]).squeeze(-1)


def _activation(act: torch.Tensor, act_names: list[str]):
    """Each member's own activation on z [members, ...]: one call per activation on its block of members.

    Members that share an activation usually sit in one contiguous block (the population is built
    that way), so the blocks are slices; otherwise every activation is computed and mixed.
    """
    ids = act.argmax(1)
    if len(act_names) == 1 or bool((ids == ids[0]).all()):
        fn = _ACTS[act_names[int(ids[0])]]
        return fn
    if bool((ids[1:] >= ids[:-1]).all()):
        bounds = torch.searchsorted(ids, torch.arange(len(act_names) + 1)).tolist()
        blocks = [(_ACTS[n], bounds[j], bounds[j + 1]) for j, n in enumerate(act_names) if bounds[j] < bounds[j + 1]]
        return lambda z: torch.cat([fn(z[a:b]) for fn, a, b in blocks])
    a = act.view(act.shape[0], *([1] * 2), -1)
    return lambda z: sum(a[..., j] * _ACTS[name](z) for j, name in enumerate(act_names))

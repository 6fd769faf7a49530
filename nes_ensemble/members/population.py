"""The population: a vectorized batch of deliberately diverse MLP surrogates.

All members live in one flat parameter tensor ``theta`` of shape ``[members, P]``. Every member
has the same padded layout (input layer, ``max_depth - 1`` hidden-to-hidden layers, output layer,
all ``max_width`` wide); what makes members differ is per-member data:

* a fixed mask over ``theta`` that zeroes the hidden units beyond the member's width and a random
  fraction (its sparsity) of every weight matrix,
* a per-layer gate that turns a hidden layer into the identity for members with fewer layers,
* a one-hot choice of activation, and per-member optimizer, learning rate and weight decay
  (used by ``training``).

Members that compute alike (activation, depth) sit side by side, so a layer is one
``torch.baddbmm`` per run of alike members on a slice of rows, with no Python loop over members;
a member with width 32, depth 2 and tanh computes exactly what a plain 32-wide, 2-hidden-layer
tanh MLP would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import OPTIMIZERS, EnsembleConfig


@dataclass
class Layout:
    """Where each weight matrix and bias sits in a member's flat parameter vector."""

    dim: int
    width: int
    depth: int

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Name and shape of every weight matrix and bias, in their order in ``theta``."""
        h = self.width
        out = [("w0", (self.dim, h)), ("b0", (h,))]
        for i in range(1, self.depth):
            out += [(f"w{i}", (h, h)), (f"b{i}", (h,))]
        out += [("wo", (h, 1)), ("bo", (1,))]
        return out

    @property
    def size(self) -> int:
        """Parameters of one member (the padded layout)."""
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
        self.act_names = list(cfg.activations)
        # Members that compute alike sit side by side, so each activation, optimizer rule and skipped
        # layer is one call on a slice of rows: activations in blocks, the optimizers in blocks shifted by
        # half an activation block (so most activations meet two optimizers), depths sorted per block.
        n_act, n_opt = len(self.act_names), len(cfg.optimizers)
        act_idx = torch.sort(torch.arange(k) % n_act).values
        self.act = torch.nn.functional.one_hot(act_idx, n_act).float()
        shift = k // (2 * n_act) if n_act > 1 else 0
        self.optimizer = torch.tensor([OPTIMIZERS.index(cfg.optimizers[(i + shift) * n_opt // k % n_opt])
                                       for i in range(k)])
        depth = torch.tensor(cfg.depths)[pick(cfg.depths, k)]
        self.depth = torch.cat([depth[act_idx == a].sort(descending=True).values for a in range(n_act)])
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
        """The number of members."""
        return len(self.width)

    def subset(self, index: torch.Tensor) -> "Population":
        """A new population holding copies of the members ``index`` (repeats allowed, e.g. for forks)."""
        out = Population.__new__(Population)
        out.layout, out.act_names = self.layout, self.act_names
        out.ids = [self.ids[int(i)] for i in index]
        for name in self._MEMBER_FIELDS:
            setattr(out, name, getattr(self, name)[index].clone())
        return out

    def state_dict(self) -> dict:
        """The members as tensors and plain values (for checkpoints)."""
        lay = self.layout
        return {"layout": [lay.dim, lay.width, lay.depth], "act_names": list(self.act_names), "ids": list(self.ids),
                **{name: getattr(self, name).clone() for name in self._MEMBER_FIELDS}}

    @classmethod
    def from_state(cls, state: dict) -> "Population":
        """The population ``state_dict`` described."""
        out = cls.__new__(cls)
        out.layout = Layout(*state["layout"])
        out.act_names, out.ids = list(state["act_names"]), list(state["ids"])
        for name in cls._MEMBER_FIELDS:
            setattr(out, name, state[name].clone())
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
    """Batched MLP for all members: per layer, one product per run of alike members (theta already masked)."""
    return forward_views(layout, layout.views(theta), x, layer_runs(act, act_names, gates))


def forward_views(layout: Layout, v: dict[str, torch.Tensor], x: torch.Tensor,
                  runs: list[list[tuple[int, int, str]]]) -> torch.Tensor:
    """``forward`` on the layers' weights given one by one (``Layout.views``, e.g. as separate autograd
    leaves) with the runs of alike members of ``layer_runs``."""
    h = 2 * x - 1
    for i in range(layout.depth):
        h = _Hidden.apply(h, v[f"w{i}"], v[f"b{i}"], runs[i])
    return torch.baddbmm(v["bo"].unsqueeze(1), h, v["wo"]).squeeze(-1)


def layer_runs(act: torch.Tensor, act_names: list[str], gates: torch.Tensor) -> list[list[tuple[int, int, str]]]:
    """Per hidden layer, the members as runs ``(first, end, activation)`` of consecutive members that
    compute it alike; ``activation`` is ``"skip"`` where the layer is beyond a member's depth."""
    ids = act.argmax(1).tolist()
    live = torch.cat([torch.ones(len(ids), 1), gates], 1).bool().T.tolist()
    out = []
    for layer in live:
        kinds = [act_names[a] if on else "skip" for a, on in zip(ids, layer)]
        runs, first = [], 0
        for i in range(1, len(kinds) + 1):
            if i == len(kinds) or kinds[i] != kinds[first]:
                runs.append((first, i, kinds[first]))
                first = i
        out.append(runs)
    return out


_aten = torch.ops.aten
# activation: (value into out, derivative into out from (upstream gradient, input, output)); the
# "out" forms write each run of members straight into its rows of the layer's buffer
_ACTS = {
    "tanh": (lambda z, o: torch.tanh(z, out=o),
             lambda g, z, y, o: _aten.tanh_backward.grad_input(g, y, grad_input=o)),
    "relu": (lambda z, o: torch.clamp_min(z, 0.0, out=o),
             lambda g, z, y, o: _aten.threshold_backward.grad_input(g, z, 0, grad_input=o)),
    "silu": (lambda z, o: _aten.silu.out(z, out=o),
             lambda g, z, y, o: _aten.silu_backward.grad_input(g, z, grad_input=o)),
    "gelu": (lambda z, o: _aten.gelu.out(z, out=o),
             lambda g, z, y, o: _aten.gelu_backward.grad_input(g, z, grad_input=o)),
    "sigmoid": (lambda z, o: torch.sigmoid(z, out=o),
                lambda g, z, y, o: _aten.sigmoid_backward.grad_input(g, y, grad_input=o)),
}


class _Hidden(torch.autograd.Function):
    """One hidden layer for all members, act(h @ w + b), computed run by run: each run of members that
    share an activation is one baddbmm and one activation call on its rows, and a run whose members
    skip the layer (it lies beyond their depth) passes h through without a product. The backward pass
    writes each run's gradients straight into place, where autograd through row slices would zero-fill
    a full-size buffer for every run."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                runs: list[tuple[int, int, str]]) -> torch.Tensor:
        k, n, width = h.shape[0], h.shape[1], w.shape[2]
        z = h.new_empty(k, n, width)
        out = h.new_empty(k, n, width)
        for lo, hi, kind in runs:
            if kind == "skip":
                out[lo:hi] = h[lo:hi]
            else:
                torch.baddbmm(b[lo:hi].unsqueeze(1), h[lo:hi], w[lo:hi], out=z[lo:hi])
                _ACTS[kind][0](z[lo:hi], out[lo:hi])
        ctx.runs = runs
        ctx.save_for_backward(h, w, z, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):
        h, w, z, out = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        g = g.contiguous()
        gz = torch.empty_like(z)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.empty_like(w) if need_w else None
        grad_b = w.new_empty(w.shape[0], w.shape[2]) if need_b else None
        for lo, hi, kind in ctx.runs:
            if kind == "skip":
                if need_h:
                    grad_h[lo:hi] = g[lo:hi]
                if need_w:
                    grad_w[lo:hi] = 0.0
                if need_b:
                    grad_b[lo:hi] = 0.0
                continue
            _ACTS[kind][1](g[lo:hi], z[lo:hi], out[lo:hi], gz[lo:hi])
            if need_h:
                torch.bmm(gz[lo:hi], w[lo:hi].transpose(1, 2), out=grad_h[lo:hi])
            if need_w:
                torch.bmm(h[lo:hi].transpose(1, 2), gz[lo:hi], out=grad_w[lo:hi])
            if need_b:
                torch.sum(gz[lo:hi], 1, out=grad_b[lo:hi])
        return grad_h, grad_w, grad_b, None

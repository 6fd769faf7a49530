"""Fit every member to the pool at once: batched Adam, RMSprop and Rprop over ``theta`` [members, P].

Each member keeps its own optimizer kind, learning rate and weight decay; each update rule runs on
the rows of the members that use it, so a training step is a handful of tensor operations whatever
the number of members.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .population import Population, forward_views, layer_runs

_ADAM, _RMSPROP, _RPROP = 0, 1, 2
_EPS = 1e-8


@dataclass
class OptimizerState:
    """Moments and step sizes of the batched optimizers; a plain value, so checkpoints are simple."""

    t: torch.Tensor  # [k] steps taken per member
    m: torch.Tensor  # [k, P] Adam first moment
    v: torch.Tensor  # [k, P] Adam / RMSprop second moment
    step: torch.Tensor  # [k, P] Rprop step sizes
    prev: torch.Tensor  # [k, P] Rprop previous gradient

    @classmethod
    def zeros(cls, pop: Population) -> "OptimizerState":
        """A fresh state: no steps taken, zero moments, Rprop steps at each member's learning rate."""
        z = torch.zeros_like(pop.theta)
        return cls(torch.zeros(pop.size), z.clone(), z.clone(), pop.lr[:, None].expand_as(z).clone(), z.clone())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors by name (for checkpoints)."""
        return {f: getattr(self, f).clone() for f in ("t", "m", "v", "step", "prev")}

    def select(self, index: torch.Tensor) -> "OptimizerState":
        """The state of the members ``index`` (a copy), e.g. for forks."""
        return OptimizerState(*(getattr(self, f)[index].clone() for f in ("t", "m", "v", "step", "prev")))


def kind_rows(kinds: torch.Tensor, max_runs: int = 2) -> list[tuple[int, slice | torch.Tensor]]:
    """Each optimizer kind with the rows of its members: slices where they form at most ``max_runs``
    contiguous runs (updated in place), else one index (gathered and written back)."""
    out = []
    for kind in (_ADAM, _RMSPROP, _RPROP):
        idx = torch.nonzero(kinds == kind).flatten()
        if len(idx) == 0:
            continue
        breaks = (torch.nonzero(idx[1:] - idx[:-1] > 1).flatten() + 1).tolist()
        if len(breaks) >= max_runs:
            out.append((kind, idx))
            continue
        firsts, lasts = [0] + breaks, breaks + [len(idx)]
        out += [(kind, slice(int(idx[a]), int(idx[b - 1]) + 1)) for a, b in zip(firsts, lasts)]
    return out


def optimizer_step(pop: Population, state: OptimizerState, grad: torch.Tensor,
                   groups: list[tuple[int, slice | torch.Tensor]] | None = None) -> None:
    """Apply one update of each member's own optimizer to ``pop.theta`` in place.

    Each rule runs only on the rows of its members (views where they are contiguous), so a step costs
    about one rule's work over the population. Masked entries get no gradient and stay zero.
    """
    grad.mul_(pop.mask)
    state.t += 1
    for kind, rows in groups if groups is not None else kind_rows(pop.optimizer):
        gathered = not isinstance(rows, slice)
        theta, g = pop.theta[rows], grad[rows]
        lr, t = pop.lr[rows, None], state.t[rows, None]
        decay = 1 - lr * pop.weight_decay[rows, None]
        if kind == _RPROP:  # only the gradient's sign; per-weight step sizes grow while the sign holds
            step, prev = state.step[rows], state.prev[rows]
            agree = g * prev
            flipped = agree < 0
            step.mul_(torch.where(agree > 0, 1.2, torch.where(flipped, 0.5, 1.0))).clamp_(1e-6, 1.0)
            g = g.masked_fill(flipped, 0.0)
            prev.copy_(g)
            theta.mul_(decay).sub_(torch.sign(g).mul_(step))
            changed = {"step": step, "prev": prev}
        else:  # Adam with its moments and bias corrections; RMSprop as torch's default (no momentum)
            v = state.v[rows]
            if kind == _ADAM:
                m = state.m[rows]
                m.mul_(0.9).add_(g, alpha=0.1)
                v.mul_(0.999).addcmul_(g, g, value=0.001)
                num, scale, bc2 = m, lr / (1 - 0.9 ** t), 1 - 0.999 ** t
                changed = {"m": m, "v": v}
            else:
                v.mul_(0.99).addcmul_(g, g, value=0.01)
                num, scale, bc2 = g, lr, torch.ones_like(t)
                changed = {"v": v}
            update = v.sqrt().div_(bc2.sqrt()).add_(_EPS).reciprocal_().mul_(num).mul_(scale)
            theta.mul_(decay).sub_(update)
        if gathered:
            pop.theta[rows] = theta
            for name, value in changed.items():
                getattr(state, name)[rows] = value


def fit(pop: Population, state: OptimizerState, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
        steps: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Train all members for ``steps`` steps on (x [n, d], y [n]) with per-member sample weights [k, n].

    Full batch while the pool fits in ``batch_size``; beyond it each member draws its own minibatch
    in proportion to its weights. Returns the last per-member training loss [k].
    """
    k, n = pop.size, x.shape[0]
    full = n <= batch_size
    if full:
        xb = x.unsqueeze(0).expand(k, n, x.shape[1])
        yb = y.unsqueeze(0).expand(k, n)
        wb = weights / weights.sum(1, keepdim=True).clamp_min(_EPS)
    else:  # minibatches drawn in proportion to each member's weights, by inverting their running sum
        cum = weights.cumsum(1)
        cum = cum / cum[:, -1:]
        wb = torch.full((k, batch_size), 1.0 / batch_size)
    loss = torch.zeros(k)
    groups = kind_rows(pop.optimizer)
    runs = layer_runs(pop.act, pop.act_names, pop.gates())
    for _ in range(steps):
        if not full:
            u = torch.rand(k, batch_size, generator=generator)
            idx = torch.searchsorted(cum, u).clamp_(max=n - 1)
            xb, yb = x[idx], y[idx]
        # the leaves are the layers' views of theta (kept masked), so the backward pass writes each
        # layer's gradient once instead of scattering every layer into a zeroed [members, P] tensor
        parts = {name: v.detach().requires_grad_(True) for name, v in pop.layout.views(pop.theta).items()}
        pred = forward_views(pop.layout, parts, xb, runs)
        per_member = (wb * (pred - yb) ** 2).sum(1)
        grads = torch.autograd.grad(per_member.sum(), list(parts.values()))
        with torch.no_grad():
            grad = torch.cat([gr.reshape(k, -1) for gr in grads], 1)
            optimizer_step(pop, state, grad, groups)
        loss = per_member.detach()
    return loss


def fit_es(pop: Population, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, generations: int,
           batch_size: int, generator: torch.Generator, popsize: int = 16, stdev: float = 0.02,
           center_lr: float = 0.01) -> torch.Tensor:
    """Train all members by evolution strategies instead of back-propagation: evotorch's functional PGPE
    with one search distribution per member (a batch of centres), antithetic samples, centred ranks and
    Adam on the centre. Every generation evaluates the k x popsize candidate networks in one batched pass.

    Arguments as in ``fit``; ``generations`` plays the role of ``steps``. Returns the last loss [k].
    """
    from evotorch.algorithms.functional import pgpe, pgpe_ask, pgpe_tell

    k, n = pop.size, x.shape[0]
    cum = weights.cumsum(1)
    cum = cum / cum[:, -1:].clamp_min(_EPS)
    m = min(n, batch_size)
    expand = torch.arange(k).repeat_interleave(popsize)
    mask = pop.mask[expand]
    runs = layer_runs(pop.act[expand], pop.act_names, pop.gates()[expand])
    with torch.random.fork_rng(devices=[]):  # evotorch samples from torch's global generator
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        state = pgpe(center_init=pop.theta.detach().clone(), center_learning_rate=center_lr,
                     stdev_learning_rate=0.1, objective_sense="min", ranking_method="centered", optimizer="adam",
                     stdev_init=stdev, stdev_max_change=0.2)
        loss = torch.zeros(k)
        for _ in range(generations):
            u = torch.rand(k, m, generator=generator)
            idx = torch.searchsorted(cum, u).clamp_(max=n - 1)  # [k, m]: each member's minibatch
            xb, yb = x[idx][expand], y[idx][expand]
            cand = pgpe_ask(state, popsize=popsize)  # [k, popsize, P]
            with torch.no_grad():
                theta = cand.reshape(k * popsize, -1) * mask
                pred = forward_views(pop.layout, pop.layout.views(theta), xb, runs)
                losses = ((pred - yb) ** 2).mean(1).view(k, popsize)
            state = pgpe_tell(state, cand, losses)
            loss = losses.mean(1)
        pop.theta = state.optimizer_state.center.detach().clone() * pop.mask
    return loss

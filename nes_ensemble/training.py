"""Fit every member to the pool at once: batched Adam, RMSprop and Rprop over ``theta`` [members, P].

Each member keeps its own optimizer kind, learning rate and weight decay; the update rules are
computed elementwise for the whole population and selected per member, so a training step is a
handful of tensor operations whatever the number of members.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .population import Population, forward

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
        z = torch.zeros_like(pop.theta)
        return cls(torch.zeros(pop.size), z.clone(), z.clone(), pop.lr[:, None].expand_as(z).clone(), z.clone())

    def select(self, index: torch.Tensor) -> "OptimizerState":
        """The state of the members ``index`` (a copy), e.g. for forks."""
        return OptimizerState(*(getattr(self, f)[index].clone() for f in ("t", "m", "v", "step", "prev")))


def optimizer_step(pop: Population, state: OptimizerState, grad: torch.Tensor) -> None:
    """Apply one update of each member's own optimizer to ``pop.theta`` in place."""
    kind = pop.optimizer[:, None]
    lr = pop.lr[:, None]
    state.t += 1
    t = state.t[:, None]
    adam = (kind == _ADAM).float()
    rms = (kind == _RMSPROP).float()

    # Adam and RMSprop share one form, num / (sqrt(v / bc2) + eps): Adam with its moment and bias
    # corrections, RMSprop (torch's default: no momentum, no correction) with the raw gradient
    beta2 = 0.999 * adam + 0.99 * (1 - adam)
    state.m.mul_(0.9).add_(grad, alpha=0.1)
    state.v.mul_(beta2).addcmul_(grad, grad * (1 - beta2))
    bc1 = adam * (1 - 0.9 ** t) + (1 - adam)
    bc2 = adam * (1 - beta2 ** t) + (1 - adam)
    num = state.m * (adam / bc1) + grad * rms
    update = num.div_((state.v / bc2).sqrt_().add_(_EPS))
    if bool((kind == _RPROP).any()):
        # Rprop: only the gradient's sign; per-weight step sizes grow while the sign holds
        sign = torch.sign(grad * state.prev)
        state.step.mul_(torch.where(sign > 0, 1.2, torch.where(sign < 0, 0.5, 1.0))).clamp_(1e-6, 1.0)
        rgrad = grad.masked_fill(sign < 0, 0.0)
        state.prev.copy_(rgrad)
        rprop = (kind == _RPROP).expand_as(update)
        update = torch.where(rprop, torch.sign(rgrad) * state.step / lr, update)  # lr multiplies back below
    pop.theta.mul_(1 - lr * pop.weight_decay[:, None]).sub_(update.mul_(lr))
    pop.theta.mul_(pop.mask)


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
    for _ in range(steps):
        if not full:
            u = torch.rand(k, batch_size, generator=generator)
            idx = torch.searchsorted(cum, u).clamp_(max=n - 1)
            xb, yb = x[idx], y[idx]
        theta = pop.theta.detach().requires_grad_(True)
        pred = pop.forward(xb, theta)
        per_member = (wb * (pred - yb) ** 2).sum(1)
        (grad,) = torch.autograd.grad(per_member.sum(), theta)
        with torch.no_grad():
            optimizer_step(pop, state, grad)
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
    act, gates, mask = pop.act[expand], pop.gates()[expand], pop.mask[expand]
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
                pred = forward(pop.layout, cand.reshape(k * popsize, -1) * mask, xb, act, pop.act_names, gates)
                losses = ((pred - yb) ** 2).mean(1).view(k, popsize)
            state = pgpe_tell(state, cand, losses)
            loss = losses.mean(1)
        pop.theta = state.optimizer_state.center.detach().clone() * pop.mask
    return loss

"""Vectorized population against a Python loop over separate networks, the same work measured in one run.

    python experiments/speed.py --members 30 --pool 2000

The work: train every member for ``--steps`` steps on the pool (per-member minibatches of the
default size) and propose (every member ascends its surrogate from every member's best point and
``search.ascent.random_starts`` random starts). The loop
version does the same with one ``torch.nn.Sequential`` and one ``torch.optim`` optimizer per member.
Prints and saves experiments/results/speed.{csv,md}; the ratio is what to read.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
import torch
from common import save_table

from nes_ensemble.config import AscentConfig, EnsembleConfig
from nes_ensemble.members.population import Population
from nes_ensemble.members.training import OptimizerState, fit
from nes_ensemble.problems import make_problem
from nes_ensemble.proposers.search import ascend

ACTS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "silu": torch.nn.SiLU}
OPTS = {0: torch.optim.Adam, 1: torch.optim.RMSprop, 2: torch.optim.Rprop}


def batched(pop: Population, x, y, starts, steps, ascent_steps, batch, g) -> float:
    start = time.perf_counter()
    fit(pop, OptimizerState.zeros(pop), x, y, torch.ones(pop.size, len(y)), steps, batch, g)
    ascend(pop, starts, ascent_steps, 0.02)
    return time.perf_counter() - start


def looped(pop: Population, x, y, starts, steps, ascent_steps, batch, g) -> float:
    nets, opts = [], []
    for r in range(pop.size):  # the same architectures as the population's members
        w, depth, act = int(pop.width[r]), int(pop.depth[r]), pop.act_names[int(pop.act[r].argmax())]
        layers = [torch.nn.Linear(x.shape[1], w), ACTS[act]()]
        for _ in range(depth - 1):
            layers += [torch.nn.Linear(w, w), ACTS[act]()]
        net = torch.nn.Sequential(*layers, torch.nn.Linear(w, 1))
        nets.append(net)
        opts.append(OPTS[int(pop.optimizer[r])](net.parameters(), lr=float(pop.lr[r])))
    start = time.perf_counter()
    for net, opt in zip(nets, opts):
        for _ in range(steps):
            idx = torch.randint(len(y), (batch,), generator=g)
            loss = ((net(2 * x[idx] - 1).squeeze(-1) - y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    for r, net in enumerate(nets):
        z = starts[r].clone().requires_grad_(True)
        zopt = torch.optim.Adam([z], lr=0.02)
        for _ in range(ascent_steps):
            zopt.zero_grad()
            (-net(2 * z - 1).sum()).backward()
            zopt.step()
            with torch.no_grad():
                z.clamp_(0, 1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=30)
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=EnsembleConfig.train_steps)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=EnsembleConfig.batch_size)
    parser.add_argument("--profile", action="store_true", help="also print torch's profile of the batched training")
    parser.add_argument("--widths", default="", help="comma-separated hidden widths (default: the config's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ens = EnsembleConfig(members=args.members, batch_size=args.batch)
    if args.widths:
        ens.widths = [int(w) for w in args.widths.split(",")]
    h6 = make_problem("hartmann6")
    rng = np.random.default_rng(0)
    xs = rng.random((args.pool, 6))
    ys = h6.evaluate(xs)
    x = torch.tensor(xs, dtype=torch.float32)
    y = torch.tensor((ys - ys.mean()) / ys.std(), dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    pop = Population(6, ens, g)
    starts = torch.rand(args.members, args.members + AscentConfig.random_starts, 6, generator=g)
    ascent_steps = AscentConfig.steps_max
    if args.profile:  # where the batched training spends its time, by operator
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fit(pop, OptimizerState.zeros(pop), x, y, torch.ones(pop.size, len(y)), args.steps, ens.batch_size, g)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    rows = []
    for rep in range(args.repeats):  # interleaved, so both see the same machine load
        tb = batched(pop, x, y, starts, args.steps, ascent_steps, ens.batch_size, g)
        tl = looped(pop, x, y, starts, args.steps, ascent_steps, ens.batch_size, g)
        rows.append({"repeat": rep, "vectorized s": tb, "python loop s": tl, "ratio": tl / tb})
    runs = pd.DataFrame(rows)
    table = pd.DataFrame([{"members": args.members, "widths": ",".join(map(str, ens.widths)), "pool": args.pool,
                           "batch": args.batch, "train steps": args.steps,
                           "ascent steps": ascent_steps, "vectorized s (median)": runs["vectorized s"].median(),
                           "python loop s (median)": runs["python loop s"].median(),
                           "speed-up (median ratio)": runs["ratio"].median()}])
    command = "python experiments/speed.py " + " ".join(sys.argv[1:])
    name = "speed" + (f"_w{args.widths.replace(',', '-')}" if args.widths else "")
    save_table(table, name, "Vectorized population vs Python loop over members", command.strip())


if __name__ == "__main__":
    main()

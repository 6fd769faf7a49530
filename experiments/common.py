"""Shared helpers of the benchmark scripts: a process pool with one torch thread per worker, tables."""

from __future__ import annotations

import os
import sys
from multiprocessing import Pool
from typing import Callable, Iterable

import numpy as np
import pandas as pd
from tqdm import tqdm

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one thread per process: two processes on two cores, no oversubscription


def run_parallel(fn: Callable, tasks: Iterable, workers: int) -> list:
    """fn over tasks in ``workers`` processes (each with one torch thread), results in task order; a progress
    bar on stderr counts the finished runs (a benchmark can take an hour)."""
    tasks = list(tasks)
    bar = tqdm(total=len(tasks), desc="runs", unit="run", file=sys.stderr, mininterval=5)
    if workers <= 1:
        _init_worker()
        out = []
        for t in tasks:
            out.append(fn(t))
            bar.update()
        bar.close()
        return out
    with Pool(workers, initializer=_init_worker) as pool:
        out = []
        for result in pool.imap(fn, tasks, chunksize=1):
            out.append(result)
            bar.update()
    bar.close()
    return out


def best_so_far(X: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """The best point among the first n evaluations (failed ones, NaN, ignored)."""
    head = np.where(np.isfinite(y[:n]), y[:n], -np.inf)
    return X[int(np.argmax(head))]


def iqr(values: pd.Series) -> str:
    q1, q3 = np.percentile(values, [25, 75])
    return f"{q1:.3g} - {q3:.3g}"


def save_table(df: pd.DataFrame, name: str, title: str, command: str) -> str:
    """Write ``df`` as CSV and as a Markdown table (with the command that made it) under results/."""
    os.makedirs(RESULTS, exist_ok=True)
    df.to_csv(os.path.join(RESULTS, f"{name}.csv"), index=False)
    md = f"## {title}\n\n`{command}`\n\n" + df.to_markdown(index=False, floatfmt=".4g") + "\n"
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write(md)
    print(md)
    return md

"""Progress of a run on stderr: a tqdm bar in a terminal, else a plain line every tenth of the budget (a log file or
a CI job gets a dozen lines, not one per refresh)."""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    """Evaluations done out of ``budget`` and the best value so far, moved after every round."""

    def __init__(self, budget: int, desc: str = "", initial: int = 0, file: TextIO | None = None):
        self.file = file or sys.stderr
        self.budget, self.desc, self.n = budget, desc, initial
        self.bar: Any = None
        if _is_terminal(self.file):
            from tqdm import tqdm

            self.bar = tqdm(total=budget, initial=initial, desc=desc or None, unit="eval", dynamic_ncols=True,
                            file=self.file)
        self.said = self._tenth(initial)
        self.shown, self.best = initial, None

    def _tenth(self, n: int) -> int:
        return 10 * n // max(self.budget, 1)

    def update(self, n: int, best: float | None) -> None:
        """``n`` evaluations done, ``best`` the best value (None while none succeeded)."""
        if self.bar is not None:
            self.bar.update(n - self.bar.n)
            if best is not None:
                self.bar.set_postfix(best=f"{best:.6g}", refresh=False)
        elif self._tenth(n) > self.said or (n >= self.budget > self.n):
            self.said = self._tenth(n)
            self._line(n, best)
        self.n, self.best = n, best

    def _line(self, n: int, best: float | None) -> None:
        shown = "none yet" if best is None else f"{best:.6g}"
        print(f"{self.desc + ': ' if self.desc else ''}{n}/{self.budget} evaluations, best {shown}", file=self.file,
              flush=True)
        self.shown = n

    def close(self) -> None:
        """Leave the bar as it ended (outside a terminal: a last line, if the run stopped between two)."""
        if self.bar is not None:
            self.bar.close()
        elif self.n > self.shown:
            self._line(self.n, self.best)


def _is_terminal(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False

"""Progress for long work: a tqdm bar on a terminal, a log line per interval everywhere else.

Ray workers, CI and `nohup` runs have no terminal, where a tqdm bar is either hidden or floods the
log; there `Progress` logs `desc: done/total (pct) rate, elapsed, ~time left` every `interval`
seconds through `logging` instead.

Must not know: what the work is.

Example (CPU, instant):
    python -c "from tune_distill.progress import Progress; p = Progress(3, 'demo'); \
[p.update() for _ in range(3)]; p.close()"
"""

from __future__ import annotations

import logging
import sys
import time

from tqdm.auto import tqdm

log = logging.getLogger("tune_distill.progress")


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """`update(n)`, `set_postfix(**values)`, `close()`; also a context manager."""

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0, interval: float = 30.0) -> None:
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.done = initial
        self.initial = initial
        self.postfix: dict[str, object] = {}
        self.began = self.last = time.perf_counter()
        on_terminal = sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, mininterval=1) if on_terminal else None

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self._log(now)

    def set_postfix(self, **values: object) -> None:
        self.postfix = values
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)

    def _log(self, now: float) -> None:
        elapsed = now - self.began
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        extra = "".join(f", {key}={value}" for key, value in self.postfix.items())
        log.info("%s: %d/%d (%.0f%%) %.2f %s/s, elapsed %s, ~%s left%s", self.desc, self.done, self.total,
                 100 * self.done / max(1, self.total), rate, self.unit, _duration(elapsed),
                 _duration(left) if left == left else "?", extra)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.done > self.initial:
            self._log(time.perf_counter())

    @classmethod
    def iterate(cls, items, desc: str, unit: str = "it", interval: float = 30.0):
        """Yield from `items` (a sized collection), counting each one."""
        with cls(len(items), desc, unit=unit, interval=interval) as progress:
            for item in items:
                yield item
                progress.update(1)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

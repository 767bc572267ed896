"""A small progress bar on stderr (no tqdm dependency).

``progress`` arguments across the package mean:
  * None (default): a bar when stderr is a terminal, nothing otherwise (logs stay clean);
  * True / False: force the bar on or off;
  * a callable: called as ``progress(done, total, name)`` after each step instead of a bar.
"""

import sys
import time


class Progress:
    """Counts steps of a long run and renders them as a bar, a callback, or nothing."""

    def __init__(self, progress, total, label="quantizing", stream=None):
        self.total = max(int(total), 0)
        self.done = 0
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.callback = progress if callable(progress) else None
        if progress is None:
            isatty = getattr(self.stream, "isatty", None)
            self.bar = bool(isatty and isatty())
        else:
            self.bar = progress is True
        self.start = time.monotonic()
        self._last = 0.0
        if self.bar:
            self._draw("")

    def step(self, name=""):
        """Marks one step done (``name`` is what was just finished)."""
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total, name)
        if self.bar:
            now = time.monotonic()
            # Redraw at most 20 times a second: a terminal write per tiny layer would cost more
            # than the layer.
            if now - self._last >= 0.05 or self.done >= self.total:
                self._last = now
                self._draw(name)

    def update(self, done, total, name=""):
        """Sets the count (for engines that report done/total themselves)."""
        self.total = max(int(total), 0)
        self.done = int(done) - 1
        self.step(name)

    def _draw(self, name):
        width = 30
        frac = self.done / self.total if self.total else 1.0
        fill = int(round(width * frac))
        elapsed = time.monotonic() - self.start
        eta = ""
        if 0 < self.done < self.total:
            eta = f" eta {elapsed / self.done * (self.total - self.done):.1f}s"
        name = name if len(name) <= 32 else "…" + name[-31:]
        line = f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} {elapsed:.1f}s{eta} {name}"
        self.stream.write(line.ljust(100))
        self.stream.flush()

    def close(self):
        if self.bar:
            self.stream.write("\n")
            self.stream.flush()
            self.bar = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

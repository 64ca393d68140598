"""How busy this machine is right now: which cores other processes are using, and how many threads are free.

Speed measured while another program holds a core is not the speed of the model (two llama.cpp threads
collapse from ~100 to ~2 tok/s when one core is taken). Measure first, then pick threads that are really free.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

BUSY_CORE = 0.5  # a core whose busy share from other processes is above this is taken


@dataclass
class Contention:
    """Per usable core: the share of the sampled interval spent on other processes (0 = idle, 1 = fully taken)."""

    seconds: float
    cores: list[int]
    busy: list[float]
    own: float = 0.0  # cores' worth of CPU this process (and its children) used meanwhile, already subtracted
    load_avg: float | None = None
    taken: list[int] = field(default_factory=list)

    @property
    def usable_cores(self) -> int:
        return len(self.cores)

    @property
    def free_cores(self) -> int:
        return self.usable_cores - len(self.taken)

    @property
    def busy_cores(self) -> float:
        """Cores' worth of CPU other processes used (e.g. 1.9 of 2)."""
        return float(sum(self.busy))

    @property
    def contended(self) -> bool:
        return bool(self.taken)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(usable_cores=self.usable_cores, free_cores=self.free_cores, busy_cores=round(self.busy_cores, 2),
                 contended=self.contended)
        d["busy"] = [round(b, 3) for b in self.busy]
        return d


def _usable_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _own_cpu_seconds(proc: Any) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:  # noqa: BLE001 - a child may exit while we read it
            continue
    return total


def measure_contention(seconds: float = 1.0) -> Contention:
    """Sample per-core utilisation for ``seconds`` and subtract this process tree's own use.

    This process sleeps while sampling, so what remains is other programs. Our own (small) use is spread
    evenly over the usable cores before the subtraction.
    """
    import psutil

    cores = _usable_cores()
    proc = psutil.Process()
    own_before = _own_cpu_seconds(proc)
    psutil.cpu_percent(percpu=True)  # start the interval
    started = time.perf_counter()
    time.sleep(max(seconds, 0.05))
    per_cpu = psutil.cpu_percent(percpu=True)
    elapsed = max(time.perf_counter() - started, 1e-6)
    own = max(_own_cpu_seconds(proc) - own_before, 0.0) / elapsed
    share = own / max(len(cores), 1)
    busy = [min(max(per_cpu[c] / 100.0 - share, 0.0), 1.0) if c < len(per_cpu) else 0.0 for c in cores]
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    taken = [c for c, b in zip(cores, busy) if b > BUSY_CORE]
    return Contention(seconds=round(elapsed, 3), cores=cores, busy=busy, own=round(own, 3), load_avg=load, taken=taken)


def free_threads(requested: int, contention: Contention | None = None) -> int:
    """Threads to use: ``requested``, but no more than the cores other processes leave free (at least 1)."""
    c = contention or measure_contention()
    return max(1, min(int(requested), c.free_cores))

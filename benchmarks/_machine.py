"""What machine a benchmark ran on (shared by the benchmark scripts and ``run_all.py``)."""
from __future__ import annotations

import platform


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else what ``platform`` knows)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def emit_report(report: str, out: str | None) -> int:
    """Print a benchmark's Markdown report and, if ``out`` is given, also write it there; 0."""
    from pathlib import Path

    print(report)
    if out:
        Path(out).write_text(report)
    return 0

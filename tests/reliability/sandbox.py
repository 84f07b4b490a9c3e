"""Running a stage in a child process, inside a sandbox folder, and looking at what it left.

``run_child`` runs a Python snippet in a fresh interpreter whose working directory is an empty
folder; it reports the child's exit status, output, peak memory (``ru_maxrss`` of the child
alone, via ``RUSAGE_CHILDREN`` in a wrapper) and CPU time (user + system: unlike wall time, it does
not grow when the machine is busy). ``snapshot`` records every path under a
folder with its size and content hash, so a test can say exactly what appeared or changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).parents[2]

_WRAPPER = """
import json, resource, subprocess, sys
done = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                  "maxrss_kb": usage.ru_maxrss, "cpu_seconds": usage.ru_utime + usage.ru_stime}))
"""


@dataclass(frozen=True)
class ChildRun:
    rc: int
    stdout: str
    stderr: str
    maxrss_mb: float
    cpu_seconds: float


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    env.pop("PYTHONSTARTUP", None)
    return env


def run_child(code: str, cwd: Path, *, timeout: float = 120, env: dict[str, str] | None = None) -> ChildRun:
    """Run ``code`` in a new interpreter in ``cwd``; its peak RSS is measured alone (not the wrapper's)."""
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or child_env(),
        check=True,
    )
    report = json.loads(done.stdout)
    return ChildRun(
        report["rc"], report["stdout"], report["stderr"], report["maxrss_kb"] / 1024, report["cpu_seconds"]
    )


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (relative path → ``dir``, ``link:<target>`` or ``<size>:<sha256>``)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = f"link:{os.readlink(path)}"
        elif path.is_dir():
            found[name] = "dir"
        else:
            data = path.read_bytes()
            found[name] = f"{len(data)}:{hashlib.sha256(data).hexdigest()}"
    return found

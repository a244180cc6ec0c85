"""What every live benchmark needs to run commands, inside namespaces it makes and always deletes.

Benchmarks send traffic only inside network namespaces they create, with no
route out; ``namespaces`` deletes them (and kills what this script started in
them) whatever happens.
"""

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path


def sh(*cmd: str, timeout: float = 120.0, cwd: Path | None = None,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=env)


def in_ns(ns: str, *cmd: str, timeout: float = 120.0, pin: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *pin, *cmd, timeout=timeout)


def must(r: subprocess.CompletedProcess[str]) -> str:
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(r.args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout


@contextlib.contextmanager
def namespaces(*names: str) -> Iterator[None]:
    made: list[str] = []
    try:
        for name in names:
            must(sh("ip", "netns", "add", name))
            made.append(name)
            must(in_ns(name, "ip", "link", "set", "lo", "up"))
        yield
    finally:
        for name in made:
            for pid in sh("ip", "netns", "pids", name).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)  # only processes this script started in its own namespaces
            sh("ip", "netns", "del", name)

"""What every live benchmark needs to run commands, inside namespaces it makes and always deletes.

Benchmarks send traffic only inside network namespaces they create, with no
route out; ``namespaces`` deletes them (and kills what this script started in
them) whatever happens.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent


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


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid``, every thread, from /proc/PID/stat: steadier than wall time."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state); comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Process:
    """A long-running command in a namespace; its stdout and stderr lines collected as they come."""

    def __init__(self, ns: str, *cmd: str, pin: tuple[str, ...] = (), tree: Path = ROOT) -> None:
        """``tree``: the checkout whose simstack ``python -m simstack`` runs (another commit's, for a baseline)."""
        self.argv = ["ip", "netns", "exec", ns, *pin, *cmd]
        env = None if tree == ROOT else {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tree,
                                     env=env)
        self.out: list[str] = []
        self.err: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True).start()

    def _read(self, stream: IO[str] | None, sink: list[str]) -> None:
        assert stream is not None
        for line in stream:
            with self.cond:
                sink.append(line)
                self.cond.notify_all()

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """The first stdout line holding ``text``; the benchmark ends if none comes in time."""
        with self.cond:
            self.cond.wait_for(lambda: any(text in line for line in self.out) or self.proc.poll() is not None, timeout)
            for line in self.out:
                if text in line:
                    return line
        self.stop()
        raise SystemExit(f"{' '.join(self.argv)} did not say {text!r}:\n{''.join(self.out + self.err)}")

    def cpu(self) -> float:
        """Seconds of CPU the process used: ip netns exec execs it, so the pid is its own."""
        return cpu_seconds(self.proc.pid)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise SystemExit("no VmRSS")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[Path]:
    """A detached worktree of ``ref`` in a temporary directory, removed afterwards.

    ``python -m simstack`` run there with ``PYTHONPATH=<tree>`` (and cwd in it,
    since ``-m`` puts the cwd first on sys.path) runs that commit's stack: the
    symlinks under ``simstack/`` make the tree importable without installing it.
    """
    tmp = Path(tempfile.mkdtemp(prefix="simstack-baseline-"))
    try:
        must(sh("git", "-C", str(ROOT), "worktree", "add", "--detach", str(tmp), ref))
        yield tmp
    finally:
        sh("git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp))
        shutil.rmtree(tmp, ignore_errors=True)


def rev(ref: str) -> str:
    return must(sh("git", "-C", str(ROOT), "rev-parse", "--short", f"{ref}^{{commit}}")).strip()


def require(why: str, *tools: str) -> None:
    """Root (for ``why``) and the commands a live benchmark drives; else one line on stderr and exit 2."""
    script = f"bench/{Path(sys.argv[0]).name}"
    if os.geteuid() != 0:
        print(f"{script} needs root ({why})", file=sys.stderr)
        raise SystemExit(2)
    for tool in tools:
        if not shutil.which(tool):
            print(f"{script} needs {tool}", file=sys.stderr)
            raise SystemExit(2)


def pins(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``--cpus STACK,LOAD``: taskset prefixes that put the stack and its load on CPUs of their own."""
    if text == "none" or len(os.sched_getaffinity(0)) < 2:
        return (), ()
    cpus = text.split(",")
    allowed = os.sched_getaffinity(0)
    if len(cpus) != 2 or not all(c.isdigit() and int(c) in allowed for c in cpus) or cpus[0] == cpus[1]:
        raise SystemExit(f"--cpus {text}: want two different CPUs out of {sorted(allowed)}, or none")
    if not shutil.which("taskset"):
        raise SystemExit("--cpus needs taskset (util-linux); or pass --cpus none")
    return ("taskset", "-c", cpus[0]), ("taskset", "-c", cpus[1])

"""Fixtures for live tests: a fresh network namespace per test, simstack running inside it.

Each namespace has only ``lo`` and whatever the test adds, so no frame can
leave the machine, and it is deleted (with every process still in it) even
when the test fails. Waiting is always for a condition with a timeout: a
line on simstack's stdout, or a process exit.
"""

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import require, require_tool

TUN = Path("/dev/net/tun")
UDP_PEER = Path(__file__).with_name("udp_peer.py")  # the kernel side's UDP traffic, run inside a namespace
READY = re.compile(r"^simstack: live on (\S+) ")
_names = itertools.count(1)


class Simstack:
    """One ``simstack live`` process; stdout and stderr are collected by reader threads."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._cond = threading.Condition()
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, sink), daemon=True)
                         for stream, sink in ((self.proc.stdout, self._out), (self.proc.stderr, self._err))]
        for t in self._readers:
            t.start()

    def _read(self, stream: IO[str] | None, sink: list[str]) -> None:
        assert stream is not None
        for line in stream:
            with self._cond:
                sink.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        with self._cond:
            return "".join(self._out)

    @property
    def stderr(self) -> str:
        with self._cond:
            return "".join(self._err)

    def wait_for_line(self, pattern: "str | re.Pattern[str]", timeout: float = 10.0) -> str:
        """The first stdout line matching ``pattern``; fails if the process exits or time runs out."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._out:
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not any(t.is_alive() for t in self._readers)):
                    pytest.fail(f"no line matching {rx.pattern!r} from {' '.join(self.argv)}\n"
                                f"exit: {self.proc.poll()}\nstdout:\n{''.join(self._out)}\nstderr:\n{''.join(self._err)}")
                self._cond.wait(min(left, 0.1))

    def wait_ready(self, timeout: float = 10.0) -> str:
        return self.wait_for_line(READY, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 10.0) -> int:
        rc = self.proc.wait(timeout)
        for t in self._readers:
            t.join(timeout)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Netns:
    """A network namespace made for one test; ``run`` and ``simstack`` execute inside it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[Simstack] = []
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
        self.run("ip", "link", "set", "lo", "up", check=True)

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, timeout: float = 20.0, check: bool = False) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(*cmd), capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def simstack_argv(self, *args: str, prefix: tuple[str, ...] = ()) -> list[str]:
        return self.argv(*prefix, sys.executable, "-m", "simstack", "live", *args)

    def simstack(self, *args: str, prefix: tuple[str, ...] = ()) -> Simstack:
        """Start ``simstack live ARGS`` in the namespace (not yet ready: call ``wait_ready``)."""
        s = Simstack(self.simstack_argv(*args, prefix=prefix))
        self.procs.append(s)
        return s

    def live(self, *args: str) -> Simstack:
        """``simstack live tap0 ARGS`` started and ready."""
        s = self.simstack("tap0", *args)
        s.wait_ready()
        return s

    def simstack_once(self, *args: str, prefix: tuple[str, ...] = (), timeout: float = 30.0
                      ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.simstack_argv(*args, prefix=prefix), capture_output=True, text=True, timeout=timeout)

    def spawn(self, *cmd: str) -> Simstack:
        """Start any long-running command in the namespace, output collected (``wait_for_line``), killed at teardown."""
        s = Simstack(self.argv(*cmd))
        self.procs.append(s)
        return s

    def udp_peer(self, *args: str, timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
        """Run ``udp_peer.py ARGS`` on the kernel's side; its exit code and the JSON line it printed last."""
        r = self.run(sys.executable, str(UDP_PEER), *args, timeout=timeout)
        lines = r.stdout.strip().splitlines()
        if not lines:
            pytest.fail(f"udp_peer.py {' '.join(args)} printed nothing (exit {r.returncode}):\n{r.stderr}")
        return r.returncode, json.loads(lines[-1])

    def link_exists(self, name: str) -> bool:
        return self.run("ip", "link", "show", name).returncode == 0

    def delete(self) -> None:
        for s in self.procs:
            s.kill()
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=10).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError):  # processes this test started in its namespace
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A fresh namespace named ssl-<pid>-<n>, deleted afterwards whatever happens."""
    require(os.geteuid() == 0, "live tests need root (network namespaces, TAP devices)")
    require(TUN.exists(), f"{TUN} is missing (no TUN/TAP support)")
    require_tool("ip")
    ns = Netns(f"ssl-{os.getpid()}-{next(_names)}")
    try:
        yield ns
    finally:
        ns.delete()


def received(ping_output: str) -> tuple[int, int]:
    """(transmitted, received) from ping's summary line."""
    m = re.search(r"(\d+) packets transmitted, (\d+) received", ping_output)
    assert m, ping_output
    return int(m.group(1)), int(m.group(2))

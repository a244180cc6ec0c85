"""``simstack live --offload`` and ``--mtu`` against the kernel: 64 KB segments both ways, or MTU-sized ones.

Each case moves 20 MB from simstack to curl (``--serve http:DIR``, checked
by sha256) and 20 MB through simstack's echo (``tcp_peer.py``, both
directions checked by sha256), then stops simstack and reads the counters it prints: with
offload the frames are many MSS long each way (the kernel's GSO frames in,
our TSO frames out, which the kernel cut and accepted, checksums and all);
without it no frame carries more than the MSS, and at MTU 9000 they carry
up to 8960 bytes.
"""

import sys
from pathlib import Path

import pytest
from conftest import require_tool

from .conftest import Netns
from .test_lab import Lab
from .test_lab import lab as lab  # the fixture, for the lab test below
from .test_tcp import MB, curl_download, peer, sha256_file

pytestmark = pytest.mark.live

CASES = [(False, 1500), (True, 1500), (False, 9000), (True, 9000)]


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    with (root / "big.bin").open("wb") as f:
        f.write(bytes(range(256)) * (20 * MB // 256) + b"end")
    return root


@pytest.mark.parametrize(("offload", "mtu"), CASES, ids=[f"{'offload' if o else 'plain'}-mtu{m}" for o, m in CASES])
def test_20_mb_each_way_with_and_without_offload(netns: Netns, www: Path, tmp_path: Path, offload: bool,
                                                 mtu: int) -> None:
    require_tool("curl")
    flags = ["--offload"] if offload else []
    if mtu != 1500:
        flags += ["--mtu", str(mtu)]
    stack = netns.live("--serve", f"http:{www}", "--serve", "echo", *flags)
    ready = stack.wait_ready()
    assert f"mtu {mtu};" in ready, ready
    assert f"mtu {mtu} " in netns.run("ip", "link", "show", "tap0", check=True).stdout
    got = tmp_path / "got.bin"
    code, speed = curl_download(netns, "http://10.0.0.1/big.bin", got, timeout=120)
    assert code == "200" and sha256_file(got) == sha256_file(www / "big.bin")
    out = peer(netns, "echo", "10.0.0.1", "7", "--size", str(20 * MB), "--seed", "5", timeout=120)
    assert out["ok"] and out["sha256"] == out["sent_sha256"], out
    assert stack.stop() == 0
    counters = _counters(stack.stdout)
    assert not any(k.endswith("bad_checksum") for k in counters), counters
    mss = mtu - 40
    sent, taken = 40 * MB, 20 * MB  # the download and the echo out; the echo in
    tx, rx = counters["eth.tx"], counters["eth.rx"]
    if offload:
        # segments of several MSS each (ACKs besides): ours, cut by the kernel, and the kernel's own, uncut
        assert tx < sent / mss / 2 and rx < taken / mss, counters
    else:
        assert tx >= sent / mss and rx >= taken / mss, counters
        if mtu > 1500:
            assert tx < sent / 1460 / 2, counters  # the MSS in use is 8960, not 1460
    print(f"{'offload' if offload else 'plain'}, MTU {mtu}: curl {speed / MB:.1f} MB/s, echo "
          f"{20 / out['seconds']:.1f} MB/s each way; frames out {tx}, in {rx}", file=sys.stderr)


def _counters(report: str) -> dict[str, int]:
    """The counters simstack prints on exit, one layer a line: ``eth    rx=18278 tx=20449``."""
    out: dict[str, int] = {}
    for line in report.splitlines():
        layer, _, rest = line.partition(" ")
        for word in rest.split():
            name, eq, value = word.partition("=")
            if eq and value.isdigit():
                out[f"{layer}.{name}"] = int(value)
    return out


def test_offload_refuses_what_it_cannot_do(netns: Netns) -> None:
    for extra, words in ((["tap1"], "one IFNAME"), (["--impair", "loss=1%"], "--impair"),
                         (["--record", "/tmp/x.yaml"], "--record")):
        r = netns.simstack_once("tap0", *extra, "--offload")
        assert r.returncode == 2 and words in r.stderr, r.stderr
        assert not netns.link_exists("tap0")
    r = netns.simstack_once("tap0", "--mtu", "67")
    assert r.returncode == 2 and "--mtu 67" in r.stderr, r.stderr


def test_offload_through_a_lab_bridge(lab: Lab, www: Path, tmp_path: Path) -> None:
    """The bridge forwards the kernel's GSO frames to the TAP and ours to a client's veth, cut where needed."""
    require_tool("curl")
    stack = lab.simstack("--offload", "--serve", f"http:{www}")
    got = tmp_path / "got.bin"
    r = lab.client(1, "curl", "-sS", "--fail", "-o", str(got), "--max-time", "60", "http://10.0.0.1/big.bin")
    assert r.returncode == 0, r.stderr
    assert sha256_file(got) == sha256_file(www / "big.bin")
    assert stack.stop() == 0
    counters = _counters(stack.stdout)
    assert counters["eth.tx"] < 20 * MB / 1460 / 2, counters  # segments of many MSS went out


def test_a_persistent_tap_forgets_the_offload_of_the_session_before(netns: Netns, www: Path, tmp_path: Path) -> None:
    """The offloads belong to the device: a plain session after an --offload one must not get 64 KB frames."""
    require_tool("curl")
    netns.run("ip", "tuntap", "add", "tap0", "mode", "tap", check=True)
    netns.run("ip", "addr", "add", "10.0.0.2/24", "dev", "tap0", check=True)
    for flags in (["--offload"], []):
        stack = netns.live("--serve", f"http:{www}", "--serve", "echo", *flags)
        out = peer(netns, "echo", "10.0.0.1", "7", "--size", str(2 * MB), "--seed", "7", timeout=60)
        assert out["ok"] and out["sha256"] == out["sent_sha256"], (flags, out)
        assert stack.stop() == 0
        counters = _counters(stack.stdout)
        assert not any(k.endswith("bad_checksum") for k in counters), (flags, counters)
        many = counters["eth.rx"] >= 2 * MB / 1460
        assert many != bool(flags), (flags, counters)  # MTU-sized frames in, only without offload
    assert netns.link_exists("tap0")  # persistent: still there

"""``simstack live``'s options are checked before anything is set up: one line each, and nothing touched.

``plan`` is the whole check and touches nothing on the system, so these run
without root; tests/live/test_bad_input.py runs a few of the same through
the real command, in a namespace of its own.
"""

import subprocess
from pathlib import Path

import pytest

from simstack.engine.live.lab import MAX_CLIENTS
from simstack.engine.live.session import LiveOptions, plan
from simstack.engine.wire.errors import SetupError


def refused(**kw: object) -> str:
    """The one line ``plan`` refuses these options with."""
    with pytest.raises(SetupError) as info:
        plan(LiveOptions("tap0", **kw))  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        # NaN and infinity (issue 16.4): --interval nan waited forever, inf and 1e308 overflowed
        ({"ping": "10.0.0.2", "interval": float("nan")}, "--interval nan: must be a finite number of seconds"),
        ({"ping": "10.0.0.2", "interval": float("inf")}, "--interval inf: must be a finite number of seconds"),
        ({"ping": "10.0.0.2", "interval": 1e308}, "--interval 1e+308: want a time in seconds from 0 to 3600"),
        ({"ping": "10.0.0.2", "interval": -1.0}, "--interval -1: want a time in seconds from 0 to 3600"),
        ({"ping": "10.0.0.2", "linger": float("inf")}, "--linger inf: must be a finite number of seconds"),
        ({"ping": "10.0.0.2", "linger": float("nan")}, "--linger nan: must be a finite number of seconds"),
        ({"interval": float("nan")}, "--interval nan"),  # checked with or without --ping
        # ranges (16.5)
        ({"ping": "10.0.0.2", "count": 0}, "--count 0: want 1 to 65535"),
        ({"ping": "10.0.0.2", "count": 10**30}, "--count 1000000000000000000000000000000: want 1 to 65535"),
        ({"seed": -1}, "--seed -1: want 0 to 2**64 - 1"),
        ({"seed": 2**64}, "--seed 18446744073709551616: want 0 to 2**64 - 1"),
        ({"lab": "lb", "lab_clients": MAX_CLIENTS + 1, "ip": "10.0.0.1/16"}, f"want at most {MAX_CLIENTS}"),
        # a service twice (16.10): "OSError: Address already in use" after the TAP was up
        ({"serve": ("echo", "echo")}, "--serve echo is given twice"),
        # the stack's own addresses (16.14)
        ({"ip": "255.255.255.255/32"}, "--ip: 255.255.255.255 is the limited broadcast address"),
        ({"ip": "127.0.0.1/8"}, "--ip: 127.0.0.1 is a loopback address"),
        ({"ip": "224.0.0.1/24"}, "--ip: 224.0.0.1 is a multicast address"),
        ({"ip": "0.0.0.0/8"}, "--ip: 0.0.0.0 is in 0.0.0.0/8"),
        ({"ip": "10.0.0.255/24"}, "--ip: 10.0.0.255/24 is the subnet's network or broadcast address"),
        ({"gateway": "10.0.0.1"}, "--gateway: 10.0.0.1 is the stack's own address"),
        ({"gateway": "10.0.0.255"}, "--gateway: 10.0.0.255 is the subnet's network or broadcast address"),
        ({"gateway": "10.9.9.9"}, "--gateway: 10.9.9.9 is not on the stack's subnet 10.0.0.1/24"),
        ({"mac": "01:00:5e:00:00:01"}, "--mac: 01:00:5e:00:00:01: the stack needs a unicast MAC address"),
        ({"mac": "00:00:00:00:00:00"}, "needs a unicast MAC address"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else None,
)
def test_bad_options_are_refused_by_plan(kw: dict[str, object], words: str) -> None:
    assert words in refused(**kw)


def test_a_slash_31_and_a_slash_32_have_no_network_or_broadcast_address() -> None:
    """RFC 3021: the check above must not refuse the two addresses of a /31."""
    for ip in ("10.0.0.0/31", "10.0.0.1/31", "10.0.0.7/32"):
        assert plan(LiveOptions("tap0", ip=ip, host_config=False)).config.prefix_len in (31, 32)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("tap%d", "'%' asks the kernel to choose the number"),  # 16.15: it said the TAP "vanished"
        ("t%s", "'%' asks the kernel to choose the number"),
        ("tap 0", "no '/', ':' or whitespace"),
        ("tap\v0", "no '/', ':' or whitespace"),
        ("..", "not '.' or '..'"),
        ("a" * 16, "want 1 to 15 bytes"),
    ],
)
def test_bad_interface_names_say_what_is_wrong(name: str, words: str) -> None:
    with pytest.raises(SetupError) as info:
        plan(LiveOptions(name))
    assert str(info.value).startswith(f"bad interface name {name!r}: ") and words in str(info.value)


def test_record_into_a_directory_or_an_unwritable_place_is_refused_at_once(tmp_path: Path) -> None:
    """16.10: the whole session ran and then lost the recording with IsADirectoryError."""
    assert "--record " + str(tmp_path) + ": is a directory" in refused(record=str(tmp_path))
    assert "no such directory" in refused(record=str(tmp_path / "nowhere" / "x.yaml"))
    readonly = tmp_path / "ro"
    readonly.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(readonly), str(readonly)], check=False, capture_output=True)
    try:
        if _is_writable(readonly):
            pytest.skip("cannot make a read-only directory here (a read-only bind mount needs root)")
        assert f"--record {readonly}/x.yaml: cannot write: Read-only file system" in refused(record=str(readonly / "x.yaml"))
    finally:
        subprocess.run(["umount", str(readonly)], check=False, capture_output=True)


def _is_writable(directory: Path) -> bool:
    try:
        (directory / ".probe").touch()
    except OSError:
        return False
    (directory / ".probe").unlink()
    return True


def test_a_good_record_path_is_left_as_it_was(tmp_path: Path) -> None:
    """The startup check opens the file to be sure it can be written: it must not create or truncate it."""
    new = tmp_path / "new.yaml"
    plan(LiveOptions("tap0", record=str(new)))
    assert not new.exists()
    old = tmp_path / "old.yaml"
    old.write_text("kept\n")
    plan(LiveOptions("tap0", record=str(old)))
    assert old.read_text() == "kept\n"


def test_the_bounds_in_docs_live_are_the_codes() -> None:
    from conftest import ROOT

    from simstack.engine.live.session import MAX_SECONDS

    text = " ".join((ROOT / "docs" / "live.md").read_text().split())
    assert f"`-i` and `-W` finite numbers of seconds from 0 to {MAX_SECONDS:g}" in text
    assert f"`--lab-clients` 1 to {MAX_CLIENTS}" in text

"""``simstack live``'s TCP and service options, checked before anything is set up (no root needed)."""

from pathlib import Path

import pytest

from simstack.cli import build_parser
from simstack.engine.live.session import LiveOptions, plan
from simstack.engine.wire.errors import SetupError


def test_tcp_msl_and_rto_min_reach_the_stacks_tcp_config() -> None:
    p = plan(LiveOptions("tap0", tcp_msl=1.5, tcp_rto_min=0.5))
    assert (p.config.tcp.msl, p.config.tcp.rto_min, p.config.tcp.rto_initial) == (1.5, 0.5, 1.0)
    default = plan(LiveOptions("tap0"))
    assert (default.config.tcp.msl, default.config.tcp.rto_min) == (30.0, 0.2)  # Linux's TCP_RTO_MIN, live
    assert (default.config.tcp.rcvbuf, default.config.tcp.sndbuf) == (1 << 20, 1 << 20)  # no autotuning: its size
    assert default.config.tcp.abc_limit > 64  # every segment a stretch ACK covers counts, as on Linux


@pytest.mark.parametrize(("opts", "fragment"), [
    (LiveOptions("tap0", tcp_msl=0), "--tcp-msl 0: want a time in seconds"),
    (LiveOptions("tap0", tcp_rto_min=-1), "--tcp-rto-min -1"),
    (LiveOptions("tap0", tcp_rto_min=600), "at most 60"),
    (LiveOptions("tap0", serve=("gopher",)), "--serve gopher: unknown service"),
    (LiveOptions("tap0", tcp_options="ws,tcp"), "--tcp-options ws,tcp: want none, or some of ws,ts,sack"),
    (LiveOptions("tap0", tcp_options=""), "--tcp-options : want none"),
    (LiveOptions("tap0", serve=("http:/no/such/dir",)), "is not a directory"),
])
def test_bad_values_are_refused_with_one_line(opts: LiveOptions, fragment: str) -> None:
    with pytest.raises(SetupError, match=fragment):
        plan(opts)


def test_serve_accepts_http_with_a_directory(tmp_path: Path) -> None:
    assert plan(LiveOptions("tap0", serve=("echo", f"http:{tmp_path}"))).config is not None
    args = build_parser().parse_args(["live", "tap0", "--serve", f"http:{tmp_path}", "--tcp-msl", "2"])
    assert (args.serve, args.tcp_msl) == ([f"http:{tmp_path}"], 2.0)


def test_live_offers_window_scaling_timestamps_and_sack_unless_told_not_to() -> None:
    """RFC 7323 and RFC 2018 on by default live (as Linux), while replay's TcpConfig keeps them off."""
    tcp = plan(LiveOptions("tap0")).config.tcp
    assert (tcp.wscale, tcp.timestamps, tcp.sack) == (7, True, True)
    assert tcp.rcvbuf > 0xFFFF  # a buffer the scaled window can offer beyond 65535
    off = plan(LiveOptions("tap0", tcp_options="none")).config.tcp
    assert (off.wscale, off.timestamps, off.sack) == (-1, False, False)
    some = plan(LiveOptions("tap0", tcp_options="ts,sack")).config.tcp
    assert (some.wscale, some.timestamps, some.sack) == (-1, True, True)
    args = build_parser().parse_args(["live", "tap0", "--tcp-options", "none"])
    assert args.tcp_options == "none"
    assert build_parser().parse_args(["live", "tap0"]).tcp_options == "ws,ts,sack"

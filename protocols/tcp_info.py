"""getsockopt(IPPROTO_TCP, TCP_INFO): the leading fields of Linux's ``struct tcp_info``, in its layout.

Tools written for Linux read a connection's congestion state this way (``ss -i``,
packetdrill's ``tcpi_*`` checks); the same bytes here let them, and the scenario
language's ``tcp_info`` call, read ours.
"""

import struct
from typing import TYPE_CHECKING

from . import tcp_table as T
from .seqnum import MASK
from .tcp_cc import CA_STATE_NUMBER

if TYPE_CHECKING:
    from .tcp_conn import TcpConn

TCP_INFO = 11  # Linux include/uapi/linux/tcp.h
TCP_CONGESTION = 13
CA_NAME_MAX = 16  # TCP_CA_NAME_MAX
# u8 state, ca_state, retransmits, probes, backoff, options, wscales, flags; u32 rto .. total_retrans
LAYOUT = struct.Struct("=8B24I")
SIZE = LAYOUT.size  # 104, the struct as Linux 2.6 to 4.5 had it; later fields are not reported
# Linux's enum of TCP states (include/net/tcp_states.h)
STATE_NUMBER = {
    T.ESTABLISHED: 1, T.SYN_SENT: 2, T.SYN_RECEIVED: 3, T.FIN_WAIT_1: 4, T.FIN_WAIT_2: 5, T.TIME_WAIT: 6,
    T.CLOSED: 7, T.CLOSE_WAIT: 8, T.LAST_ACK: 9, T.LISTEN: 10, T.CLOSING: 11,
}
OPT_TIMESTAMPS, OPT_SACK, OPT_WSCALE = 1, 2, 4  # TCPI_OPT_*
INFINITE_SSTHRESH = 0x7FFFFFFF


def tcp_info(conn: "TcpConn", now: float) -> bytes:
    """struct tcp_info: times in microseconds (milliseconds for the last_* ages), windows in segments."""
    mss = conn.snd_mss or 1
    sb = conn.sb
    options = (OPT_TIMESTAMPS if conn.ts_ok else 0) | (OPT_SACK if conn.sack_ok else 0) | \
        (OPT_WSCALE if conn.ws_ok else 0)
    unacked = (conn.snd_max - conn.snd_una) & MASK
    srtt = conn.srtt or 0.0
    ssthresh = conn.ssthresh // mss if conn.ssthresh < 1 << 30 else INFINITE_SSTHRESH
    return LAYOUT.pack(
        STATE_NUMBER[conn.state], CA_STATE_NUMBER[conn.ca_state], min(conn.retries, 255), min(conn.probes, 255),
        0, options, (conn.snd_wscale << 4 | conn.rcv_wscale) if conn.ws_ok else 0, 0,
        int(conn.rto * 1e6), int(conn.layer.config.delack_time * 1e6), conn.snd_mss, conn.rcv_mss,
        -(-unacked // mss), (sb.sacked // mss) if sb is not None else 0, 0, 0, 0,
        int((now - conn.last_send) * 1000) & MASK, 0, int((now - conn.last_rx) * 1000) & MASK, 0,
        conn.snd_mss + 40, conn.rcvbuf_size, int(srtt * 1e6), int(conn.rttvar * 1e6), ssthresh, conn.cwnd // mss,
        conn.our_mss, 3, 0, conn.rcvbuf_size, 0,
    )

"""The wire: what frames travel on and are stored in (TAP, pcap, captures, the simulated wire).

Depends only on ``simstack.protocols``; nothing here knows about scenarios or live sessions.
"""

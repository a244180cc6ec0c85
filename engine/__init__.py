"""Drivers around the sans-IO stack: the simulated wire, scenarios, pcap, TAP."""

"""Reliability and security suite: faults, load, hostile input (issue 6)."""

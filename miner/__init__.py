"""Miner agent: stream client, capability probe, executors."""

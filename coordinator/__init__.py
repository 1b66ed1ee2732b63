"""Coordinator: job lifecycle, miner streams, leases, persistence, access control."""

"""Coordinator domain: state machine, dispatch, leases, matching (no grpc, no SQL)."""

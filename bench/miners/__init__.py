"""Idle miner-stream benchmark (see bench.miners.run)."""

"""Receipt cryptography benchmark (python -m bench.receipts.run)."""

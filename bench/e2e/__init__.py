"""End-to-end benchmark: AITBC coordinator vs Celery 5 + Redis (see bench.e2e.run)."""

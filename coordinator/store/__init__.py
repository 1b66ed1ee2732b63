"""Coordinator persistence: the JobStore protocol and its SQL implementation."""

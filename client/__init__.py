"""Client SDK and the `aitbc` command line."""

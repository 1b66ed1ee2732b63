"""Coordinator gRPC servicers: transport only, a few lines per RPC."""

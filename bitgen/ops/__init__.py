"""Ops of the IR."""

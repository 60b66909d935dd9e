"""Approximate message passing (AMP) at finite size, written independently of the symbolic layer."""

"""Touchpoint records, the bounded queue and the sinks that drain it."""

"""Conditions, segments and the per-slot decision."""

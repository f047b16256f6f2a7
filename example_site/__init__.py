"""Acme Analytics: the example site that shows personalize_mw in a Starlette, Flask and Django app."""

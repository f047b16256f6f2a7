"""The pure core: no I/O, no framework. Adapters feed it bytes and headers."""

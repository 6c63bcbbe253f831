"""The `tthc-monitor` command: `main.py` parses and dispatches, one module per command group.

Kept free of imports so that importing a command group does not load every other one.
"""

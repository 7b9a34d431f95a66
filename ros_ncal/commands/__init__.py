"""Subcommands of `ncal` (one module each; see ros_ncal/cli.py)."""

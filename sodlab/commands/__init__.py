"""Subcommands of the `sodlab` CLI, one module each (see sodlab.cli)."""

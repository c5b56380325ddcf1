"""The CLI's commands, one module per group; runner/cli.py puts them together."""

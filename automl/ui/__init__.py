"""Every renderer of the command line (Rich and plain): only cli.py uses this package; library code never prints."""

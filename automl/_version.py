"""The package version, apart from ``automl/__init__`` so modules below it can read it without a cycle."""

__version__ = "0.1.0"

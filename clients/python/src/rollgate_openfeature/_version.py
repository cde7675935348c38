"""The package version (also in pyproject.toml; the `sdk` field of the client report)."""

__version__ = "0.1.0"

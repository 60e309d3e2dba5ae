"""tfc-watchdog: watches Terraform state locks and clears stale ones the safe way."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tfc-watchdog")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

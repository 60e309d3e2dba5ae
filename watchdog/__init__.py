"""tfc-watchdog: watches Terraform state locks and clears stale ones the safe way."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tfc-watchdog")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# The environment variables every command reads (config loading, the CLI's help). Here so
# the CLI can name them without importing config loading (pydantic, YAML: a second at start).
CONFIG_ENV = "TFC_WATCHDOG_CONFIG"
TOKEN_ENV = "TFC_WATCHDOG_TOKEN"  # noqa: S105 - the variable's name, not a token
GITLAB_TOKEN_ENV = "TFC_WATCHDOG_GITLAB_TOKEN"  # noqa: S105 - the variable's name, not a token

__all__ = ["CONFIG_ENV", "GITLAB_TOKEN_ENV", "TOKEN_ENV", "__version__"]

"""`python -m watchdog` is the same as the `tfc-watchdog` command."""

from watchdog.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""Fail loudly if the installed Dagster family is not the one consistent set we pin."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

EXPECTED = {
    "dagster": "1.13.27",
    "dagster-webserver": "1.13.27",
    "dagster-graphql": "1.13.27",
    "dagster-postgres": "0.29.27",
    "dagster-celery": "0.29.27",
}


def main() -> int:
    """Compare installed versions with EXPECTED; print each and return 1 on a mismatch."""
    bad = []
    for name, wanted in EXPECTED.items():
        try:
            found = version(name)
        except PackageNotFoundError:
            found = "missing"
        print(f"  {name} {found}")
        if found != wanted:
            bad.append(f"{name} is {found}, expected {wanted}")
    if bad:
        print("Dagster family out of step: " + "; ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

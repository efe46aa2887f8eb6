"""`wf-credits`: add credits to a user's balance, or show it, from a shell.

wf-credits grant <user> <amount> [--reason ..] [--reference ..]
wf-credits show <user>
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bridge_api.jobs.credits import ledger_time
from wf_store.credits import CreditStore


def main(argv: Sequence[str] | None = None) -> int:
    """`wf-credits grant <user> <amount> [--reason ..]` or `show <user>`."""
    from wf_core.settings import state_db_url
    from wf_store.state_db import open_state_db

    parser = argparse.ArgumentParser(prog="wf-credits", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("grant", help="add credits to a user's balance")
    add.add_argument("user_id")
    add.add_argument("amount", type=int)
    add.add_argument("--reason", default="granted from the command line")
    add.add_argument("--reference", default=None, help="a grant with one reference counts once")
    show = sub.add_parser("show", help="a user's balance, reserved credits and last entries")
    show.add_argument("user_id")
    args = parser.parse_args(argv)
    store = CreditStore(open_state_db(state_db_url()))
    if args.command == "grant":
        if args.amount <= 0:
            parser.error("amount must be positive")
        reference = f"grant:{args.reference}" if args.reference else None
        if not store.grant(args.user_id, args.amount, args.reason, reference):
            print(f"reference {args.reference!r} was already granted", file=sys.stderr)
    found = store.account(args.user_id)
    print(f"{found.user_id}: balance {found.balance}, reserved {found.reserved}")
    if args.command == "show":
        for entry in store.entries(args.user_id, limit=20)[0]:
            at = ledger_time(entry.at)
            print(f"  {at} {entry.kind:8} {entry.amount:>8} {entry.job_id} {entry.step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Credits held in escrow: an account per user and an append-only ledger of movements.

    grant    balance += n                      (an admin adds credits)
    reserve  balance -= n, reserved += n       (execute: the workflow's credits_cost)
    capture  reserved -= n                     (a step completed: its share is spent)
    release  reserved -= n, balance += n       (failed for good, cancelled: the rest)

Each movement is one ledger row keyed by (job, step, kind) under a unique constraint,
written in the same transaction as the account change: a crash or a repeat cannot
double-charge, and a movement is either wholly there or not at all. Every transaction
that moves a user's credits first locks the user's account row (a conditional UPDATE
on PostgreSQL, SQLite's write lock), so concurrent reserves can never overdraw.
Invariants, checked by the tests: `balance = grants - reserves + releases` and
`reserved = reserves - captures - releases` over the user's rows.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from wf_core.specs import WorkflowSpec
from wf_core.step_kinds import STEP_KIND_TABLE
from wf_store.schema import credit_accounts as accounts
from wf_store.schema import credit_holds as holds
from wf_store.schema import credit_ledger as ledger

GRANT, RESERVE, CAPTURE, RELEASE = "grant", "reserve", "capture", "release"
KINDS = (GRANT, RESERVE, CAPTURE, RELEASE)


class InsufficientCredits(Exception):
    """The balance cannot cover what a job needs; nothing was reserved."""

    def __init__(self, balance: int, required: int) -> None:
        super().__init__(f"balance {balance} cannot cover {required}")
        self.balance = balance
        self.required = required


class HoldChanged(Exception):
    """Another request re-held the job first (two retries at once); nothing was held."""


@dataclass(frozen=True)
class Entry:
    """One ledger row."""

    id: int
    user_id: str
    job_id: str
    step: str
    kind: str
    amount: int
    reason: str | None
    at: float


@dataclass(frozen=True)
class Account:
    """A user's credits: what may be spent and what is held for jobs in flight."""

    user_id: str
    balance: int
    reserved: int


@dataclass(frozen=True)
class Hold:
    """A job's reservation: its shares per step and its current hold number."""

    job_id: str
    user_id: str
    workflow_id: str
    shares: dict[str, int]
    hold: int
    open: bool


def step_shares(spec: WorkflowSpec) -> dict[str, int]:
    """How a workflow's credits_cost splits over its steps: evenly over the steps that call
    a model (every step if none does), the remainder on the last of them."""
    paid = [s.name for s in spec.steps if STEP_KIND_TABLE[s.kind].needs_model]
    paid = paid or [s.name for s in spec.steps]
    each, rest = divmod(spec.credits_cost, len(paid))
    shares = {s.name: 0 for s in spec.steps}
    for name in paid:
        shares[name] = each
    shares[paid[-1]] += rest
    return shares


def hold_step(number: int) -> str:
    """The ledger `step` of a reserve or release: the hold it belongs to."""
    return f"#{number}"


class CreditStore:
    """Accounts, holds and the ledger on the engine's state database."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    # -- reads ----------------------------------------------------------------------------

    def account(self, user_id: str) -> Account:
        """The user's balance and reserved credits (zero for a user never seen)."""
        query = sa.select(accounts).where(accounts.c.user_id == user_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return Account(user_id, 0, 0)
        return Account(user_id, int(row["balance"]), int(row["reserved"]))

    def entries(
        self, user_id: str, limit: int = 50, before: int | None = None
    ) -> tuple[list[Entry], int | None]:
        """The user's ledger, newest first, a page at a time; the next page's cursor."""
        query = sa.select(ledger).where(ledger.c.user_id == user_id)
        if before is not None:
            query = query.where(ledger.c.id < before)
        query = query.order_by(ledger.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [Entry(**dict(r)) for r in conn.execute(query).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1].id if more and rows else None)

    def job_entries(self, job_id: str) -> list[Entry]:
        """Every movement of one job, oldest first."""
        query = sa.select(ledger).where(ledger.c.job_id == job_id).order_by(ledger.c.id)
        with self.engine.connect() as conn:
            return [Entry(**dict(r)) for r in conn.execute(query).mappings()]

    def hold(self, job_id: str) -> Hold | None:
        """The job's hold, if credits were reserved for it."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(holds).where(holds.c.job_id == job_id)).mappings().first()
        return _hold(row) if row else None

    def open_holds(self, limit: int, now: float | None = None) -> list[Hold]:
        """Holds still to settle whose check time has come, most overdue first."""
        now = self.clock() if now is None else now
        query = (
            sa.select(holds)
            .where(holds.c.open.is_(True), holds.c.next_check_at <= now)
            .order_by(holds.c.next_check_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_hold(r) for r in conn.execute(query).mappings()]

    # -- movements ------------------------------------------------------------------------

    def grant(self, user_id: str, amount: int, reason: str, reference: str | None = None) -> bool:
        """Add credits to the user's balance; False if `reference` was already granted."""
        if amount <= 0:
            raise ValueError("a grant must be positive")
        reference = reference or f"grant:{uuid.uuid4()}"
        try:
            with self.engine.begin() as conn:
                self._lock_account(conn, user_id)
                self._entry(conn, user_id, reference, "", GRANT, amount, reason)
                self._move(conn, user_id, balance=amount)
        except IntegrityError:
            return False
        return True

    def reserve(
        self, user_id: str, job_id: str, workflow_id: str, shares: Mapping[str, int]
    ) -> int:
        """Hold a new job's cost (the sum of its shares); InsufficientCredits if the balance
        cannot cover it, leaving nothing behind. Returns the amount held."""
        amount = sum(shares.values())
        with self.engine.begin() as conn:
            self._take(conn, user_id, amount)
            if amount:
                self._entry(conn, user_id, job_id, hold_step(1), RESERVE, amount, None)
            conn.execute(
                holds.insert().values(
                    job_id=job_id,
                    user_id=user_id,
                    workflow_id=workflow_id,
                    shares=json.dumps(dict(shares), sort_keys=True),
                    hold=1,
                    open=True,
                    next_check_at=self.clock(),
                )
            )
        return amount

    def reserve_again(self, job_id: str, completed: Iterable[str]) -> int:
        """A settled job is retried: hold again what its uncaptured steps cost (a new hold
        number); InsufficientCredits if the balance cannot cover it. 0 if the hold is open
        (nothing was released: the retry is already paid for) or the job has no hold."""
        found = self.hold(job_id)
        if found is None or found.open:
            return 0
        captured = {e.step for e in self.job_entries(job_id) if e.kind == CAPTURE}
        done = set(completed) | captured
        amount = sum(v for step, v in found.shares.items() if step not in done)
        number = found.hold + 1
        try:
            return self._hold_again(found, job_id, number, amount)
        except IntegrityError:
            raise HoldChanged(job_id) from None  # the other retry wrote hold #n first

    def _hold_again(self, found: Hold, job_id: str, number: int, amount: int) -> int:
        with self.engine.begin() as conn:
            self._take(conn, found.user_id, amount)
            if amount:
                self._entry(
                    conn, found.user_id, job_id, hold_step(number), RESERVE, amount, "retry"
                )
            moved = conn.execute(
                holds.update()
                .where(
                    holds.c.job_id == job_id, holds.c.hold == found.hold, holds.c.open.is_(False)
                )
                .values(hold=number, open=True, next_check_at=self.clock())
            )
            if not moved.rowcount:
                raise HoldChanged(job_id)  # rolls back the `_take` above
        return amount

    def settle(self, job_id: str, completed: Iterable[str], final: str | None) -> list[Entry]:
        """Capture the share of every completed step not yet captured; when the job is
        `final` (completed, failed, cancelled) release what is left and close the hold.
        Safe to repeat: every movement is keyed, and a release closes the hold."""
        found = self.hold(job_id)
        if found is None:
            return []
        done = set(completed)
        with self.engine.begin() as conn:
            self._lock_account(conn, found.user_id)
            current = conn.execute(
                sa.select(holds.c.hold, holds.c.open).where(holds.c.job_id == job_id)
            ).one()
            seen = conn.execute(
                sa.select(ledger.c.step, ledger.c.kind, ledger.c.amount).where(
                    ledger.c.job_id == job_id
                )
            ).all()
            held = _held(seen)
            captured = {step for step, kind, _ in seen if kind == CAPTURE}
            for step, share in found.shares.items():
                if step in done and step not in captured and share > 0 and held > 0:
                    amount = min(share, held)
                    self._entry(conn, found.user_id, job_id, step, CAPTURE, amount, None)
                    self._move(conn, found.user_id, reserved=-amount)
                    held -= amount
            if final is not None and current.open:
                if held > 0:
                    step = hold_step(current.hold)
                    self._entry(conn, found.user_id, job_id, step, RELEASE, held, final)
                    self._move(conn, found.user_id, reserved=-held, balance=held)
                conn.execute(holds.update().where(holds.c.job_id == job_id).values(open=False))
        return self.job_entries(job_id)

    def check_later(self, job_id: str, when: float) -> None:
        """Look at an open hold again at `when`."""
        with self.engine.begin() as conn:
            conn.execute(holds.update().where(holds.c.job_id == job_id).values(next_check_at=when))

    def forget_reservation(self, job_id: str, reason: str) -> None:
        """A job that never started (its launch failed): release its whole hold now."""
        self.settle(job_id, (), reason)

    # -- helpers --------------------------------------------------------------------------

    def _lock_account(self, conn: Connection, user_id: str) -> None:
        """Make sure the account row exists, and lock it for this transaction."""
        now = self.clock()
        touched = conn.execute(
            accounts.update().where(accounts.c.user_id == user_id).values(updated_at=now)
        )
        if touched.rowcount:
            return
        try:
            with conn.begin_nested():
                conn.execute(
                    accounts.insert().values(user_id=user_id, balance=0, reserved=0, updated_at=now)
                )
        except IntegrityError:
            # Created by another transaction meanwhile: now lock it.
            conn.execute(
                accounts.update().where(accounts.c.user_id == user_id).values(updated_at=now)
            )

    def _take(self, conn: Connection, user_id: str, amount: int) -> None:
        """Move `amount` from balance to reserved, only if the balance covers it."""
        if amount == 0:
            return
        moved = conn.execute(
            accounts.update()
            .where(accounts.c.user_id == user_id, accounts.c.balance >= amount)
            .values(
                balance=accounts.c.balance - amount,
                reserved=accounts.c.reserved + amount,
                updated_at=self.clock(),
            )
        )
        if not moved.rowcount:
            balance = conn.execute(
                sa.select(accounts.c.balance).where(accounts.c.user_id == user_id)
            ).scalar()
            raise InsufficientCredits(int(balance or 0), amount)

    def _move(self, conn: Connection, user_id: str, balance: int = 0, reserved: int = 0) -> None:
        conn.execute(
            accounts.update()
            .where(accounts.c.user_id == user_id)
            .values(
                balance=accounts.c.balance + balance,
                reserved=accounts.c.reserved + reserved,
                updated_at=self.clock(),
            )
        )

    def _entry(
        self,
        conn: Connection,
        user_id: str,
        job_id: str,
        step: str,
        kind: str,
        amount: int,
        reason: str | None,
    ) -> None:
        conn.execute(
            ledger.insert().values(
                user_id=user_id,
                job_id=job_id,
                step=step,
                kind=kind,
                amount=amount,
                reason=reason,
                at=self.clock(),
            )
        )


def _held(rows: Iterable[Any]) -> int:
    """What a job's rows still hold: reserves - captures - releases."""
    sign = {RESERVE: 1, CAPTURE: -1, RELEASE: -1}
    return sum(sign.get(kind, 0) * int(amount) for _, kind, amount in rows)


def _hold(row: Mapping[Any, Any]) -> Hold:
    return Hold(
        job_id=row["job_id"],
        user_id=row["user_id"],
        workflow_id=row["workflow_id"],
        shares={k: int(v) for k, v in json.loads(row["shares"]).items()},
        hold=int(row["hold"]),
        open=bool(row["open"]),
    )


def totals(entries: Iterable[Entry]) -> Account:
    """Balance and reserved as the ledger alone says (what the account row must equal)."""
    balance = reserved = 0
    user = ""
    for e in entries:
        user = e.user_id
        if e.kind == GRANT:
            balance += e.amount
        elif e.kind == RESERVE:
            balance -= e.amount
            reserved += e.amount
        elif e.kind == CAPTURE:
            reserved -= e.amount
        elif e.kind == RELEASE:
            reserved -= e.amount
            balance += e.amount
    return Account(user, balance, reserved)

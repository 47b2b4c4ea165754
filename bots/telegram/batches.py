"""The customer messages of one getUpdates answer, stored in one transaction.

Telegram answers getUpdates with up to 100 updates; storing each in a transaction of its
own made a busy bot pay the database's fixed cost per message. The adapter collects an
answer's customer messages here and stores them together when the answer's last update
has been read -- or earlier, before anything that must see them stored (a staff command,
a survey button, an album) -- with the offset past them in the same transaction. They
are confirmed to Telegram (the next getUpdates) only after that commit, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from telegram import Update

from core.domain.records import Inbound, Unreadable


@dataclass
class WaitingUpdates:
    updates: list[Update] = field(default_factory=list)
    batch: list[Inbound] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)

    def add(self, update: Update, inbound: Inbound | None = None,
            unreadable: Unreadable | None = None) -> None:
        """An update read (a message, or nothing for the inbox, or unreadable)."""
        self.updates.append(update)
        if inbound is not None:
            self.batch.append(inbound)
        if unreadable is not None:
            self.unreadable.append(unreadable)

    def take(self) -> WaitingUpdates:
        """What waits, handed over and forgotten here."""
        taken = WaitingUpdates(self.updates, self.batch, self.unreadable)
        self.updates, self.batch, self.unreadable = [], [], []
        return taken

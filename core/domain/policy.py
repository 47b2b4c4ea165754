"""The rules ingest applies to each new message, built from the config (rebuilt on
reload): which promise it gets (calendar + promise rules) and how it is acknowledged."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from core.config.settings import Settings
from core.domain.ack import AckFacts, AckText, ack_text, choose_language, promise_words, skip_reason
from core.domain.calendar import BusinessCalendar, choose_rule
from core.domain.records import Inbound
from core.domain.rules import TicketFacts, plan

log = logging.getLogger(__name__)


class Policy:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.calendar = BusinessCalendar(settings.calendar)
        self.zone = ZoneInfo(settings.calendar.timezone)
        # Escalation rules whose match depends on the text (a follow-up may change it).
        self.keyword_rules = any(rule.keywords for rule in settings.escalation)

    def deadline(self, channel: str, texts: list[str], tags: list[str],
                 arrival: datetime) -> datetime:
        """The promised answer time: the first matching promise rule, else same day.
        Rules match the customer's messages of the ticket, like escalation rules."""
        rule = choose_rule(self.settings.promise, channel, " ".join(texts), tags)
        return self.calendar.deadline(arrival, rule)

    def first_escalation(self, channel: str, texts: list[str], tags: list[str],
                         waiting_since: datetime, due: datetime, priority: str = "normal",
                         assignee: str | None = None) -> datetime | None:
        """When the sweep must first look at a ticket that starts waiting now: the
        earliest rule it matches (planned here, so no sweep is spent on planning)."""
        facts = TicketFacts(channel=channel, priority=priority, assignee=assignee,
                            tags=tags, texts=texts, waiting_since=waiting_since, due_at=due)
        upcoming = plan(self.settings.escalation, facts, set(), self.calendar)
        return upcoming[0][0] if upcoming else None

    def language(self, inbound: Inbound) -> str:
        return choose_language(self.settings.ack, inbound.channel, inbound.text)

    def acknowledges(self, inbound: Inbound, *, last_acked_at: datetime | None,
                     now: datetime) -> bool:
        """Whether a new ticket opened by ``inbound`` gets an acknowledgement (the policy
        may say not to: the customer was acknowledged moments ago, ...)."""
        reason = skip_reason(self.settings.ack, AckFacts(
            channel=inbound.channel, author_id=inbound.author_id, text=inbound.text,
            now=now, last_acked_at=last_acked_at))
        if reason is not None:
            log.debug("no acknowledgement for %s:%s: %s", inbound.channel,
                      inbound.external_id, reason)
        return reason is None

    def acknowledgement(self, inbound: Inbound, *, ticket_id: int, due: datetime,
                        name: str | None, handle: str | None, language: str,
                        now: datetime) -> str:
        """The acknowledgement text (when ``acknowledges`` says to send one)."""
        opening = None if self.calendar.is_open(now) else self.calendar.next_opening(now)
        return ack_text(self.settings.ack, self.zone, AckText(
            channel=inbound.channel, language=language, name=name or _spoken_handle(handle),
            handle=handle or "", ticket=ticket_id, due=due, now=now, next_opening=opening))

    def promise_for_staff(self, due: datetime, now: datetime) -> str:
        """The promise as the staff card shows it, in the staff's language."""
        return promise_words(due, now, self.zone, self.settings.ack.default_language)


def _spoken_handle(handle: str | None) -> str:
    """A handle to address someone by when the name is unknown: "@kate" -> "kate"; a
    platform id ("id700001" on VK) never stands for a name."""
    return handle.lstrip("@") if handle and handle.startswith("@") else ""

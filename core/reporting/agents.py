"""The report per staff member (``sameday report --by agent``), from the report's facts.

Whose is a ticket: the staff member who gave its **first answer**; a ticket nobody
answered yet is its assignee's, else ``(unassigned)``. So every ticket opened in the
period is counted for exactly one row, and the rows add up to the whole report.

Per staff member, with the definitions of ``core.domain.kpi`` and ``core.domain.survey``
(one definition of each figure, the same as the report's totals):

- **tickets answered**: tickets they answered (at least once) during the period, and
  **answers**, how many answers they gave in it;
- **first response** p50/p90: of their tickets opened in the period, from the opening to
  their first answer (nearest-rank);
- **same day**: their tickets opened in the period answered on the local day they were
  opened, of all their tickets opened in it;
- **promises kept**: their tickets' first promises judged (answered, or passed unanswered);
- **CSAT**: the surveys delivered in the period about a cycle they answered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from core.domain.kpi import Rate, Spread, first_response_spread, promise_kept, same_day_rate
from core.domain.survey import Csat
from core.reporting.facts import EventFacts, SurveyFacts, TicketFacts

UNASSIGNED = "(unassigned)"  # parentheses: never a staff member's name


@dataclass(frozen=True)
class AgentFigures:
    name: str
    tickets_answered: int
    answers: int
    opened: int  # their tickets opened in the period
    first_response: Spread
    same_day: Rate
    promises: Rate
    csat: Csat

    def to_dict(self) -> dict[str, Any]:
        return {"tickets_answered": self.tickets_answered, "answers": self.answers,
                "tickets_opened": self.opened,
                "first_response_seconds": vars(self.first_response),
                "same_day": {"answered": self.same_day.part, "opened": self.same_day.whole,
                             "rate": self.same_day.value},
                "promises": {"kept": self.promises.part, "judged": self.promises.whole,
                             "rate": self.promises.value},
                "csat": self.csat.to_dict()}

    def figures(self) -> list[tuple[str, Any]]:
        """(figure, value) rows of this staff member (the CSV's agent.<name>.<figure>)."""
        return [("tickets_answered", self.tickets_answered), ("answers", self.answers),
                ("tickets_opened", self.opened),
                ("first_response_p50_seconds", self.first_response.p50),
                ("first_response_p90_seconds", self.first_response.p90),
                ("same_day_rate", self.same_day.value),
                ("promises_kept_rate", self.promises.value),
                ("surveys_asked", self.csat.asked), ("survey_responses", self.csat.responses),
                ("csat_average", self.csat.average),
                ("csat_satisfied_rate", self.csat.satisfied.value)]


def owner(ticket: TicketFacts, first_answered_by: dict[int, str]) -> str:
    """Whose ticket it is: its first answer's author, else its assignee."""
    return first_answered_by.get(ticket.id) or ticket.assignee or UNASSIGNED


def agent_figures(opened: list[TicketFacts], events: Iterable[EventFacts],
                  surveys: list[SurveyFacts], first_answered_by: dict[int, str],
                  zone: tzinfo, as_of: datetime) -> dict[str, AgentFigures]:
    """Every staff member with a ticket, an answer or a survey in the period, by name
    (``(unassigned)`` last)."""
    answers = [e for e in events if e.kind == "answered" and e.actor]
    answer_count = Counter(e.actor for e in answers)
    answered_tickets: dict[str, set[int | None]] = {}
    for event in answers:
        answered_tickets.setdefault(event.actor, set()).add(event.ticket_id)
    mine: dict[str, list[TicketFacts]] = {}
    for ticket in opened:
        mine.setdefault(owner(ticket, first_answered_by), []).append(ticket)
    rated: dict[str, list[SurveyFacts]] = {}
    for survey in surveys:
        rated.setdefault(survey.agent or UNASSIGNED, []).append(survey)
    names = sorted(set(answer_count) | set(mine) | set(rated), key=lambda n: (n == UNASSIGNED, n))
    figures = {}
    for name in names:
        tickets = mine.get(name, [])
        waits = [(t.opened_at, t.first_response_at) for t in tickets]
        judged = [k for k in (promise_kept(t.first_due_at, t.first_response_at, as_of)
                              for t in tickets) if k is not None]
        their_surveys = rated.get(name, [])
        figures[name] = AgentFigures(
            name=name, tickets_answered=len(answered_tickets.get(name, ())),
            answers=answer_count.get(name, 0), opened=len(tickets),
            first_response=first_response_spread(waits), same_day=same_day_rate(waits, zone),
            promises=Rate(sum(judged), len(judged)),
            csat=Csat.of(len(their_surveys), [s.score for s in their_surveys]))
    return figures

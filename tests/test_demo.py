"""`sameday demo --duration 10`: the main job on a fresh machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from core.domain.records import OutboxKind, OutboxState
from core.store.tables import Escalation, Outbox, Ticket


def test_demo_runs_a_day_on_all_four_channels(tmp_path):
    workdir = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "core.app.cli", "demo", "--duration", "10", "--workdir",
         str(workdir)], capture_output=True, text=True, timeout=180,
        cwd=Path(__file__).parent.parent, env={**os.environ, "COLUMNS": "120"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    engine = sa.create_engine(f"sqlite:///{workdir / 'demo.db'}")
    with engine.connect() as db:
        per_channel = dict(db.execute(sa.select(Ticket.channel, sa.func.count())
                                      .group_by(Ticket.channel)).all())
        acks = dict(db.execute(sa.select(Outbox.channel, sa.func.count()).where(
            Outbox.kind == OutboxKind.ACK, Outbox.state == OutboxState.SENT)
            .group_by(Outbox.channel)).all())
        answered = db.scalar(sa.select(sa.func.count()).select_from(Ticket)
                             .where(Ticket.first_response_at.is_not(None)))
        escalations = db.scalar(sa.select(sa.func.count()).select_from(Escalation))
    engine.dispose()
    assert set(per_channel) == {"telegram", "vk", "twitter", "max"}, per_channel
    assert all(count > 0 for count in per_channel.values())
    assert acks.get("max", 0) > 0, acks  # MAX customers acknowledged by the real adapter
    assert answered > 0 and escalations > 0
    # The report at the end shows the headline figure and where the chart is.
    assert "same day" in done.stdout.lower()
    assert (workdir / "same-day.png").exists()

"""The chaos run, smaller: bench/chaos.py with 600 messages, 5 SIGKILLs, a 10 s full disk
and 6 poison payloads, while the emulators (in their own process) answer 10 % 5xx, 5 %
429, 2 % timeouts, 1 % malformed bodies and 2 % lost responses. The figures it prints
are asserted against the guarantees of docs/reliability.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_nothing_is_lost_stuck_or_doubled_beyond_the_bound_under_chaos():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--messages", "600", "--kills", "5",
         "--disk-full", "10", "--poison", "6", "--rate", "20", "--settle", "100",
         "--seed", "7", "--json"],
        capture_output=True, text=True, timeout=170, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    run = figures["all"]
    assert run["daemon_kills"] == 5 and run["daemon_starts"] == 6  # never died by itself
    assert run["outbox_rows_stuck"] == 0 and run["channels_stopped"] == 0
    assert run["healthz_after"] == "ok"
    for platform in ("telegram", "vk", "twitter"):
        row = figures[platform]
        assert row["messages_sent"] == 200, platform
        assert (row["stored_once"], row["lost"], row["doubled"]) == (200, 0, 0), platform
        assert row["quarantined"] == row["poison_injected"] == 2, platform
        assert row["staff_answers_lost"] == 0, platform
        # No customer is left without an answer silently: a missing acknowledgement
        # was dead-lettered with a notice to staff.
        assert row["acks_none"] == row["acks_none_with_dead_letter_notice"], platform
        assert row["acks_more"] == 0, platform  # never three times
    # VK's random_id makes a repeated send harmless: exactly once, always.
    assert figures["vk"]["acks_twice"] == 0 and figures["vk"]["staff_answers_doubled"] == 0
    assert figures["vk"]["acks_exactly_once"] == 200

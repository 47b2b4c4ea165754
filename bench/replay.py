"""`sameday replay` throughput and memory on synthetic TWCS-shaped histories.

For each size (``--rows``) the bench writes a synthetic history in the columns of the
public "Customer Support on Twitter" CSV (streamed to a temporary file), then replays it
in a child process -- ``replay_history(path, ...)`` as ``sameday replay FILE`` runs it,
with ``config.example.toml``'s calendar, promise and four escalation rules -- and reports
the child's wall time and its peak resident set (VmHWM from /proc/self/status, read by
the child as it ends). From those: rows/s, the time the full 2.8-million-row data set
would take at the largest size's rate, and the peak RSS of the largest size over the
smallest's.

Baseline, in the same run and the same child process: reading the same file into the
replay's scratch index and streaming its events back in time order
(core.replay.stream alone: what every replay pays before the core does anything), and
the ratio of the replay's time to it.

The synthetic history has the data set's shape: conversations started by a customer
tweet at random moments (about 45,000 rows per day, the data set's density in
October-November 2017), answered by the company in most cases after a log-normal delay
(median 40 minutes), with follow-ups that reply to the company's answer, answers to
tweets not in the file, a few duplicate rows; written conversation after conversation,
so the file is not in time order (as the data set is not).

    python bench/replay.py [--rows 20000 200000] [--chunk 1000]
    python bench/replay.py --stepwise-sample      # + the event-by-event path on the
                                                  #   shared 5,000-row sample, timed once
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TWCS_ROWS = 2_811_774  # rows of twcs.csv, the full public data set
SAMPLE = ROOT.parent / "shared" / "data" / "twcs_sample_5k.csv"
CONFIG = ROOT / "config.example.toml"
COLUMNS = ["tweet_id", "author_id", "inbound", "created_at", "text", "response_tweet_id",
           "in_response_to_tweet_id"]
START = datetime(2017, 10, 2, tzinfo=UTC)  # a Monday
ROWS_PER_DAY = 45_000
COMPANIES = ["AppleSupport", "AmazonHelp", "Uber_Support", "SpotifyCares", "Delta",
             "comcastcares", "TMobileHelp", "British_Airways"]
WORDS = ("my order is late again where is the package refund please the app crashes when "
         "I open it still waiting for an answer since yesterday thanks for nothing help "
         "wifi down in the whole area can you check account locked password reset").split()
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --- the synthetic history ------------------------------------------------------------------


def twitter_time(moment: datetime) -> str:
    """TWCS's created_at ("Tue Oct 31 22:10:47 +0000 2017"), whatever the locale."""
    return (f"{DAYS[moment.weekday()]} {MONTHS[moment.month - 1]} {moment:%d %H:%M:%S} "
            f"+0000 {moment.year}")


def conversations(rows: int, seed: int) -> Iterator[list[list[str]]]:
    """Conversations (each a list of CSV rows) until about `rows` rows are made."""
    rng = random.Random(seed)
    span = timedelta(days=rows / ROWS_PER_DAY)
    customers = max(1, rows // 4)  # some customers come back in new conversations
    next_id, made = 1, 0
    while made < rows:
        at = START + span * rng.random()
        customer = str(100_000 + rng.randrange(customers))
        company = rng.choice(COMPANIES)
        tweets: list[list[str]] = []
        parent = ""
        if rng.random() < 0.03:  # it continues a tweet that is not in the file
            parent = str(10_000_000 + rng.randrange(1_000_000))
        for turn in range(4):
            asked = [str(next_id), customer, "True", twitter_time(at), _text(rng), "", parent]
            tweets.append(asked)
            next_id += 1
            if rng.random() > 0.85:  # never answered
                break
            at += timedelta(seconds=_delay(rng, median=2400))
            answer = [str(next_id), company, "False", twitter_time(at),
                      f"@{customer} {_text(rng)}", "", asked[0]]
            asked[5] = answer[0]
            tweets.append(answer)
            next_id += 1
            if turn == 3 or rng.random() > 0.3:  # the customer writes again, or not
                break
            at += timedelta(seconds=_delay(rng, median=1800))
            parent = answer[0]
            answer[5] = str(next_id)
        if rng.random() < 0.05:  # a company tweet answering nothing in the file
            tweets.append([str(next_id), company, "False", twitter_time(at),
                           "Big news today!", "", ""])
            next_id += 1
        if rng.random() < 0.002:  # the same row twice
            tweets.append(list(tweets[0]))
        made += len(tweets)
        yield tweets


def _delay(rng: random.Random, median: float) -> float:
    return min(7 * 86400, rng.lognormvariate(math.log(median), 1.3))


def _text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(6, 22)))


def write_twcs(path: Path, rows: int, seed: int = 7) -> int:
    """Stream a synthetic TWCS CSV of about `rows` rows to `path`; the rows written."""
    written = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for tweets in conversations(rows, seed):
            writer.writerows(tweets)
            written += len(tweets)
    return written


# --- one measurement, in a child process ------------------------------------------------------


def peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(mode: str, path: Path, chunk: int) -> dict:
    """Run one measurement here; what the parent prints."""
    from core.config.load import load_settings
    from core.replay.runner import replay_history
    from core.replay.stream import open_history

    started = time.perf_counter()
    if mode == "stream":  # the baseline: index the file, read the events back in order
        with tempfile.TemporaryDirectory() as scratch:
            history = open_history(path, Path(scratch) / "history.db")
            events = sum(1 for _ in history.events())
            history.close()
        return {"seconds": time.perf_counter() - started, "events": events,
                "peak_kib": peak_rss_kib()}
    settings = load_settings(CONFIG, check_secrets=False)
    report = asyncio.run(replay_history(path, settings, step_by_step=mode == "stepwise",
                                        chunk_events=chunk))
    seconds = time.perf_counter() - started
    del report["run"]["seconds"]
    return {"seconds": seconds, "peak_kib": peak_rss_kib(), "report": report}


def measure(mode: str, path: Path, chunk: int = 0) -> dict:
    """`child` in a fresh interpreter (its own peak RSS), from the project's root."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", mode,
                           str(path), "--chunk", str(chunk)], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=6 * 3600)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the bench --------------------------------------------------------------------------------


def summary(report: dict) -> str:
    tickets, answers, escalations = report["tickets"], report["answers"], report["escalations"]
    return (f"{tickets['opened']:,} tickets, {answers['answered']:,} answered, "
            f"{escalations['total']:,} escalations, {report['run']['sweeps']:,} sweeps")


def bench_sizes(sizes: list[int], chunk: int, seed: int) -> None:
    results = []
    with tempfile.TemporaryDirectory(prefix="sameday-bench-replay-") as scratch:
        for rows in sizes:
            path = Path(scratch) / f"twcs_{rows}.csv"
            rows = write_twcs(path, rows, seed)
            stream = measure("stream", path)
            replay = measure("fast", path, chunk)
            path.unlink()
            rate = rows / replay["seconds"]
            results.append((rows, replay, stream, rate))
            print(f"{rows:>9,} rows  replay {replay['seconds']:8.1f} s = {rate:7,.0f} rows/s  "
                  f"peak RSS {replay['peak_kib'] / 1024:6.1f} MiB   baseline (index + stream "
                  f"{stream['events']:,} events) {stream['seconds']:6.1f} s = "
                  f"{rows / stream['seconds']:8,.0f} rows/s, peak {stream['peak_kib'] / 1024:.1f}"
                  f" MiB   replay/baseline time {replay['seconds'] / stream['seconds']:5.1f}x",
                  flush=True)
            print(f"{'':15}{summary(replay['report'])}; {replay['report']['run']['mode']}, "
                  f"{replay['report']['run']['transactions']} transactions", flush=True)
    rows, replay, _, rate = results[-1]
    full = TWCS_ROWS / rate
    print(f"\n2.8M-row TWCS at the {rows:,}-row rate: {full / 60:.1f} min "
          f"(target < 15 min: {'met' if full < 900 else 'missed'})")
    if rows >= 200_000:
        print(f"200,000 rows: {replay['seconds']:.1f} s (target < 120 s: "
              f"{'met' if replay['seconds'] < 120 else 'missed'})")
    if len(results) > 1:
        ratio = results[-1][1]["peak_kib"] / results[0][1]["peak_kib"]
        print(f"peak RSS {results[-1][0]:,} / {results[0][0]:,} rows: {ratio:.2f} "
              f"(target <= 1.2: {'met' if ratio <= 1.2 else 'missed'})")


def bench_sample(chunk: int) -> None:
    """The shared 5,000-row sample, event by event and fast: times and the same figures."""
    step, fast = measure("stepwise", SAMPLE), measure("fast", SAMPLE, chunk)
    same = all(step["report"][key] == fast["report"][key]
               for key in ("source", "messages", "tickets", "answers", "escalations"))
    print(f"\nsample {SAMPLE.name}: event by event {step['seconds']:.1f} s, "
          f"fast {fast['seconds']:.1f} s ({step['seconds'] / fast['seconds']:.1f}x); "
          f"{summary(fast['report'])}; figures {'identical' if same else 'DIFFERENT'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--chunk", type=int, default=None,
                        help="events per transaction (default: the replay's own)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stepwise-sample", action="store_true",
                        help="also time the event-by-event replay of the shared sample")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from core.replay.bulk import CHUNK_EVENTS

    chunk = args.chunk or CHUNK_EVENTS
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), chunk)))
        return
    print(f"sameday replay, {CONFIG.name}, {chunk} events per transaction; each run in a "
          f"child process", flush=True)
    bench_sizes(args.rows, chunk, args.seed)
    if args.stepwise_sample:
        bench_sample(chunk)


if __name__ == "__main__":
    main()

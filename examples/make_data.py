#!/usr/bin/env python3
"""Writes the small sample history that examples/registry.toml names, and an entity file.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install pyarrow
    /tmp/venv/bin/python examples/make_data.py        # rewrites examples/data/

Output (deterministic: a fixed seed and fixed dates, one week ending 2024-06-08 00:00 UTC):

- data/user_stats/part-00000.parquet: 812 history rows of view `user_stats` for users 1..100
  (the 20 features of the registry, in its types), unsorted, with `event_timestamp` and
  `created` columns. A few rows are late corrections: same user and event time as another
  row (12 of the 812), a later `created` time, another value. About 2 % of the values are null.
- data/user_embedding/part-00000.parquet: 100 rows of view `user_embedding` (one 64-dim
  float32 vector per row), two per user for users 1..50.
- data/entities.parquet: 200 entity rows (`user_id`, `event_timestamp`, `label`) to build a
  training set for: users 1..110 (101..110 have no history), times inside the week and a few
  before it, in random order.

The shapes follow the bench dataset (docs/benchmarks.md, "Workloads"): zero-inflated counts,
ratios in [0, 1], log-normal amounts in whole cents, a weighted country code, booleans.
Values are not meaningful; they only look like real features.
"""

import datetime as dt
import math
import pathlib
import random

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 42
END = dt.datetime(2024, 6, 8, tzinfo=dt.timezone.utc)
WEEK_S = 7 * 86_400
USERS = 100
ROWS_PER_USER = 8
EMBEDDING_USERS = 50
EMBEDDING_DIM = 64
ENTITY_ROWS = 200
COUNTRIES = ["US", "DE", "FR", "GB", "BR", "IN", "JP", "NG"]
COUNTRY_WEIGHTS = [30, 12, 10, 10, 12, 14, 7, 5]

OUT = pathlib.Path(__file__).resolve().parent / "data"
TS = pa.timestamp("us", tz="UTC")


def micros(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000


def counter(r: random.Random, p_zero: float, mean: float) -> int:
    """Zero-inflated geometric count."""
    if r.random() < p_zero:
        return 0
    return 1 + int(-math.log(1.0 - r.random()) * mean)


def ratio(r: random.Random, p_zero: float) -> float:
    return 0.0 if r.random() < p_zero else round(r.random(), 4)


def cents(r: random.Random, mu: float, sigma: float) -> float:
    """Log-normal amount rounded to whole cents."""
    return round(math.exp(r.gauss(mu, sigma)), 2)


def maybe_null(r: random.Random, v):
    return None if r.random() < 0.02 else v


def user_stats_row(r: random.Random) -> dict:
    avg = cents(r, 3.5, 0.8)
    row = {
        "txn_count_1h": counter(r, 0.70, 1.5),
        "txn_count_24h": counter(r, 0.40, 4.0),
        "txn_count_7d": counter(r, 0.20, 15.0),
        "txn_count_30d": counter(r, 0.10, 50.0),
        "failed_logins_24h": counter(r, 0.90, 1.0),
        "chargebacks_90d": counter(r, 0.97, 0.5),
        "sessions_7d": counter(r, 0.15, 10.0),
        "support_tickets_30d": counter(r, 0.92, 0.8),
        "click_through_rate": ratio(r, 0.30),
        "conversion_rate": ratio(r, 0.50),
        "refund_ratio": ratio(r, 0.85),
        "weekend_ratio": ratio(r, 0.10),
        "night_ratio": ratio(r, 0.20),
        "avg_amount_30d": avg,
        "max_amount_30d": round(avg * (1.0 + r.random() * 3.0), 2),
        "total_amount_90d": cents(r, 6.0, 1.0),
        "account_age_days": round(r.randrange(1, 3650 * 24) / 24.0, 4),
        "country": r.choices(COUNTRIES, COUNTRY_WEIGHTS)[0],
        "is_premium": r.random() < 0.15,
        "has_2fa": r.random() < 0.6,
    }
    return {k: maybe_null(r, v) for k, v in row.items()}


USER_STATS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("event_timestamp", TS),
        ("created", TS),
        ("txn_count_1h", pa.int64()),
        ("txn_count_24h", pa.int64()),
        ("txn_count_7d", pa.int64()),
        ("txn_count_30d", pa.int64()),
        ("failed_logins_24h", pa.int32()),
        ("chargebacks_90d", pa.int32()),
        ("sessions_7d", pa.int64()),
        ("support_tickets_30d", pa.int32()),
        ("click_through_rate", pa.float32()),
        ("conversion_rate", pa.float32()),
        ("refund_ratio", pa.float32()),
        ("weekend_ratio", pa.float32()),
        ("night_ratio", pa.float32()),
        ("avg_amount_30d", pa.float64()),
        ("max_amount_30d", pa.float64()),
        ("total_amount_90d", pa.float64()),
        ("account_age_days", pa.float64()),
        ("country", pa.string()),
        ("is_premium", pa.bool_()),
        ("has_2fa", pa.bool_()),
    ]
)


def user_stats(r: random.Random) -> pa.Table:
    start = micros(END) - WEEK_S * 1_000_000
    rows = []
    for user in range(1, USERS + 1):
        # Whole-second event times spread over the week; created a few minutes later.
        for t in sorted(r.randrange(WEEK_S) for _ in range(ROWS_PER_USER)):
            event = start + t * 1_000_000
            created = event + r.randrange(60, 900) * 1_000_000
            rows.append({"user_id": user, "event_timestamp": event, "created": created,
                         **user_stats_row(r)})
    # Late corrections: same key and event time, created later, other values. The join and
    # materialization must pick these (latest created time wins a tie on event time).
    for base in r.sample(rows, 12):
        fix = dict(base)
        fix["created"] = base["created"] + 3_600 * 1_000_000
        fix["txn_count_7d"] = (base["txn_count_7d"] or 0) + 100
        rows.append(fix)
    r.shuffle(rows)
    cols = {f.name: [row[f.name] for row in rows] for f in USER_STATS_SCHEMA}
    return pa.Table.from_pydict(cols, schema=USER_STATS_SCHEMA)


def user_embedding(r: random.Random) -> pa.Table:
    start = micros(END) - WEEK_S * 1_000_000
    ids, times, vectors = [], [], []
    for user in range(1, EMBEDDING_USERS + 1):
        for t in sorted(r.randrange(WEEK_S) for _ in range(2)):
            ids.append(user)
            times.append(start + t * 1_000_000)
            vectors.append([round(r.uniform(-1.0, 1.0), 3) for _ in range(EMBEDDING_DIM)])
    schema = pa.schema(
        [
            ("user_id", pa.int64()),
            ("event_timestamp", TS),
            ("embedding", pa.list_(pa.float32(), EMBEDDING_DIM)),
        ]
    )
    return pa.Table.from_pydict(
        {"user_id": ids, "event_timestamp": times, "embedding": vectors}, schema=schema
    )


def entities(r: random.Random) -> pa.Table:
    start = micros(END) - WEEK_S * 1_000_000
    ids, times, labels = [], [], []
    for i in range(ENTITY_ROWS):
        ids.append(r.randrange(1, 111))
        # Mostly inside the week; one row in ten a day before it (no history yet: nulls).
        offset = r.randrange(-86_400, 0) if i % 10 == 0 else r.randrange(WEEK_S)
        times.append(start + offset * 1_000_000)
        labels.append(int(r.random() < 0.1))
    schema = pa.schema(
        [("user_id", pa.int64()), ("event_timestamp", TS), ("label", pa.int64())]
    )
    return pa.Table.from_pydict(
        {"user_id": ids, "event_timestamp": times, "label": labels}, schema=schema
    )


def main() -> None:
    r = random.Random(SEED)
    (OUT / "user_stats").mkdir(parents=True, exist_ok=True)
    (OUT / "user_embedding").mkdir(parents=True, exist_ok=True)
    # Fixed writer settings so reruns give the same bytes (for one pyarrow version).
    opts = {"compression": "zstd", "write_statistics": True}
    pq.write_table(user_stats(r), OUT / "user_stats" / "part-00000.parquet", **opts)
    pq.write_table(user_embedding(r), OUT / "user_embedding" / "part-00000.parquet", **opts)
    pq.write_table(entities(r), OUT / "entities.parquet", **opts)
    for p in sorted(OUT.rglob("*.parquet")):
        print(f"{p.relative_to(OUT.parent)}: {pq.ParquetFile(p).metadata.num_rows} rows, "
              f"{p.stat().st_size} bytes")


if __name__ == "__main__":
    main()

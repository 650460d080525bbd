"""Quiver from Python: an online feature store client with Arrow answers.

    import quiver
    client = quiver.Client("127.0.0.1:6566")
    r = client.get_online_features(
        features=["user_stats:txn_count_7d", "user_stats:country"],
        entity_rows=[{"user_id": 1}, {"user_id": 2}],
    )
    r.to_dict()     # {"user_id": [1, 2], "txn_count_7d": [...], "country": [...]}
    r.to_arrow()    # a pyarrow.Table; r.to_pandas() a pandas.DataFrame

    client.write("user_stats", table)          # pyarrow / pandas / Polars, history layout
    quiver.get_historical_features("registry.toml", entity_df, features=[...])  # training set

The RPC and the conversion to Arrow run in Rust with the GIL released (the same client the
`quiver` command line uses). Errors raise `QuiverError`, whose `code` is the gRPC status name
and whose `message` is the server's explanation naming the field.
"""

from __future__ import annotations

import datetime as _dt
import os as _os
import tomllib as _tomllib
from typing import Any, Mapping, Optional, Sequence

import pyarrow as _pa

from . import _quiver
from ._quiver import Client as _NativeClient
from ._quiver import OnlineResponse as _NativeResponse
from ._quiver import QuiverError

__all__ = [
    "Client",
    "OnlineResponse",
    "QuiverError",
    "Writer",
    "get_historical_features",
    "materialize",
]


def _arrow(data: Any) -> Any:
    """Anything tabular as an object with `__arrow_c_stream__` (the Arrow PyCapsule protocol):
    pyarrow Tables and readers and Polars DataFrames as they are, pandas through pyarrow, a list
    of dicts or a dict of lists through `pyarrow.table`."""
    if hasattr(data, "__arrow_c_stream__"):
        return data
    if hasattr(data, "to_arrow") and not hasattr(data, "iloc"):
        return data.to_arrow()
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            return _pa.Table.from_pandas(data, preserve_index=False)
    except ImportError:
        pass
    if isinstance(data, list):
        return _pa.Table.from_pylist(data)
    if isinstance(data, dict):
        return _pa.table(data)
    raise QuiverError(
        f"INVALID_ARGUMENT: expected a pyarrow Table, a pandas or Polars DataFrame, a list of "
        f"rows or a dict of columns, got {type(data).__name__}"
    )


def _columns_from_rows(entity_rows: Sequence[Mapping[str, Any]]) -> dict:
    """`[{"user_id": 1}, {"user_id": 2}]` → `{"user_id": [1, 2]}`, every row the same keys."""
    if not entity_rows:
        raise QuiverError("INVALID_ARGUMENT: entity_rows: no rows")
    names = list(entity_rows[0].keys())
    for i, row in enumerate(entity_rows):
        if set(row.keys()) != set(names):
            raise QuiverError(
                f"INVALID_ARGUMENT: entity_rows[{i}]: has keys {sorted(row.keys())}, "
                f"row 0 has {sorted(names)}"
            )
    return {n: [row[n] for row in entity_rows] for n in names}


def _seconds(max_age: Any) -> Optional[float]:
    if max_age is None:
        return None
    if isinstance(max_age, _dt.timedelta):
        return max_age.total_seconds()
    return float(max_age)


class OnlineResponse:
    """One answer: the requested keys, then each feature's values, statuses and event times."""

    def __init__(self, native: _NativeResponse):
        self._native = native

    @property
    def feature_names(self) -> list:
        return self._native.feature_names

    def __len__(self) -> int:
        return self._native.row_count

    def to_arrow(self, include_status: bool = False, include_event_timestamps: bool = False) -> _pa.Table:
        """A pyarrow Table: join keys, then a column per feature (null unless PRESENT), with
        `<feature>__status` and `<feature>__event_timestamp` columns when asked for."""
        batch = self._native.to_arrow(include_status, include_event_timestamps)
        return _pa.Table.from_batches([batch])

    def to_dict(self, include_event_timestamps: bool = False) -> dict:
        """Feast's shape: `{name: [value per entity row]}`, None where a value is not PRESENT."""
        return self.to_arrow(include_event_timestamps=include_event_timestamps).to_pydict()

    def to_pandas(self, include_status: bool = False, include_event_timestamps: bool = False):
        return self.to_arrow(include_status, include_event_timestamps).to_pandas()

    @property
    def statuses(self) -> dict:
        """`{feature: [status name per row]}`: PRESENT, NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE."""
        t = self._native.to_arrow(True, False)
        return {n: t.column(f"{n}__status").to_pylist() for n in self.feature_names}

    @property
    def event_timestamps(self) -> dict:
        """`{feature: [event time per row]}` (UTC datetimes; None when NOT_FOUND)."""
        t = self._native.to_arrow(False, True)
        return {n: t.column(f"{n}__event_timestamp").to_pylist() for n in self.feature_names}


class Client:
    """A connection to one Quiver server.

    `address` is `host:port` (or an `http://` / `https://` URL), `token` the bearer token
    the server requires, `timeout` a deadline in seconds for every call, `ca_cert` the PEM
    file of the certificate authority to trust for an `https://` server (else the system's).
    """

    def __init__(self, address: str = "127.0.0.1:6566", token: Optional[str] = None,
                 timeout: Optional[float] = None, ca_cert: Optional[str] = None):
        self._native = _NativeClient(address, token, timeout,
                                     _os.fspath(ca_cert) if ca_cert is not None else None)

    def get_online_features(
        self,
        features: Optional[Sequence[str]] = None,
        entity_rows: Optional[Sequence[Mapping[str, Any]]] = None,
        *,
        entities: Optional[Mapping[str, Sequence[Any]]] = None,
        feature_service: Optional[str] = None,
        full_feature_names: bool = False,
        max_age: Any = None,
    ) -> OnlineResponse:
        """Reads `features` ("view:feature") or a `feature_service` for the entities given as
        `entity_rows` (a dict per row) or `entities` (a list per join key)."""
        if (entity_rows is None) == (entities is None):
            raise QuiverError("INVALID_ARGUMENT: give either entity_rows or entities")
        columns = _columns_from_rows(entity_rows) if entity_rows is not None else {
            k: list(v) for k, v in entities.items()
        }
        native = self._native.get_online_features(
            columns,
            list(features) if features is not None else None,
            feature_service,
            full_feature_names,
            _seconds(max_age),
        )
        return OnlineResponse(native)

    def write(self, view: str, data: Any) -> dict:
        """Writes rows to `view`. `data` (pyarrow, pandas, Polars, rows or columns) has the
        columns of the view's history: the join keys, the event timestamp, every feature
        (and the created timestamp when the view's source names one). Rows of one entity
        are merged newest-wins before sending, as the store itself would. Returns
        `{"rows", "batches", "wal_sequence"}`."""
        return self._native.write(view, _arrow(data))

    def writer(self, view: str) -> "Writer":
        """A writer for materializers: `with client.writer("v") as w: w.write(chunk)` sends
        each chunk as it comes, so memory stays bounded by one chunk."""
        return Writer(self, view)

    def load_snapshot(self, view: str, path: str) -> dict:
        """Loads a snapshot file that is on the server's filesystem into `view`."""
        return self._native.load_snapshot(view, str(path))

    def upload_snapshot(self, view: str, path: str) -> dict:
        """Uploads a local snapshot file (zstd on the way) and loads it into `view`."""
        return self._native.upload_snapshot(view, _os.fspath(path))

    def apply(self, registry: str, dry_run: bool = False, allow_removals: bool = False) -> dict:
        """Applies a registry: TOML text, or the path of a registry file. Returns
        `{"version", "applied", "changes", "canonical_toml"}`."""
        text = registry
        if "\n" not in registry and _os.path.exists(registry):
            with open(registry, encoding="utf-8") as f:
                text = f.read()
        return self._native.apply(text, dry_run, allow_removals)

    def registry(self) -> dict:
        """The server's registry: `{"version", "toml", ...the TOML's tables}`."""
        version, text = self._native.registry()
        parsed = _tomllib.loads(text)
        return {"version": version, "toml": text, **parsed}

    def stats(self, views: Optional[Sequence[str]] = None) -> dict:
        """Per-view sizes and freshness, the WAL and the last checkpoint."""
        return self._native.stats(list(views) if views is not None else None)

    def checkpoint(self) -> dict:
        """Folds the WAL into new snapshots (what `quiver checkpoint` does)."""
        return self._native.checkpoint()


class Writer:
    """Sends chunks of rows for one view as they come (see `Client.writer`)."""

    def __init__(self, client: Client, view: str):
        self._client = client
        self._view = view
        self.rows = 0
        self.batches = 0
        self.wal_sequence = 0

    def write(self, data: Any) -> None:
        r = self._client.write(self._view, data)
        self.rows += r["rows"]
        self.batches += r["batches"]
        self.wal_sequence = max(self.wal_sequence, r["wal_sequence"])

    def close(self) -> dict:
        return {"rows": self.rows, "batches": self.batches, "wal_sequence": self.wal_sequence}

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def get_historical_features(
    registry: str,
    entity_df: Any,
    features: Optional[Sequence[str]] = None,
    *,
    feature_service: Optional[str] = None,
    full_feature_names: bool = False,
    timestamp_column: str = "event_timestamp",
    history: Optional[Mapping[str, str]] = None,
    epoch_unit: str = "s",
    threads: int = 0,
) -> _pa.Table:
    """A point-in-time-correct training set: for every row of `entity_df` (pyarrow, pandas
    or Polars, with the join keys and `timestamp_column`), each feature's value as of that
    row's time, from the registry's Parquet histories. The same join as `quiver historical`,
    in process. `history` maps a view to another history path. Returns a pyarrow Table
    (`.to_pandas()` for pandas, `polars.from_arrow` for Polars)."""
    batches = _quiver.get_historical_features(
        _os.fspath(registry),
        _arrow(entity_df),
        list(features) if features is not None else None,
        feature_service,
        full_feature_names,
        timestamp_column,
        [(v, _os.fspath(p)) for v, p in (history or {}).items()],
        epoch_unit,
        threads,
    )
    return _pa.Table.from_batches(batches)


def _time_word(t: Any) -> str:
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return str(int(t.timestamp()))
    return str(t)


def materialize(
    registry: str,
    view: str,
    *,
    end: Any = "now",
    start: Any = None,
    out: Optional[str] = None,
    data_dir: Optional[str] = None,
    server: Optional[str] = None,
    token: Optional[str] = None,
    incremental: bool = False,
    history: Optional[Mapping[str, str]] = None,
) -> None:
    """Loads `view`'s latest rows in `[start, end]` into a snapshot file (`out`), a data
    directory no server has open (`data_dir`) or a running server (`server`): `quiver
    materialize` with these options, run in process. Times are datetimes, epoch seconds or
    `YYYY-MM-DD[THH:MM:SS]`."""
    words = ["--registry", _os.fspath(registry), "--view", view, "--end", _time_word(end)]
    if start is not None:
        words += ["--start", _time_word(start)]
    targets = [(o, v) for o, v in (("--out", out), ("--data-dir", data_dir), ("--server", server)) if v]
    if len(targets) != 1:
        raise QuiverError("INVALID_ARGUMENT: give exactly one of out, data_dir or server")
    (opt, value), = targets
    if opt == "--server" and "://" not in value:
        value = f"http://{value}"
    words += [opt, _os.fspath(value)]
    if token is not None:
        words += ["--token", token]
    if incremental:
        words.append("--incremental")
    for v, p in (history or {}).items():
        words += ["--history", f"{v}={_os.fspath(p)}"]
    _quiver.materialize(words)

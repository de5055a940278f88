"""Saved runs: every experiment kept in a database, to list, reopen, compare, share and rebuild.

A run is one analysis as it was seen: the page and method, the model (name plus a hash of its
weights), the prompts and options, the result's tensors (safetensors bytes) and tables (CSV
bytes), the figures' Plotly specs, the explanation and where it came from, timings, library
versions, the time, and the `interp` calls that made it. Each run is written in one transaction,
so a crash mid-save leaves no half run. The store is SQLAlchemy Core over a SQLite file under the
user's data directory by default (WAL, writes opened with BEGIN IMMEDIATE so concurrent writers
queue instead of failing), or any SQLAlchemy URL (e.g. one PostgreSQL shared by app replicas).
Runs are named by id and also by a content hash, which is how a run records the runs it was built
from (its lineage).

    from interp.runs import RunStore, record_for
    store = RunStore()                       # or RunStore("postgresql+psycopg://host/db")
    saved = store.save(record_for(result, page="logit_lens", model=model, prompts=[prompt]))
    store.list(text="Eiffel"); store.open(saved.id); store.export_zip(saved.id)

Making a run again from its recorded calls is `interp.reproduce`; reports, `interp.report`.
"""

from __future__ import annotations

import builtins
import csv
import dataclasses
import hashlib
import importlib
import importlib.metadata
import io
import json
import math
import os
import platform
import sqlite3
import threading
import time
import uuid
import warnings
import weakref
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from interp.errors import (
    CorruptRunError,
    RunNotFoundError,
    RunStoreError,
    RunStoreReadOnlyError,
)

SCHEMA_VERSION = 1
DEFAULT_SIZE_CAP_MB = 50.0
BUSY_TIMEOUT_S = 30.0
APP_DIR_NAME = "gpt2-workbench"
TENSORS_BLOB = "tensors"
RESULT_BLOB = "result.json"
VERSIONED_PACKAGES = ("torch", "transformers", "transformer-lens", "numpy", "plotly",
                      "safetensors", "sqlalchemy", "streamlit")
ZIP_RECORD = "run.json"
RUNS_URL_VARIABLE = "WORKBENCH_RUNS_URL"  # the `runs_url` setting (interp.settings)


class RunStoreWarning(UserWarning):
    """Something in the store was skipped or moved aside; the rest still loads."""


# --- what a run holds -------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelRef:
    """Which model made a run: its name (registry key, Hub id or folder) and a revision, the
    SHA-256 of its weights unless a Hub commit is known."""

    name: str
    revision: str = ""


@dataclass(frozen=True)
class Call:
    """One `interp` call that made (part of) a run, in a form that can be made again: the
    function as "module:qualname" and its arguments, a model argument as {"$model": name};
    `part`: the field of its result that the run holds (dotted, "" for the whole result)."""

    function: str
    args: tuple = ()
    kwargs: Mapping = field(default_factory=dict)
    part: str = ""


@dataclass(frozen=True)
class RunRecord:
    """A run as it is saved. `tensors` are named CPU tensors, `tables` CSV bytes by name,
    `figures` Plotly JSON specs, `summary` the result's scalar fields, `parents` the content
    hashes of the runs it was built from."""

    page: str
    method: str
    model: ModelRef
    prompts: tuple[str, ...] = ()
    options: Mapping = field(default_factory=dict)
    tensors: Mapping[str, torch.Tensor] = field(default_factory=dict)
    tables: Mapping[str, bytes] = field(default_factory=dict)
    result_json: bytes = b""
    figures: tuple[str, ...] = ()
    explanation: str = ""
    explanation_source: str = ""
    summary: Mapping = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    calls: tuple[Call, ...] = ()
    parents: tuple[str, ...] = ()
    title: str = ""


@dataclass(frozen=True)
class RunSummary:
    """One line of the run list."""

    id: str
    content_hash: str
    created_at: float
    page: str
    method: str
    model_name: str
    title: str
    size_bytes: int
    tensors_omitted: bool


@dataclass(frozen=True)
class SavedRun:
    """A run read back: the record plus its id, time, content hash, size, whether the raw
    tensors were left out (over the size cap), and warnings about parts that could not be read."""

    id: str
    content_hash: str
    created_at: float
    record: RunRecord
    size_bytes: int
    tensors_omitted: bool
    warnings: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created_at))
        return f"{self.record.title or self.record.method} · {self.record.model.name} · {stamp}"


@dataclass(frozen=True)
class Listing:
    """Runs found by `RunStore.list`, newest first, and warnings about rows that were skipped."""

    runs: tuple[RunSummary, ...]
    warnings: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[RunSummary]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)


@dataclass(frozen=True)
class Comparison:
    """Two runs side by side: options that differ (name -> (left, right)), the right-minus-left
    difference of every tensor present in both with equal shapes, and the tensors whose shapes
    differ (name -> (left shape, right shape))."""

    left: SavedRun
    right: SavedRun
    same_page: bool
    option_changes: Mapping[str, tuple]
    differences: Mapping[str, torch.Tensor]
    shape_mismatches: Mapping[str, tuple]


@dataclass(frozen=True)
class LineageStep:
    """A run in a lineage chain, or a parent hash no run in this store has (`run` None)."""

    content_hash: str
    run: RunSummary | None
    depth: int


# --- building a record from a result ------------------------------------------------------------

def named_tensors(value, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every numeric tensor or array inside a result (nested dataclasses, mappings, sequences
    of them), named by its path, e.g. "values" or "scores.induction"."""
    found: dict[str, torch.Tensor] = {}
    if isinstance(value, torch.Tensor):
        if not value.is_complex():
            found[prefix or "tensor"] = value.detach().cpu().contiguous().clone()
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        found[prefix or "array"] = torch.from_numpy(np.ascontiguousarray(value).copy())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            if not item.metadata.get("screen_only"):
                found.update(named_tensors(getattr(value, item.name), join(prefix, item.name)))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            found.update(named_tensors(item, join(prefix, str(key))))
    elif isinstance(value, (list, tuple)) and any(
            isinstance(item, (torch.Tensor, np.ndarray)) or dataclasses.is_dataclass(item)
            for item in value):
        for index, item in enumerate(value):
            found.update(named_tensors(item, join(prefix, str(index))))
    return found


def join(prefix: str, name: str) -> str:
    """A dotted name of `name` under `prefix` (just `name` at the top)."""
    return f"{prefix}.{name}" if prefix else name


def scalar_summary(result) -> dict:
    """A result's top-level scalar and short-text fields (its headline numbers and labels)."""
    if not dataclasses.is_dataclass(result):
        return {}
    summary: dict[str, object] = {}
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        if isinstance(value, bool) or isinstance(value, (int, str)) and len(str(value)) <= 500:
            summary[item.name] = value
        elif isinstance(value, float):
            summary[item.name] = value if math.isfinite(value) else None
    return summary


_weights_hashes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_weights_lock = threading.Lock()


def weights_hash(model) -> str:
    """SHA-256 of a loaded model's parameters (names, shapes, dtypes and bytes), computed once
    per loaded model (held weakly: a model the cache let go is not kept for its hash): two
    runs with the same hash ran the same weights."""
    with _weights_lock:
        known = _weights_hashes.get(model)
    if known is not None:
        return known
    digest = hashlib.sha256()
    for name, parameter in sorted(model.bridge.named_parameters(), key=lambda item: item[0]):
        data = parameter.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype};".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    value = "sha256:" + digest.hexdigest()
    with _weights_lock:
        _weights_hashes[model] = value
    return value


def model_ref(model) -> ModelRef:
    """The reference a run keeps of a loaded model (its name and weights hash)."""
    return ModelRef(model.name, weights_hash(model))


def library_versions() -> dict[str, str]:
    """The versions that decide a run's numbers: Python and the numerical libraries."""
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def describe_call(fn: Callable, args: Sequence = (), kwargs: Mapping | None = None) -> Call | None:
    """The `Call` of `fn(*args, **kwargs)` when it can be made again: an `interp` function whose
    arguments are loaded models and plain values (None for anything else, e.g. a result)."""
    module, qualname = getattr(fn, "__module__", ""), getattr(fn, "__qualname__", "")
    if not module.startswith("interp.") or "<" in qualname:
        return None
    try:
        encoded_args = tuple(encode_argument(value) for value in args)
        encoded_kwargs = {str(k): encode_argument(v) for k, v in (kwargs or {}).items()
                          if k != "progress"}
    except TypeError:
        return None
    return Call(f"{module}:{qualname}", encoded_args, encoded_kwargs)


def encode_argument(value):
    """An interp call's argument as JSON (a model as {"$model": name}); TypeError when it
    has no JSON form."""
    if hasattr(value, "bridge") and hasattr(value, "info"):
        return {"$model": value.name}
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError("non-finite float")
        return value
    if isinstance(value, (list, tuple)):
        return [encode_argument(item) for item in value]
    if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        return {key: encode_argument(item) for key, item in value.items()}
    raise TypeError(f"{type(value).__name__} can't be recorded")


def record_for(result, page: str, model, prompts: Sequence[str] = (), method: str | None = None,
               options: Mapping | None = None, figures: Sequence = (),
               explanation: str = "", explanation_source: str = "",
               calls: Sequence[Call] = (), parents: Sequence[str] = (),
               timings: Mapping[str, float] | None = None, title: str = "") -> RunRecord:
    """A `RunRecord` of one result: its tensors, its CSV table and JSON export where it has
    them, the given figures (Plotly figures or their JSON), the explanation and lineage."""
    from interp import export

    return RunRecord(
        page=page, method=method or type(result).__name__,
        model=model if isinstance(model, ModelRef) else model_ref(model),
        prompts=tuple(prompts), options=dict(options or {}), tensors=named_tensors(result),
        tables={"table": export.to_csv(result)} if export.has_csv(result) else {},
        result_json=export.to_json(result), figures=tuple(
            spec if isinstance(spec, str) else spec.to_json() for spec in figures),
        explanation=explanation, explanation_source=explanation_source,
        summary=scalar_summary(result), timings=dict(timings or {}), versions=library_versions(),
        calls=tuple(calls), parents=tuple(parents),
        title=title or (prompts[0][:80] if prompts else type(result).__name__))


# --- the serialized form ----------------------------------------------------------------------

def record_fields(record: RunRecord) -> dict:
    """The JSON part of a record (everything but the tensor, table and result bytes)."""
    return {
        "page": record.page, "method": record.method,
        "model": {"name": record.model.name, "revision": record.model.revision},
        "prompts": list(record.prompts), "options": json_safe(record.options),
        "figures": list(record.figures), "explanation": record.explanation,
        "explanation_source": record.explanation_source, "summary": json_safe(record.summary),
        "timings": json_safe(record.timings), "versions": dict(record.versions),
        "calls": [{"function": c.function, "args": list(c.args), "kwargs": dict(c.kwargs),
                   "part": c.part}
                  for c in record.calls],
        "parents": list(record.parents), "title": record.title,
    }


def json_safe(value):
    """A value in JSON-ready Python types (`interp.export.plain`)."""
    from interp.export import plain

    return plain(value)


def record_from_fields(fields: Mapping, tensors: Mapping[str, torch.Tensor],
                       tables: Mapping[str, bytes], result_json: bytes) -> RunRecord:
    """The inverse of `record_fields`; a missing required key raises CorruptRunError."""
    try:
        return RunRecord(
            page=str(fields["page"]), method=str(fields["method"]),
            model=ModelRef(str(fields["model"]["name"]), str(fields["model"].get("revision", ""))),
            prompts=tuple(fields.get("prompts", ())), options=dict(fields.get("options", {})),
            tensors=dict(tensors), tables=dict(tables), result_json=result_json,
            figures=tuple(fields.get("figures", ())),
            explanation=str(fields.get("explanation", "")),
            explanation_source=str(fields.get("explanation_source", "")),
            summary=dict(fields.get("summary", {})), timings=dict(fields.get("timings", {})),
            versions=dict(fields.get("versions", {})),
            calls=tuple(Call(c["function"], tuple(c.get("args", ())), dict(c.get("kwargs", {})),
                             str(c.get("part", "")))
                        for c in fields.get("calls", ())),
            parents=tuple(fields.get("parents", ())), title=str(fields.get("title", "")))
    except (KeyError, TypeError, AttributeError) as error:
        raise CorruptRunError(f"The run's record is incomplete ({error!r}).") from error


def canonical(value) -> bytes:
    """Canonical JSON bytes of `value` (sorted keys, no spaces), the input of content
    hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(fields: Mapping, blobs: Mapping[str, tuple[str, bytes]]) -> str:
    """SHA-256 over the record's JSON (without timings, which differ on every run) and every
    blob, so two runs of the same thing share a hash and lineage survives export and import."""
    digest = hashlib.sha256(canonical({k: v for k, v in fields.items() if k != "timings"}))
    for name in sorted(blobs):
        kind, data = blobs[name]
        digest.update(f"\0{name}\0{kind}\0".encode())
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def tensors_to_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """Tensors as one safetensors file (on the CPU, contiguous)."""
    return save_safetensors({name: t.detach().cpu().contiguous() for name, t in tensors.items()})


def record_blobs(record: RunRecord, cap_bytes: int) -> tuple[dict[str, tuple[str, bytes]], bool]:
    """The blobs of a record ({name: (kind, bytes)}) and whether the raw tensors (and the JSON
    export that repeats their numbers) were left out because the run would exceed the cap."""
    blobs: dict[str, tuple[str, bytes]] = {
        f"table.{name}": ("csv", data) for name, data in record.tables.items()}
    raw: dict[str, tuple[str, bytes]] = {}
    if record.tensors:
        raw[TENSORS_BLOB] = ("safetensors", tensors_to_bytes(record.tensors))
    if record.result_json:
        raw[RESULT_BLOB] = ("json", record.result_json)
    kept = sum(len(data) for _, data in blobs.values()) + sum(map(len, record.figures))
    raw_size = sum(len(data) for _, data in raw.values())
    if raw and kept + raw_size > cap_bytes:
        return blobs, True
    return {**blobs, **raw}, False


# --- the store --------------------------------------------------------------------------------

METADATA = sa.MetaData()
SCHEMA_TABLE = sa.Table(
    "workbench_schema", METADATA,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False))
RUNS = sa.Table(
    "workbench_runs", METADATA,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("page", sa.String(200), nullable=False, index=True),
    sa.Column("method", sa.String(200), nullable=False),
    sa.Column("model_name", sa.String(1000), nullable=False, index=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("search_text", sa.Text, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("tensors_omitted", sa.Boolean, nullable=False))
BLOBS = sa.Table(
    "workbench_run_blobs", METADATA,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("workbench_runs.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False))
LINEAGE = sa.Table(
    "workbench_run_parents", METADATA,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("workbench_runs.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("parent_hash", sa.String(64), primary_key=True))

SUMMARY_QUERY = sa.select(
    RUNS.c.id, RUNS.c.content_hash, RUNS.c.created_at, RUNS.c.page, RUNS.c.method,
    RUNS.c.model_name, RUNS.c.title, RUNS.c.size_bytes, RUNS.c.tensors_omitted,
).order_by(RUNS.c.created_at.desc())


def summary_of(row) -> RunSummary:
    """The listing entry of a runs-table row."""
    return RunSummary(str(row.id), str(row.content_hash), float(row.created_at), str(row.page),
                      str(row.method), str(row.model_name), str(row.title), int(row.size_bytes),
                      bool(row.tensors_omitted))


# Schema version -> the step that brings a store at that version to the next one. A store at
# version 0 (new) gets the tables; a later schema adds its step here, run in one transaction.
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {
    0: lambda connection: METADATA.create_all(connection),
}


def default_url() -> str:
    """A SQLite file under the user's data directory (created on first use)."""
    import platformdirs

    folder = platformdirs.user_data_path(APP_DIR_NAME, appauthor=False)
    return f"sqlite:///{folder / 'runs.sqlite'}"


def as_url(location: str | Path | None) -> str:
    """A store location as a SQLAlchemy URL: None is WORKBENCH_RUNS_URL when set, else the
    default file; a path is a SQLite file."""
    if location is None or not str(location).strip():
        location = os.environ.get(RUNS_URL_VARIABLE, "")
    if not str(location).strip():
        return default_url()
    text = str(location).strip()
    return text if "://" in text else f"sqlite:///{Path(text).expanduser().resolve()}"


def is_unreadable_database(error: BaseException) -> bool:
    """Whether a database error means the file is not (or no longer) a SQLite database."""
    text = str(error).lower()
    return "file is not a database" in text or "database disk image is malformed" in text


class RunStore:
    """Saved runs in a database (see the module docstring). `location`: a SQLAlchemy URL or a
    file path (default: runs.sqlite under the user's data directory). `size_cap_mb`: above it a
    run keeps inputs, figures and summaries but not its raw tensors. `warnings` lists what went
    wrong on opening (a garbage file moved aside, a newer schema): the store still works."""

    def __init__(self, location: str | Path | None = None,
                 size_cap_mb: float = DEFAULT_SIZE_CAP_MB,
                 busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.url = sa.make_url(as_url(location))
        self.size_cap_bytes = int(size_cap_mb * 1024 * 1024)
        self.busy_timeout_s = busy_timeout_s
        self.read_only = False
        self.warnings: list[str] = []
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database not in (None, "", ":memory:"):
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = self._make_engine()
        try:
            self._prepare_schema()
        except (sa.exc.DatabaseError, sqlite3.DatabaseError) as error:
            if not (self.is_sqlite and is_unreadable_database(error)):
                raise RunStoreError(f"The run store at {self.shown_url} can't be opened: "
                                    f"{getattr(error, 'orig', None) or error}") from error
            self._move_unreadable_file()
            self._prepare_schema()

    @classmethod
    def from_settings(cls, settings) -> RunStore:
        """The store a deployment's settings name (`runs_url`, `runs_size_cap_mb`)."""
        return cls(settings.runs_url or None, size_cap_mb=settings.runs_size_cap_mb)

    @property
    def shown_url(self) -> str:
        """The store's URL with any password hidden (for messages and the page)."""
        return self.url.render_as_string(hide_password=True)

    def _make_engine(self) -> sa.Engine:
        if not self.is_sqlite:
            return sa.create_engine(self.url, pool_pre_ping=True)
        engine = sa.create_engine(self.url, connect_args={"timeout": self.busy_timeout_s,
                                                          "check_same_thread": False})
        busy_ms = int(self.busy_timeout_s * 1000)

        @sa.event.listens_for(engine, "connect")
        def on_connect(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")  # kept in the file once set
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def on_begin(connection) -> None:
            # A write that starts with a plain BEGIN takes its lock only at its first write,
            # and a reader upgrading to a writer then fails at once with "database is locked"
            # (the busy timeout does not cover that); BEGIN IMMEDIATE queues for the lock.
            immediate = connection.get_execution_options().get("immediate", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    def _write(self):
        """A write transaction (BEGIN IMMEDIATE on SQLite)."""
        if self.read_only:
            raise RunStoreReadOnlyError(
                f"The run store at {self.shown_url} was written by a newer version of the app; "
                "runs can be read but not saved or deleted here. Update the app, or set "
                "WORKBENCH_RUNS_URL to another store.")
        return self.engine.connect().execution_options(immediate=True)

    def _prepare_schema(self) -> None:
        with self.engine.connect().execution_options(immediate=True) as connection, \
                connection.begin():
            version = self._schema_version(connection)
            if version > SCHEMA_VERSION:
                self.read_only = True
                self.note(f"The run store at {self.shown_url} has schema version {version}, "
                          f"newer than this app's {SCHEMA_VERSION}: its runs are shown read-only, "
                          "and runs can't be saved to it.")
                return
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](connection)
                version += 1
                self._set_schema_version(connection, version)

    def _schema_version(self, connection: sa.Connection) -> int:
        if not sa.inspect(connection).has_table(SCHEMA_TABLE.name):
            SCHEMA_TABLE.create(connection)
            return 0
        found = connection.execute(sa.select(SCHEMA_TABLE.c.version).where(
            SCHEMA_TABLE.c.name == "runs")).scalar()
        return int(found or 0)

    def _set_schema_version(self, connection: sa.Connection, version: int) -> None:
        updated = connection.execute(SCHEMA_TABLE.update().where(
            SCHEMA_TABLE.c.name == "runs").values(version=version)).rowcount
        if not updated:
            connection.execute(SCHEMA_TABLE.insert().values(name="runs", version=version))

    def _move_unreadable_file(self) -> None:
        self.engine.dispose()
        path = Path(str(self.url.database))
        moved = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
                               f"-{uuid.uuid4().hex[:6]}")
        try:
            path.rename(moved)
        except FileNotFoundError:  # another process moved it first and started the new store
            self.note(f"The run store file {path} was not a readable database; another "
                      "instance of the app moved it aside and started a new, empty store.")
        else:
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.rename(moved.with_name(moved.name + suffix))
            self.note(f"The run store file {path} was not a readable database; it was moved to "
                      f"{moved} and a new, empty store was started.")
        self.engine = self._make_engine()

    def note(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, RunStoreWarning, stacklevel=3)

    # --- saving -------------------------------------------------------------------------------

    def save(self, record: RunRecord) -> SavedRun:
        """Save a run in one transaction and return it as stored (with its id and hash)."""
        fields = record_fields(record)
        blobs, omitted = record_blobs(record, self.size_cap_bytes)
        if omitted:
            fields["tensors_omitted_note"] = (
                f"The raw tensors were left out: this run is over the store's size cap of "
                f"{self.size_cap_bytes / 2**20:g} MB. Inputs, figures, tables and summaries are "
                "kept.")
        digest = content_hash(fields, blobs)
        run_id = uuid.uuid4().hex
        created_at = time.time()
        return self._insert(run_id, digest, created_at, fields, blobs, omitted)

    def _insert(self, run_id: str, digest: str, created_at: float, fields: Mapping,
                blobs: Mapping[str, tuple[str, bytes]], omitted: bool,
                imported: bool = False) -> SavedRun:
        """Write one run in one transaction. `imported`: a run already here under this id and
        hash is kept as it is, another one under this id makes the import take a new id (checked
        inside the write transaction, so two concurrent imports can't both insert)."""
        text = canonical(fields).decode()
        size = len(text) + sum(len(data) for _, data in blobs.values())
        with self._write() as connection, connection.begin():
            if imported:
                existing = connection.execute(sa.select(RUNS.c.content_hash).where(
                    RUNS.c.id == run_id)).scalar()
                if existing == digest:
                    return self.open(run_id)
                if existing is not None:
                    run_id = uuid.uuid4().hex
            connection.execute(RUNS.insert().values(
                id=run_id, content_hash=digest, created_at=created_at, page=fields["page"],
                method=fields["method"], model_name=fields["model"]["name"],
                title=fields["title"], search_text=search_text(fields), record=text,
                size_bytes=size, tensors_omitted=omitted))
            for name, (kind, data) in blobs.items():
                self._write_blob(connection, run_id, name, kind, data)
            for parent in dict.fromkeys(fields["parents"]):
                connection.execute(LINEAGE.insert().values(run_id=run_id, parent_hash=parent))
        return self.open(run_id)

    def _write_blob(self, connection: sa.Connection, run_id: str, name: str, kind: str,
                    data: bytes) -> None:
        connection.execute(BLOBS.insert().values(run_id=run_id, name=name, kind=kind, data=data))

    # --- reading ------------------------------------------------------------------------------

    def list(self, page: str | None = None, model: str | None = None, text: str | None = None,
             limit: int = 500) -> Listing:
        """Saved runs, newest first, filtered by page, model name and text (in the title,
        prompts, method or options; case-insensitive). Unreadable rows are skipped, with a
        warning each."""
        query = SUMMARY_QUERY.limit(limit)
        if page:
            query = query.where(RUNS.c.page == page)
        if model:
            query = query.where(RUNS.c.model_name == model)
        if text and text.strip():
            query = query.where(RUNS.c.search_text.contains(text.strip().lower(),
                                                            autoescape=True))
        found, problems = [], []
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                try:
                    found.append(summary_of(row))
                except (TypeError, ValueError) as error:
                    problems.append(f"Run {row.id} was skipped: its row is unreadable ({error}).")
        return Listing(tuple(found), tuple(problems))

    def pages(self) -> builtins.list[str]:
        with self.engine.connect() as connection:
            return sorted(connection.execute(sa.select(RUNS.c.page).distinct()).scalars())

    def models(self) -> builtins.list[str]:
        with self.engine.connect() as connection:
            return sorted(connection.execute(sa.select(RUNS.c.model_name).distinct()).scalars())

    def open(self, run_id: str) -> SavedRun:
        """A saved run with everything it holds. A damaged tensor or table file is dropped with a
        warning on the run; a damaged record raises CorruptRunError."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(RUNS).where(RUNS.c.id == run_id)).first()
            if row is None:
                raise RunNotFoundError(f"There is no saved run {run_id!r} in this store.")
            blobs = {b.name: (b.kind, bytes(b.data)) for b in connection.execute(
                sa.select(BLOBS.c.name, BLOBS.c.kind, BLOBS.c.data).where(
                    BLOBS.c.run_id == run_id))}
        try:
            fields = json.loads(row.record)
            if not isinstance(fields, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            raise CorruptRunError(f"Run {run_id} can't be read: its record is damaged "
                                  f"({error}).") from error
        return assemble(run_id, str(row.content_hash), float(row.created_at), fields, blobs,
                        int(row.size_bytes), bool(row.tensors_omitted))

    def find_by_hash(self, digest: str) -> RunSummary | None:
        """The oldest run with this content hash, if the store has one."""
        with self.engine.connect() as connection:
            row = connection.execute(SUMMARY_QUERY.where(RUNS.c.content_hash == digest)
                                     .order_by(None).order_by(RUNS.c.created_at)).first()
        return None if row is None else summary_of(row)

    def lineage(self, run_id: str, max_depth: int = 20) -> builtins.list[LineageStep]:
        """The runs this run was built from, and theirs, by content hash (a parent no longer in
        the store appears with `run` None)."""
        steps: list[LineageStep] = []
        seen: set[str] = set()
        frontier = [(parent, 1) for parent in self.open(run_id).record.parents]
        while frontier:
            digest, depth = frontier.pop(0)
            if digest in seen or depth > max_depth:
                continue
            seen.add(digest)
            summary = self.find_by_hash(digest)
            if summary is not None:
                with self.engine.connect() as connection:
                    grand = list(connection.execute(sa.select(LINEAGE.c.parent_hash).where(
                        LINEAGE.c.run_id == summary.id)).scalars())
                frontier.extend((parent, depth + 1) for parent in grand)
            steps.append(LineageStep(digest, summary, depth))
        return steps

    def compare(self, left_id: str, right_id: str) -> Comparison:
        return compare_runs(self.open(left_id), self.open(right_id))

    def delete(self, run_id: str) -> None:
        with self._write() as connection, connection.begin():
            # Deleted explicitly rather than by ON DELETE CASCADE, which SQLite applies only
            # with its foreign_keys pragma on in every connection that deletes.
            connection.execute(BLOBS.delete().where(BLOBS.c.run_id == run_id))
            connection.execute(LINEAGE.delete().where(LINEAGE.c.run_id == run_id))
            if not connection.execute(RUNS.delete().where(RUNS.c.id == run_id)).rowcount:
                raise RunNotFoundError(f"There is no saved run {run_id!r} in this store.")

    # --- files ----------------------------------------------------------------------------------

    def export_zip(self, run_id: str) -> bytes:
        """A zip of one run: run.json (its record, id, time and hash) and one file per blob."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(RUNS).where(RUNS.c.id == run_id)).first()
            if row is None:
                raise RunNotFoundError(f"There is no saved run {run_id!r} in this store.")
            blobs = list(connection.execute(sa.select(BLOBS.c.name, BLOBS.c.kind, BLOBS.c.data)
                                            .where(BLOBS.c.run_id == run_id)))
        manifest = {"format": "gpt2-workbench-run", "schema_version": SCHEMA_VERSION,
                    "id": row.id, "content_hash": row.content_hash,
                    "created_at": row.created_at, "tensors_omitted": bool(row.tensors_omitted),
                    "record": json.loads(row.record),
                    "blobs": {b.name: b.kind for b in blobs}}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(ZIP_RECORD, json.dumps(manifest, indent=1, ensure_ascii=False))
            for blob in blobs:
                archive.writestr(f"blobs/{blob.name}", bytes(blob.data))
        return buffer.getvalue()

    def import_zip(self, data: bytes) -> SavedRun:
        """Add a run from `export_zip`'s file. Its content hash is checked; a run already here
        under the same id and hash is returned as it is, another one gets a new id."""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                manifest = json.loads(archive.read(ZIP_RECORD))
                blobs = {name: (kind, archive.read(f"blobs/{name}"))
                         for name, kind in manifest["blobs"].items()}
            fields, digest = manifest["record"], str(manifest["content_hash"])
            run_id, created_at = str(manifest["id"]), float(manifest["created_at"])
            omitted = bool(manifest.get("tensors_omitted", False))
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as error:
            raise CorruptRunError(f"This is not a readable run file ({error}).") from error
        if int(manifest.get("schema_version", 0)) > SCHEMA_VERSION:
            raise CorruptRunError("This run file was written by a newer version of the app.")
        if content_hash(fields, blobs) != digest:
            raise CorruptRunError("This run file was changed after it was exported: its content "
                                  "does not match its hash.")
        assemble(run_id, digest, created_at, fields, blobs, 0, omitted)  # readable at all?
        if len(run_id) != 32:
            run_id = uuid.uuid4().hex
        attempts_left = 3
        while True:
            try:
                return self._insert(run_id, digest, created_at, fields, blobs, omitted,
                                    imported=True)
            except sa.exc.IntegrityError:
                # A server at READ COMMITTED (PostgreSQL) lets two imports of one run both see
                # it missing; the second insert fails on the key and, tried again, finds it.
                attempts_left -= 1
                if not attempts_left:
                    raise


def search_text(fields: Mapping) -> str:
    """The lower-cased text a run is found by: title, method, page, model, prompts,
    options."""
    return "\n".join([fields["title"], fields["method"], fields["page"], fields["model"]["name"],
                      *fields["prompts"], json.dumps(fields["options"])]).lower()


def assemble(run_id: str, digest: str, created_at: float, fields: Mapping,
             blobs: Mapping[str, tuple[str, bytes]], size: int, omitted: bool) -> SavedRun:
    """A saved run from its stored fields and blobs; a damaged blob is dropped with a
    problem noted."""
    problems = []
    tensors: dict[str, torch.Tensor] = {}
    if TENSORS_BLOB in blobs:
        try:
            tensors = load_safetensors(blobs[TENSORS_BLOB][1])
        except Exception as error:  # safetensors raises its own error types for damaged bytes
            problems.append(f"The run's tensors could not be read ({type(error).__name__}); "
                            "the rest of the run is shown.")
    tables = {name.removeprefix("table."): data for name, (kind, data) in blobs.items()
              if kind == "csv"}
    result_json = blobs.get(RESULT_BLOB, ("json", b""))[1]
    if omitted:
        problems.append(fields.get("tensors_omitted_note", "The raw tensors were left out."))
    record = record_from_fields(fields, tensors, tables, result_json)
    return SavedRun(run_id, digest, created_at, record, size, omitted, tuple(problems))


def compare_runs(left: SavedRun, right: SavedRun) -> Comparison:
    """Options that differ, and right minus left for each tensor both runs hold in one shape."""
    a, b = left.record, right.record
    changes = {}
    for name in sorted(set(a.options) | set(b.options)):
        if a.options.get(name) != b.options.get(name):
            changes[name] = (a.options.get(name), b.options.get(name))
    for name, values in (("model", (a.model.name, b.model.name)),
                         ("prompts", (list(a.prompts), list(b.prompts)))):
        if values[0] != values[1]:
            changes[name] = values
    differences, mismatches = {}, {}
    for name in sorted(set(a.tensors) & set(b.tensors)):
        x, y = a.tensors[name], b.tensors[name]
        if x.shape == y.shape and x.dtype.is_floating_point == y.dtype.is_floating_point:
            differences[name] = y.double() - x.double()
        else:
            mismatches[name] = (tuple(x.shape), tuple(y.shape))
    return Comparison(left, right, a.page == b.page, changes, differences, mismatches)


def table_rows(data: bytes) -> list[list[str]]:
    """A stored CSV table's rows (header first)."""
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))

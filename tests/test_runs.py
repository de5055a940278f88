"""The run store, on its default SQLite file and on a real PostgreSQL server started here.

Each store test runs on both backends. References are independent of the store: counts and
values written by the test itself, rows read back with plain SQLAlchemy, and hand-computed
differences.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import threading
import uuid
import warnings
import zipfile

import pytest
import sqlalchemy as sa
import torch

from interp.errors import CorruptRunError, RunNotFoundError, RunStoreReadOnlyError
from interp.runs import (
    BLOBS,
    RUNS,
    SCHEMA_TABLE,
    SCHEMA_VERSION,
    ModelRef,
    RunRecord,
    RunStore,
    RunStoreWarning,
)
from tests.postgres_server import temporary_postgres


def make_record(title: str, values=None, page: str = "logit_lens", parents=(), **extra):
    values = torch.arange(6.0).reshape(2, 3) if values is None else values
    return RunRecord(page=page, method="LensResult", model=ModelRef("demo", "sha256:abc"),
                     prompts=(f"prompt of {title}",), options={"k": 5, "title": title},
                     tensors={"values": values}, tables={"table": b"a,b\n1,2\n"},
                     figures=('{"data": [], "layout": {}}',), explanation="text",
                     explanation_source="template", title=title, parents=tuple(parents), **extra)


@pytest.fixture(scope="module")
def postgres_server():
    with temporary_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """A fresh, empty store location: a SQLite file, or a new database on the server."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.sqlite")
    server = request.getfixturevalue("postgres_server")
    name = "runs_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


def stored_counts(store: RunStore) -> tuple[int, int]:
    with store.engine.connect() as connection:
        return (connection.execute(sa.select(sa.func.count()).select_from(RUNS)).scalar(),
                connection.execute(sa.select(sa.func.count()).select_from(BLOBS)).scalar())


def test_two_app_instances_on_one_store_see_each_others_runs(location):
    first, second = RunStore(location), RunStore(location)
    saved = first.save(make_record("from the first"))
    assert [run.id for run in second.list()] == [saved.id]
    other = second.save(make_record("from the second", torch.ones(2, 3)))
    reopened = first.open(other.id)
    assert torch.equal(reopened.record.tensors["values"], torch.ones(2, 3))
    assert reopened.record.tables["table"] == b"a,b\n1,2\n"
    assert {run.title for run in RunStore(location).list()} == {"from the first",
                                                                "from the second"}


def test_a_save_that_raises_halfway_leaves_no_half_run(location, monkeypatch):
    store = RunStore(location)
    kept = store.save(make_record("kept"))
    written = []

    def fail_on_second_blob(self, connection, run_id, name, kind, data):
        written.append(name)
        if len(written) == 2:
            raise OSError("disk full (simulated)")
        connection.execute(BLOBS.insert().values(run_id=run_id, name=name, kind=kind, data=data))

    monkeypatch.setattr(RunStore, "_write_blob", fail_on_second_blob)
    with pytest.raises(OSError):
        store.save(make_record("half"))
    assert len(written) == 2  # the failure really came between two writes of one run
    monkeypatch.undo()
    assert [run.id for run in store.list()] == [kept.id]
    assert stored_counts(store) == (1, 2)  # the kept run and its table and tensors
    store.save(make_record("after"))
    assert stored_counts(store)[0] == 2


def test_eight_threads_saving_25_runs_each_lose_none(location):
    store = RunStore(location)
    failures = []

    def save_many(thread: int) -> None:
        for index in range(25):
            try:
                store.save(make_record(f"t{thread}-{index}", torch.full((4,), float(index))))
            except Exception as error:  # counted: the test is that there are none
                failures.append(repr(error))

    threads = [threading.Thread(target=save_many, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    titles = {run.title for run in RunStore(location).list(limit=1000)}
    assert titles == {f"t{t}-{i}" for t in range(8) for i in range(25)}


def save_in_process(location: str, worker: int, count: int) -> int:
    store = RunStore(location)
    for index in range(count):
        store.save(make_record(f"p{worker}-{index}", torch.full((4,), float(index))))
    return count


def test_four_processes_saving_25_runs_each_lose_none(location):
    RunStore(location)  # the schema exists before the workers race to it
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        done = pool.starmap(save_in_process, [(location, worker, 25) for worker in range(4)])
    assert done == [25] * 4
    titles = [run.title for run in RunStore(location).list(limit=1000)]
    assert len(titles) == 100
    assert set(titles) == {f"p{w}-{i}" for w in range(4) for i in range(25)}


def import_in_process(location: str, archives: list[bytes]) -> int:
    store = RunStore(location)
    for archive in archives:
        store.import_zip(archive)
    return len(archives)


def test_four_processes_importing_25_runs_each_lose_none(location, tmp_path):
    """Each import reads (is this run here already?) then writes, in one transaction: on SQLite
    that needs BEGIN IMMEDIATE (with a plain BEGIN most of them fail with "database is
    locked"). Every archive is imported twice, so the read decides something."""
    source = RunStore(tmp_path / "source.sqlite")
    archives = [source.export_zip(source.save(make_record(f"i{n}", torch.full((4,), n))).id)
                for n in range(50)]
    RunStore(location)
    work = [(location, archives[25 * (w % 2):25 * (w % 2) + 25]) for w in range(4)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.starmap(import_in_process, work) == [25] * 4
    found = RunStore(location).list(limit=1000)
    assert sorted(run.title for run in found) == sorted(f"i{n}" for n in range(50))


def test_a_corrupt_run_gives_a_warning_and_the_rest_loads(location):
    store = RunStore(location)
    good = store.save(make_record("good"))
    broken = store.save(make_record("broken record"))
    damaged = store.save(make_record("damaged tensors", torch.ones(3)))
    with store.engine.begin() as connection:
        connection.execute(RUNS.update().where(RUNS.c.id == broken.id).values(record="{not json"))
        connection.execute(BLOBS.update().where(BLOBS.c.run_id == damaged.id)
                           .where(BLOBS.c.name == "tensors").values(data=b"\x00garbage"))
    assert {run.id for run in store.list()} == {good.id, broken.id, damaged.id}
    with pytest.raises(CorruptRunError):
        store.open(broken.id)
    partly = store.open(damaged.id)
    assert partly.record.tensors == {} and partly.record.title == "damaged tensors"
    assert any("tensors could not be read" in text for text in partly.warnings)
    assert torch.equal(store.open(good.id).record.tensors["values"],
                       torch.arange(6.0).reshape(2, 3))


def test_an_unreadable_row_is_skipped_with_a_warning(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    good = store.save(make_record("good"))
    bad = store.save(make_record("bad"))
    with store.engine.begin() as connection:  # SQLite keeps whatever type it is given
        connection.execute(RUNS.update().where(RUNS.c.id == bad.id).values(
            size_bytes=sa.literal("many")))
    listing = store.list()
    assert [run.id for run in listing] == [good.id]
    assert len(listing.warnings) == 1 and bad.id in listing.warnings[0]


def test_a_garbage_database_file_is_moved_aside_with_a_warning(tmp_path):
    path = tmp_path / "runs.sqlite"
    path.write_bytes(b"this is not SQLite" * 200)
    with pytest.warns(RunStoreWarning, match="not a readable database"):
        store = RunStore(path)
    assert len(store.list()) == 0
    saved = store.save(make_record("fresh"))
    assert [run.id for run in RunStore(path).list()] == [saved.id]
    moved = [p for p in tmp_path.iterdir() if ".unreadable-" in p.name]
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not SQLite")


def test_a_store_written_by_a_newer_schema_is_read_only_with_a_warning(location):
    store = RunStore(location)
    saved = store.save(make_record("old"))
    with store.engine.begin() as connection:
        connection.execute(SCHEMA_TABLE.update().values(version=SCHEMA_VERSION + 1))
    with pytest.warns(RunStoreWarning, match="newer"):
        newer = RunStore(location)
    assert newer.read_only and newer.warnings
    assert [run.id for run in newer.list()] == [saved.id]
    assert newer.open(saved.id).record.title == "old"
    with pytest.raises(RunStoreReadOnlyError):
        newer.save(make_record("refused"))


def test_over_the_size_cap_the_raw_tensors_are_left_out_and_the_run_says_so(location):
    store = RunStore(location, size_cap_mb=0.01)  # about 10 kB
    big = store.save(make_record("big", torch.zeros(100, 100)))  # 40 kB of float32
    small = store.save(make_record("small", torch.zeros(10)))
    assert big.tensors_omitted and big.record.tensors == {}
    assert big.record.figures and big.record.tables and big.record.prompts == ("prompt of big",)
    assert any("left out" in text for text in big.warnings)
    assert not small.tensors_omitted and small.record.tensors["values"].shape == (10,)


def test_compare_gives_the_difference_where_shapes_match(location):
    store = RunStore(location)
    left = store.save(RunRecord("p", "m", ModelRef("demo"), options={"k": 5},
                                tensors={"a": torch.tensor([1.0, 2.0]), "b": torch.zeros(2)}))
    right = store.save(RunRecord("p", "m", ModelRef("demo"), options={"k": 7},
                                 tensors={"a": torch.tensor([4.0, 0.5]), "b": torch.zeros(3)}))
    comparison = store.compare(left.id, right.id)
    assert comparison.same_page
    assert comparison.option_changes == {"k": (5, 7)}
    assert comparison.differences["a"].tolist() == [3.0, -1.5]  # 4-1, 0.5-2 by hand
    assert comparison.shape_mismatches == {"b": ((2,), (3,))}


def rewritten(archive: bytes, name: str, change) -> bytes:
    """The zip with one member's bytes changed."""
    source, target = zipfile.ZipFile(io.BytesIO(archive)), io.BytesIO()
    with zipfile.ZipFile(target, "w") as out:
        for member in source.namelist():
            data = source.read(member)
            out.writestr(member, change(data) if member == name else data)
    return target.getvalue()


def test_export_and_import_keep_a_run_and_refuse_a_tampered_file(location, tmp_path):
    store = RunStore(location)
    saved = store.save(make_record("travels"))
    archive = store.export_zip(saved.id)
    elsewhere = RunStore(tmp_path / "elsewhere.sqlite")
    imported = elsewhere.import_zip(archive)
    assert (imported.id, imported.content_hash) == (saved.id, saved.content_hash)
    assert torch.equal(imported.record.tensors["values"], saved.record.tensors["values"])
    assert elsewhere.import_zip(archive).id == saved.id and len(elsewhere.list()) == 1
    tampered = rewritten(archive, "run.json",
                         lambda text: text.replace(b"prompt of travels", b"prompt of tampers"))
    with pytest.raises(CorruptRunError):
        elsewhere.import_zip(tampered)
    with pytest.raises(CorruptRunError):
        elsewhere.import_zip(b"not a zip")


def test_lineage_follows_content_hashes_and_delete_removes_a_run(location):
    store = RunStore(location)
    patching = store.save(make_record("patching", page="patching"))
    circuit = store.save(make_record("circuit", page="circuits", parents=[patching.content_hash]))
    report = store.save(make_record("report", page="circuits",
                                    parents=[circuit.content_hash, "0" * 64]))
    chain = store.lineage(report.id)
    assert [(step.run.title if step.run else None, step.depth) for step in chain] == [
        ("circuit", 1), (None, 1), ("patching", 2)]
    store.delete(circuit.id)
    assert {run.title for run in store.list()} == {"patching", "report"}
    assert stored_counts(store)[1] == 4  # two runs left, a table and tensors each
    with pytest.raises(RunNotFoundError):
        store.open(circuit.id)
    assert store.list(page="patching").runs[0].id == patching.id
    assert [run.title for run in store.list(text="OF REP")] == ["report"]


def test_the_record_keeps_options_and_figures_as_json(location):
    store = RunStore(location)
    saved = store.save(make_record("json", timings={"compute_s": 1.5}))
    with store.engine.connect() as connection:
        text = connection.execute(sa.select(RUNS.c.record).where(RUNS.c.id == saved.id)).scalar()
    fields = json.loads(text)
    assert fields["options"] == {"k": 5, "title": "json"}
    assert fields["figures"] == ['{"data": [], "layout": {}}']
    assert saved.record.timings == {"compute_s": 1.5}


def test_the_sqlite_store_is_in_wal_mode(tmp_path):
    """Read with Python's own sqlite3, not through the store."""
    import sqlite3

    RunStore(tmp_path / "runs.sqlite").save(make_record("wal"))
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_default_store_lives_under_the_user_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("WORKBENCH_RUNS_URL", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = RunStore()
    assert store.url.database == str(tmp_path / "data" / "gpt2-workbench" / "runs.sqlite")
    store.save(make_record("first use"))
    assert (tmp_path / "data" / "gpt2-workbench" / "runs.sqlite").is_file()
    monkeypatch.setenv("WORKBENCH_RUNS_URL", str(tmp_path / "named.sqlite"))
    assert RunStore().url.database == str(tmp_path / "named.sqlite")

"""PostgreSQLJobManager against a throw-away PostgreSQL (the ``postgis_db`` fixture)."""

import uuid

import pytest
import requests
import sqlalchemy
import yaml
from pygeoapi.plugin import load_plugin
from pygeoapi.process.base import JobNotFoundError
from pygeoapi.util import JobStatus, get_current_datetime

from burnscape.publish.jobs import TinyDBJobManager
from burnscape.publish.pgjobs import PostgreSQLJobManager, PostgreSQLJobStore
from burnscape.publish.server import template_path

from .conftest import serve_in_thread, write_burned_zarr

TIMEOUT = 60

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def connection(postgis_db):
    """The database URL, with an empty (or not yet created) jobs table."""
    engine = sqlalchemy.create_engine(
        postgis_db.replace("postgresql://", "postgresql+psycopg://")
    )
    with engine.begin() as db:
        if sqlalchemy.inspect(db).has_table("jobs"):
            db.execute(sqlalchemy.text("DELETE FROM jobs"))
    engine.dispose()
    return postgis_db


def manager_for(connection, tmp_path):
    return PostgreSQLJobManager(
        {
            "name": "burnscape.publish.pgjobs.PostgreSQLJobManager",
            "connection": connection,
            "output_dir": str(tmp_path / "jobs"),
        }
    )


def new_job(status="accepted", **fields):
    """A record as pygeoapi's execute_process first writes it."""
    now = get_current_datetime()
    record = {
        "type": "process",
        "identifier": str(uuid.uuid4()),
        "process_id": "burnscape-workflow",
        "created": now,
        "started": now,
        "updated": now,
        "finished": None,
        "status": status,
        "location": None,
        "mimetype": "application/octet-stream",
        "message": "Job accepted and ready for execution",
        "progress": 5,
    }
    record.update(fields)
    return record


def test_jobs_table_is_created_with_every_column_the_managers_write(
    connection, tmp_path
):
    manager_for(connection, tmp_path)
    engine = sqlalchemy.create_engine(
        connection.replace("postgresql://", "postgresql+psycopg://")
    )
    with engine.connect() as db:
        columns = {c["name"] for c in sqlalchemy.inspect(db).get_columns("jobs")}
        primary = sqlalchemy.inspect(db).get_pk_constraint("jobs")
    engine.dispose()
    assert columns >= set(new_job()) | {"burnscape_instance"}
    assert primary["constrained_columns"] == ["identifier"]


def test_add_get_update_list_and_delete_a_job(connection, tmp_path):
    manager = manager_for(connection, tmp_path)
    job = new_job()
    job_id = job["identifier"]
    assert manager.add_job(job) == job_id
    assert manager.get_job(job_id) == {**job, "burnscape_instance": None}

    assert manager.update_job(
        job_id,
        {
            "burnscape_instance": "this-server",
            "status": JobStatus.running.value,
            "message": "acquire: 3 scenes",
            "progress": 27,
        },
    )
    stored = manager.get_job(job_id)
    assert stored["status"] == "running" and stored["progress"] == 27
    assert stored["burnscape_instance"] == "this-server"
    assert stored["message"] == "acquire: 3 scenes"

    older = new_job(status="successful", started="2020-01-01T00:00:00.000000Z")
    manager.add_job(older)
    listing = manager.get_jobs()
    assert listing["numberMatched"] == 2
    assert [j["identifier"] for j in listing["jobs"]] == [job_id, older["identifier"]]
    assert all(set(j) >= set(job) for j in listing["jobs"])
    running = manager.get_jobs(status=JobStatus.running)
    assert [j["identifier"] for j in running["jobs"]] == [job_id]
    assert running["numberMatched"] == 1
    page = manager.get_jobs(limit=1, offset=1)
    assert [j["identifier"] for j in page["jobs"]] == [older["identifier"]]
    assert page["numberMatched"] == 2

    folder = tmp_path / "jobs" / job_id
    folder.mkdir(parents=True)
    (folder / "result.json").write_text('{"report": {}}')
    assert manager.update_job(
        job_id,
        {
            "status": JobStatus.successful.value,
            "location": str(folder / "result.json"),
            "mimetype": "application/json",
            "progress": 100,
        },
    )
    assert manager.get_job_result(job_id) == ("application/json", {"report": {}})

    assert manager.delete_job(job_id) is True
    with pytest.raises(JobNotFoundError):
        manager.get_job(job_id)
    assert not folder.exists()
    assert [j["identifier"] for j in manager.get_jobs()["jobs"]] == [
        older["identifier"]
    ]


def test_jobs_survive_a_server_restart(connection, tmp_path):
    first = manager_for(connection, tmp_path)
    done = new_job(status="successful", progress=100, message="Job complete")
    cut_short = new_job(
        status="running", progress=40, burnscape_instance="an-earlier-server"
    )
    first.add_job(done)
    first.add_job(cut_short)
    del first

    restarted = manager_for(connection, tmp_path)
    assert restarted.get_job(done["identifier"]) == {
        **done,
        "burnscape_instance": None,
    }
    interrupted = restarted.get_job(cut_short["identifier"])
    assert interrupted["status"] == "failed"
    assert "restarted" in interrupted["message"]
    assert interrupted["finished"] is not None
    assert restarted.get_jobs()["numberMatched"] == 2


def test_unknown_job_id(connection, tmp_path):
    manager = manager_for(connection, tmp_path)
    unknown = str(uuid.uuid4())
    with pytest.raises(JobNotFoundError):
        manager.get_job(unknown)
    with pytest.raises(JobNotFoundError):
        manager.get_job_result(unknown)
    with pytest.raises(JobNotFoundError):
        manager.delete_job(unknown)
    assert manager.update_job(unknown, {"progress": 50}) is False


def test_dask_driver_store_writes_to_the_same_table(connection, tmp_path):
    manager = manager_for(connection, tmp_path)
    job = new_job()
    manager.add_job(job)
    # run_workflow_job opens the store like this on a Dask worker
    store = load_plugin("process_manager", manager.store_def)
    assert type(store) is PostgreSQLJobStore
    assert store.update_job(job["identifier"], {"message": "cube: 2 dates"})
    assert manager.get_job(job["identifier"])["message"] == "cube: 2 dates"


def test_existing_table_in_a_search_path_schema_gains_missing_columns(
    connection, tmp_path
):
    url = sqlalchemy.engine.make_url(connection)
    engine = sqlalchemy.create_engine(url.set(drivername="postgresql+psycopg"))
    with engine.begin() as db:
        db.execute(sqlalchemy.text("DROP SCHEMA IF EXISTS burnscape_jobs CASCADE"))
        db.execute(sqlalchemy.text("CREATE SCHEMA burnscape_jobs"))
        # a table set up for pygeoapi's own manager: no burnscape_instance
        columns = ", ".join(
            f"{name} varchar" for name in new_job() if name != "identifier"
        )
        db.execute(
            sqlalchemy.text(
                "CREATE TABLE burnscape_jobs.jobs "
                f"(identifier varchar PRIMARY KEY, {columns})"
            )
        )
    manager = PostgreSQLJobManager(
        {
            "name": "burnscape.publish.pgjobs.PostgreSQLJobManager",
            "connection": {
                "host": url.host,
                "port": url.port,
                "database": url.database,
                "user": url.username,
                "password": url.password,
                "search_path": ["burnscape_jobs", "public"],
            },
            "output_dir": str(tmp_path / "jobs"),
        }
    )
    job = new_job(progress="5")
    manager.add_job(job)
    assert manager.update_job(job["identifier"], {"burnscape_instance": "x"})
    with engine.connect() as db:
        found = db.execute(
            sqlalchemy.text("SELECT identifier FROM burnscape_jobs.jobs")
        ).scalars()
        assert list(found) == [job["identifier"]]
    engine.dispose()


def test_connection_that_is_not_postgresql_is_refused(tmp_path):
    with pytest.raises(Exception, match="postgresql://"):
        manager_for("sqlite:///jobs.db", tmp_path)


@pytest.fixture(params=["tinydb", "postgresql"])
def manager_config(request, tmp_path):
    """The ``server.manager`` section for each job store, and a manager on it."""
    if request.param == "tinydb":
        section = {
            "name": "burnscape.publish.jobs.TinyDBJobManager",
            "connection": str(tmp_path / "outputs" / "jobs" / "jobs.tinydb.json"),
        }
        factory = TinyDBJobManager
    else:
        section = {
            "name": "burnscape.publish.pgjobs.PostgreSQLJobManager",
            "connection": request.getfixturevalue("connection"),
        }
        factory = PostgreSQLJobManager
    section["output_dir"] = str(tmp_path / "outputs" / "jobs")
    return section, factory


def test_jobs_over_http_with_either_store(manager_config, tmp_path):
    section, factory = manager_config
    config = yaml.safe_load(template_path().read_text())
    config["server"]["manager"] = {**config["server"]["manager"], **section}
    template = tmp_path / "pygeoapi-config.yml"
    template.write_text(yaml.safe_dump(config))
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    write_burned_zarr(outputs / "burned.zarr")

    job = new_job(status="running", progress=40, message="cube: 2 dates")
    factory(section).add_job(job)
    job_id = job["identifier"]
    with serve_in_thread(outputs, template=template) as server:
        listing = requests.get(
            f"{server.url}/jobs", params={"f": "json"}, timeout=TIMEOUT
        )
        assert listing.status_code == 200, listing.text
        assert [j["jobID"] for j in listing.json()["jobs"]] == [job_id]

        one = requests.get(
            f"{server.url}/jobs/{job_id}", params={"f": "json"}, timeout=TIMEOUT
        )
        assert one.status_code == 200, one.text
        # the server started after the job's server: its running job was cut short
        assert one.json()["status"] == "failed"
        assert "restarted" in one.json()["message"]

        unknown = f"{server.url}/jobs/{uuid.uuid4()}"
        response = requests.get(unknown, params={"f": "json"}, timeout=TIMEOUT)
        assert response.status_code == 404
        assert requests.delete(unknown, timeout=TIMEOUT).status_code == 404

        dismissed = requests.delete(f"{server.url}/jobs/{job_id}", timeout=TIMEOUT)
        assert dismissed.status_code == 200, dismissed.text
        gone = requests.get(
            f"{server.url}/jobs/{job_id}", params={"f": "json"}, timeout=TIMEOUT
        )
        assert gone.status_code == 404

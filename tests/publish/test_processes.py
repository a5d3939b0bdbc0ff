import time

import pytest
import requests
import tinydb

from burnscape.publish.jobs import TinyDBJobManager, close_cluster
from burnscape.publish.processes import WorkflowInputError, WorkflowProcessor
from burnscape.publish.server import workflows_dir

from .conftest import serve_in_thread, write_burned_zarr

TIMEOUT = 60
SMALL_BBOX = [535000, 4378000, 541000, 4384000]


@pytest.fixture(scope="module")
def processor():
    return WorkflowProcessor(
        {"name": "burnscape-workflow", "workflows_dir": str(workflows_dir())}
    )


def execute(server, inputs, **headers):
    return requests.post(
        f"{server.url}/processes/burnscape-workflow/execution",
        json={"inputs": inputs},
        headers=headers,
        timeout=TIMEOUT,
    )


def test_process_is_described_with_registered_workflows(live_server):
    listing = requests.get(
        f"{live_server.url}/processes", params={"f": "json"}, timeout=TIMEOUT
    )
    assert [p["id"] for p in listing.json()["processes"]] == ["burnscape-workflow"]
    process = requests.get(
        f"{live_server.url}/processes/burnscape-workflow",
        params={"f": "json"},
        timeout=TIMEOUT,
    ).json()
    assert process["jobControlOptions"] == ["async-execute"]
    assert "chrome2-2018" in process["inputs"]["workflow"]["schema"]["enum"]


def test_prepare_builds_a_validated_workflow_in_the_job_folder(processor, tmp_path):
    workflow = processor.prepare(
        {
            "workflow": "chrome2-2018",
            "bbox": SMALL_BBOX,
            "start": "2018-01-01",
            "z_threshold": 2.5,
        },
        tmp_path / "job",
    )
    assert workflow.outputs.folder == str(tmp_path / "job")
    assert workflow.region.bbox == tuple(float(v) for v in SMALL_BBOX)
    assert str(workflow.time.start) == "2018-01-01"
    assert workflow.detector.z_threshold == 2.5


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"workflow": "../../etc/passwd"}, "must be one of"),
        ({}, "must be one of"),
        ({"workflow": "chrome2-2018", "outputs": "/tmp"}, "unknown input"),
        ({"workflow": "chrome2-2018", "start": 20180101}, "date"),
        ({"workflow": "chrome2-2018", "start": "2018-02-30"}, "not a date"),
        (
            {"workflow": "chrome2-2018", "start": "2019-01-01", "end": "2018-01-01"},
            "before",
        ),
        ({"workflow": "chrome2-2018", "bbox": [0, 0, 1, 1]}, "inside the workflow"),
        ({"workflow": "chrome2-2018", "bbox": [1, 2, 3]}, "4 finite numbers"),
        (
            {"workflow": "chrome2-2018", "bbox": [540000, 4380000, 530000, 4385000]},
            "minx < maxx",
        ),
        ({"workflow": "chrome2-2018", "detector": "magic"}, "must be one of"),
        ({"workflow": "chrome2-2018", "detector": "firehr"}, "needs weights"),
        ({"workflow": "chrome2-2018", "z_threshold": -1}, "z_threshold"),
        ({"workflow": "chrome2-2018", "z_threshold": True}, "finite number"),
    ],
)
def test_prepare_rejects_bad_inputs(processor, tmp_path, inputs, message):
    with pytest.raises(WorkflowInputError) as info:
        processor.prepare(inputs, tmp_path)
    assert message in info.value.message


def test_bad_execution_requests_are_400_and_create_no_job(live_server):
    before = requests.get(
        f"{live_server.url}/jobs", params={"f": "json"}, timeout=TIMEOUT
    )
    assert execute(live_server, {"workflow": "nope"}).status_code == 400
    assert (
        execute(live_server, {"workflow": "chrome2-2018", "bbox": "x"}).status_code
        == 400
    )
    for body in (b"[1, 2]", b"not json", b'{"inputs": 5}'):
        response = requests.post(
            f"{live_server.url}/processes/burnscape-workflow/execution",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=TIMEOUT,
        )
        assert response.status_code == 400, body
    unknown = requests.post(
        f"{live_server.url}/processes/nope/execution",
        json={"inputs": {}},
        timeout=TIMEOUT,
    )
    assert unknown.status_code == 404
    after = requests.get(
        f"{live_server.url}/jobs", params={"f": "json"}, timeout=TIMEOUT
    )
    assert len(after.json()["jobs"]) == len(before.json()["jobs"])


@pytest.mark.parametrize("suffix", ["", "/results"])
def test_unknown_job_is_404(live_server, suffix):
    job = "0b0e7f3a-0000-11f1-9b51-02fc00000001"
    response = requests.get(
        f"{live_server.url}/jobs/{job}{suffix}", params={"f": "json"}, timeout=TIMEOUT
    )
    assert response.status_code == 404
    assert (
        requests.delete(f"{live_server.url}/jobs/{job}", timeout=TIMEOUT).status_code
        == 404
    )


def test_restart_marks_jobs_of_a_dead_local_cluster_failed(tmp_path):
    connection = tmp_path / "jobs.tinydb.json"
    with tinydb.TinyDB(connection) as db:
        db.insert(
            {
                "identifier": "a",
                "status": "running",
                "started": "2024-01-01T00:00:00Z",
                "burnscape_instance": "an-earlier-server",
                "progress": 40,
            }
        )
        db.insert(
            {
                "identifier": "b",
                "status": "successful",
                "progress": 100,
                "started": "2024-01-01T00:00:00Z",
            }
        )
    manager = TinyDBJobManager(
        {
            "name": "x",
            "connection": str(connection),
            "output_dir": str(tmp_path / "jobs"),
        }
    )
    assert manager.get_job("a")["status"] == "failed"
    assert "restarted" in manager.get_job("a")["message"]
    assert manager.get_job("b")["status"] == "successful"


@pytest.mark.slow
@pytest.mark.integration
def test_workflow_job_runs_on_dask_and_survives_restart(chrome2_dir, tmp_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    write_burned_zarr(outputs / "burned.zarr")
    try:
        with serve_in_thread(outputs) as server:
            created = execute(server, {"workflow": "chrome2-2018", "bbox": SMALL_BBOX})
            assert created.status_code == 201, created.text
            location = created.headers["Location"]
            job_id = created.json()["jobID"]
            assert location.endswith(f"/jobs/{job_id}")
            first = requests.get(location, params={"f": "json"}, timeout=TIMEOUT)
            assert first.status_code == 200
            assert first.json()["status"] in ("accepted", "running")

            deadline = time.monotonic() + 300
            while True:
                status = requests.get(
                    location, params={"f": "json"}, timeout=TIMEOUT
                ).json()
                if status["status"] in ("successful", "failed"):
                    break
                assert time.monotonic() < deadline, status
                time.sleep(1)
            assert status["status"] == "successful", status["message"]
            assert status["progress"] == 100

            doomed = execute(server, {"workflow": "chrome2-2018", "bbox": SMALL_BBOX})
            doomed_id = doomed.json()["jobID"]
            dismissed = requests.delete(
                f"{server.url}/jobs/{doomed_id}", timeout=TIMEOUT
            )
            assert dismissed.status_code == 200
            assert dismissed.json()["status"] == "dismissed"
            gone = requests.get(
                f"{server.url}/jobs/{doomed_id}", params={"f": "json"}, timeout=TIMEOUT
            )
            assert gone.status_code == 404

        with serve_in_thread(outputs) as restarted:
            again = requests.get(
                f"{restarted.url}/jobs/{job_id}", params={"f": "json"}, timeout=TIMEOUT
            )
            assert again.status_code == 200 and again.json()["status"] == "successful"
            results = requests.get(
                f"{restarted.url}/jobs/{job_id}/results",
                params={"f": "json"},
                timeout=TIMEOUT,
            )
            assert results.status_code == 200
            body = results.json()
            assert body["report"]["workflow"] == "chrome2-2018"
            assert "burned.zarr" in body["files"] and "burnscape.gpkg" in body["files"]
            assert set(body["report"]["timings_s"]) >= {"acquire", "cube", "detect"}
        assert (outputs / "jobs" / job_id / "run.json").is_file()
        deadline = time.monotonic() + 60
        while (outputs / "jobs" / doomed_id).exists() and time.monotonic() < deadline:
            time.sleep(1)
        assert not (outputs / "jobs" / doomed_id).exists()
    finally:
        close_cluster()

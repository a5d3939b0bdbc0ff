"""`burnscape run` around its stages: the cluster, Ctrl-C, one run per folder."""

from __future__ import annotations

import logging
import sys
import types

import pytest
from distributed import LocalCluster

from burnscape import pipeline
from burnscape.config import ClusterConfig

SMALL = {"n_workers": 1, "memory_limit": "1GiB"}


def test_without_gpus_a_cpu_local_cluster_starts(monkeypatch):
    monkeypatch.setattr(pipeline, "local_gpus", lambda: 0)
    with pipeline.open_client(ClusterConfig(**SMALL)) as client:
        workers = client.scheduler_info()["workers"].values()
        assert len(workers) == 1
        assert all(not worker.get("resources") for worker in workers)


def test_gpus_without_dask_cuda_fall_back_to_cpu_workers(monkeypatch, caplog):
    monkeypatch.setattr(pipeline, "local_gpus", lambda: 2)
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # import fails
    with (
        caplog.at_level(logging.WARNING, logger="burnscape.pipeline"),
        pipeline.open_client(ClusterConfig(**SMALL)) as client,
    ):
        assert len(client.scheduler_info()["workers"]) == 1
    assert "dask-cuda is not installed" in caplog.text


def test_gpus_with_dask_cuda_start_gpu_workers(monkeypatch):
    """dask-cuda stands in here (no GPU on CI): the arguments it gets are checked."""
    calls = {}

    def fake_cuda_cluster(**kwargs):
        calls.update(kwargs)
        return LocalCluster(n_workers=1, **kwargs)

    module = types.ModuleType("dask_cuda")
    module.LocalCUDACluster = fake_cuda_cluster  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dask_cuda", module)
    monkeypatch.setattr(pipeline, "local_gpus", lambda: 1)
    with pipeline.open_client(ClusterConfig(memory_limit="1GiB")) as client:
        workers = list(client.scheduler_info()["workers"].values())
        assert [worker["resources"] for worker in workers] == [{"GPU": 1}]
    assert calls["resources"] == {"GPU": 1}

    # gpu: off never asks for dask-cuda
    calls.clear()
    off = ClusterConfig(gpu="off", **SMALL)
    with pipeline.open_client(off) as client:
        assert len(client.scheduler_info()["workers"]) == 1
    assert calls == {}


def test_unknown_gpu_setting_is_refused():
    with pytest.raises(ValueError, match="gpu"):
        ClusterConfig(gpu="yes")


def test_counting_gpus_imports_no_torch():
    import subprocess

    code = (
        "import sys; from burnscape.pipeline import local_gpus; n = local_gpus(); "
        "assert 'torch' not in sys.modules; print(n)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 0


def test_cuda_visible_devices_limits_the_gpus(monkeypatch):
    monkeypatch.setattr(pipeline.os, "listdir", lambda path: ["0000:01", "0000:02"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert pipeline.local_gpus() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert pipeline.local_gpus() == 0
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert pipeline.local_gpus() == 2


def test_ctrl_c_ends_in_one_line_and_status_130(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from burnscape import pipeline_cli
    from burnscape.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_cli, "run_workflow", interrupted)
    workflow = pipeline.Path(__file__).parents[1] / "workflows" / "chrome2-2018.yml"
    result = CliRunner().invoke(
        main, ["run", str(workflow), "--outputs", str(tmp_path / "out"), "--no-mirror"]
    )
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.output
    assert "Traceback" not in result.output


def test_a_second_run_on_the_same_outputs_is_refused(tmp_path):
    import multiprocessing

    from burnscape.errors import ConfigError

    folder = tmp_path / "out"
    folder.mkdir()
    workflow = pipeline.Path(__file__).parents[1] / "workflows" / "chrome2-2018.yml"
    config = pipeline_load(workflow)
    with pipeline.outputs_lock(folder):
        # another process (flock is per open file: a second open in this one
        # would be refused too, but a real second run is another process)
        context = multiprocessing.get_context("spawn")
        with context.Pool(1) as pool:
            message = pool.apply(_try_run, (config, str(folder)))
    assert "another burnscape run (pid" in message and str(folder) in message
    with pytest.raises(ConfigError, match="another burnscape run"):
        with pipeline.outputs_lock(folder), pipeline.outputs_lock(folder):
            pass
    with pipeline.outputs_lock(folder):  # released: free again
        pass


def pipeline_load(path):
    from burnscape.config import load_workflow

    return load_workflow(path)


def _try_run(config, folder: str) -> str:
    from burnscape.errors import ConfigError
    from burnscape.pipeline import run_workflow

    try:
        run_workflow(config, outputs=pipeline.Path(folder))
    except ConfigError as err:
        return str(err)
    return "ran"


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_to_the_process_group_prints_no_worker_tracebacks(tmp_path, chrome2_dir):
    """A terminal's Ctrl-C reaches every process of the group, workers included."""
    import os
    import signal
    import subprocess
    import time

    workflow = pipeline.Path(__file__).parents[1] / "workflows" / "chrome2-2018.yml"
    log = tmp_path / "run.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "burnscape.cli", "run", str(workflow)]
            + ["--outputs", str(tmp_path / "out")],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 120
        while "Dask dashboard" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the run never started its cluster"
            time.sleep(0.1)
        time.sleep(1.0)  # the workers are busy with the cube
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 130
    output = log.read_text()
    assert "Traceback" not in output, output
    assert output.count("Interrupted:") == 1
    assert "KeyboardInterrupt" not in output


@pytest.mark.parametrize("terminal", [True, False])
def test_acquire_draws_a_download_bar_on_a_terminal_only(
    monkeypatch, capsys, tmp_path, data_dir, terminal
):
    workflow = pipeline_load(
        pipeline.Path(__file__).parents[1] / "workflows" / "chrome2-2018.yml"
    )
    monkeypatch.setattr(pipeline, "_on_terminal", lambda: terminal)
    report = pipeline.RunReport(workflow.name, "r", tmp_path, "now")
    lines: list[str] = []

    items = pipeline._acquire(workflow, tmp_path, data_dir, report, lines.append)

    assert len(items) == 2
    assert lines == [lines[0]] and lines[0].startswith("acquire: 2 items, 12 verified")
    bar = capsys.readouterr().err
    if terminal:  # rich prints the bar's last state where stderr is captured
        assert "landsat8-l1" in bar and "12/12 files" in bar
    else:
        assert "files" not in bar


def test_an_outputs_folder_that_cannot_be_made_is_one_config_error(tmp_path):
    from burnscape.errors import ConfigError

    workflow = pipeline_load(
        pipeline.Path(__file__).parents[1] / "workflows" / "chrome2-2018.yml"
    )
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="cannot create the outputs folder"):
        pipeline.run_workflow(workflow, outputs=tmp_path / "afile" / "sub")

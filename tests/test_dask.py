"""The cells on a dask.distributed cluster: same records as on local worker processes, and a worker lost
mid-run costs only the cells it was running (they are computed again elsewhere; the run completes).

The cluster is a ``LocalCluster`` of worker processes listening on the loopback interface only.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from featbench import run
from featbench.registry import CLASSIFIERS
from featbench.reporting import TIMING_COLUMNS

distributed = pytest.importorskip("distributed", reason="dask.distributed is installed by the 'dev' extra")

EXPERIMENT = """
name = "cluster"
{plugins}
[run]
{run}
[protocol]
repeats = 2
test_size = 0.3
[[datasets]]
name = "digits"
limit_per_class = 30
[[extractors]]
name = "pixels"
size = 8
[[extractors]]
name = "lbp"
size = 16
[[classifiers]]
name = "{classifier}"
C = [0.1, 1.0]
[[classifiers]]
name = "rbf-svm"
C = [1.0, 10.0]
[[tasks]]
name = "classification"
[[tasks]]
name = "retrieval"
"""

# A logistic regression whose process kills itself (SIGKILL, no clean-up) at the 4th fit of the run, once:
# the marker file is created atomically by exactly one fit, wherever it runs.
KILLER = '''
import os
import signal
from pathlib import Path

from sklearn.linear_model import LogisticRegression

from featbench import register_classifier
from featbench.classifiers import LogReg

STATE = Path({state!r})


class KillingLogisticRegression(LogisticRegression):
    def fit(self, X, y, sample_weight=None):
        STATE.mkdir(exist_ok=True)
        (STATE / f"fit-{{os.getpid()}}-{{os.urandom(6).hex()}}").touch()
        if len(list(STATE.glob("fit-*"))) >= 4:
            try:
                fd = os.open(STATE / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return super().fit(X, y, sample_weight)


@register_classifier("test-worker-killer")
class WorkerKiller(LogReg):
    """Logistic regression whose worker process dies once, at the run's 4th fit."""

    def estimator(self, random_state):
        return KillingLogisticRegression(max_iter=2000, random_state=random_state)
'''


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", protocol="tcp") as c:
        yield c


def _experiment(tmp_path: Path, name: str, run_table: str, classifier: str = "logreg", plugins: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(EXPERIMENT.format(run=run_table, classifier=classifier, plugins=plugins)))
    return path


def _table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").drop(columns=TIMING_COLUMNS)


def test_dask_cluster_gives_the_records_of_local_workers(tmp_path, cluster, monkeypatch):
    address = cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    dask = run(_experiment(tmp_path, "dask", f'backend = "dask"\nscheduler = "{address}"'), tmp_path / "dask")
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache-loky"))  # features computed again, locally
    loky = run(_experiment(tmp_path, "loky", 'backend = "loky"\nn_jobs = 2'), tmp_path / "loky")
    assert dask.computed == loky.computed == 2 * 2 * 3  # splits × extractors × (2 classifiers + retrieval)
    assert {r["status"] for r in dask.records} == {"ok"}
    pd.testing.assert_frame_equal(_table(tmp_path / "dask"), _table(tmp_path / "loky"))
    info = json.loads((tmp_path / "dask" / "run.json").read_text())
    assert info["backend"] == "dask"
    # the cells ran on the cluster: its scheduler saw the tasks of every cell
    assert sum(1 for key in cluster.scheduler.task_prefixes if "run_indexed" in key) >= 1


@pytest.mark.parametrize("backend", ["dask", "loky"])
def test_a_worker_lost_mid_run_costs_only_its_cells(tmp_path, backend, cluster):
    state = tmp_path / "state"
    (tmp_path / "killer.py").write_text(KILLER.format(state=str(state)))
    settings = (f'backend = "dask"\nscheduler = "{cluster.scheduler_address}"' if backend == "dask"
                else 'backend = "loky"\nn_jobs = 2')
    cfg = _experiment(tmp_path, backend, settings, "test-worker-killer", 'plugins = ["killer.py"]')
    try:
        result = run(cfg, tmp_path / "out")
        # the same records as a run in one process in which nothing was killed (the marker exists now)
        run(cfg, tmp_path / "again", n_jobs=1, skip_existing=False)
    finally:
        CLASSIFIERS.unregister("test-worker-killer")
    assert (state / "killed").is_file(), "a worker was killed during the run"
    assert result.computed == 12
    assert {r["status"] for r in result.records} == {"ok"}, [r["status"] for r in result.records]
    pd.testing.assert_frame_equal(_table(tmp_path / "out"), _table(tmp_path / "again"))


def test_tls_cluster_with_dask_security_settings(tmp_path):
    """dask's security settings are used as they are: with TLS certificates and ``require-encryption`` in
    dask's configuration, a run reaches a TLS scheduler, and a plain-TCP address is refused in one line."""
    pytest.importorskip("cryptography", reason="temporary TLS certificates need the cryptography package")
    import dask
    from distributed import LocalCluster, Security

    from featbench.errors import ConfigError

    sec = Security.temporary()  # a CA and a certificate signed by it (PEM contents)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", protocol="tls",
                      security=sec, dashboard_address="127.0.0.1:0") as c:
        address = c.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        settings = {"distributed.comm.require-encryption": True, "distributed.comm.tls.ca-file": sec.tls_ca_file,
                    "distributed.comm.tls.client.cert": sec.tls_client_cert,
                    "distributed.comm.tls.client.key": sec.tls_client_key}
        with dask.config.set(settings):
            result = run(_experiment(tmp_path, "tls", f'backend = "dask"\nscheduler = "{address}"'), tmp_path / "tls")
            assert {r["status"] for r in result.records} == {"ok"} and result.computed == 12
            plain = address.replace("tls://", "tcp://")
            with pytest.raises(ConfigError, match="encryption required"):
                run(_experiment(tmp_path, "tcp", f'backend = "dask"\nscheduler = "{plain}"'), tmp_path / "tcp")

"""Flower deployment on loopback: SuperLink + 2 SuperNodes, TLS, SuperNode authentication.

Runs the example app (`examples/flower-app`) for 2 rounds through real `flower-superlink` /
`flower-supernode` processes, and checks that a SuperNode whose key was never registered is
refused. Every process is started in its own session and stopped by PID in `finally`.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'spikefed[flower]')")

from cryptography import x509  # noqa: E402  (flwr depends on cryptography)
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from spikefed.config import load_config  # noqa: E402
from spikefed.report import read_metrics  # noqa: E402
from spikefed.sim import Simulation  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "examples" / "flower-app"
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
ROUNDS = 2
RUN_SET = (f"data.num_clients=2;train.rounds={ROUNDS};model.T=2;model.kwargs.hidden=[16];"
           "data.test_subset=200")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_pki(root: Path) -> None:
    """A test CA, a server certificate for 127.0.0.1, and three SuperNode key pairs."""
    pem = serialization.Encoding.PEM
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(hours=2))
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = (x509.CertificateBuilder().subject_name(_name("spikefed test CA"))
          .issuer_name(_name("spikefed test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(valid[0]).not_valid_after(valid[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP384R1())
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)),
                                       x509.DNSName("localhost")])
    cert = (x509.CertificateBuilder().subject_name(_name(HOST)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid[0]).not_valid_after(valid[1])
            .add_extension(san, critical=False).sign(ca_key, hashes.SHA256()))
    (root / "ca.crt").write_bytes(ca.public_bytes(pem))
    (root / "server.pem").write_bytes(cert.public_bytes(pem))
    (root / "server.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    for node in ("node0", "node1", "rogue"):
        k = ec.generate_private_key(ec.SECP384R1())
        (root / node).write_bytes(k.private_bytes(
            pem, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
        (root / f"{node}.pub").write_bytes(k.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))


class Cluster:
    """Starts Flower processes (each in its own session) and stops them all by PID."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.procs: list[subprocess.Popen] = []

    def start(self, log: str, *args: object) -> subprocess.Popen:
        with open(self.root / log, "w") as out:
            proc = subprocess.Popen([str(a) for a in args], stdout=out, stderr=subprocess.STDOUT,
                                    env=self.env, cwd=self.root, start_new_session=True)
        self.procs.append(proc)
        return proc

    def flwr(self, *args: object, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "flwr"), *map(str, args)], env=self.env,
                              capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in self.procs:  # children the leaders spawned (ClientApp/ServerApp runners)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait_for_port(proc: subprocess.Popen, port: int, log: Path, limit_s: float) -> None:
    """Wait until `proc` accepts TCP connections on `port` (a cold start can take a while:
    the first import of Flower in a fresh environment compiles its bytecode)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"SuperLink exited early:\n{log.read_text()}"
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"SuperLink did not listen on {port} in {limit_s} s:\n{log.read_text()}")


def _wait_for_run(cluster: Cluster, run_id: int, limit_s: float) -> str:
    deadline = time.monotonic() + limit_s
    status = "unknown"
    while time.monotonic() < deadline:
        res = cluster.flwr("ls", "test", "--run-id", run_id, "--format", "json")
        if res.returncode == 0:
            status = json.loads(res.stdout)["runs"][0]["status"]
            if status.startswith("finished"):
                return status
        time.sleep(2)
    return status


@pytest.mark.slow
def test_tls_deployment_with_node_auth(tmp_path) -> None:
    _write_pki(tmp_path)
    port = _free_port()
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "test"\n\n[superlink.test]\naddress = "{HOST}:{port}"\n'
        f'root-certificates = "{tmp_path / "ca.crt"}"\n')
    # the SuperLink starts `flower-superexec` from PATH: put this interpreter's bin first
    # (CI runs `.venv/bin/python -m pytest` without activating the venv)
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0",
           "OMP_NUM_THREADS": "1"}
    cluster = Cluster(tmp_path, env)
    out = tmp_path / "run"
    run_id = None
    try:
        link = cluster.start("superlink.log", BIN / "flower-superlink", "--host", HOST,
                             "--port", port,
                             "--ssl-certfile", tmp_path / "server.pem",
                             "--ssl-keyfile", tmp_path / "server.key",
                             "--ssl-ca-certfile", tmp_path / "ca.crt", "--enable-supernode-auth",
                             "--disable-runtime-dependency-installation",
                             "--database", tmp_path / "state.db")
        _wait_for_port(link, port, tmp_path / "superlink.log", limit_s=240)
        for node in ("node0", "node1"):  # register both keys (retry while the link starts)
            for _ in range(120):
                reg = cluster.flwr("supernode", "register", tmp_path / f"{node}.pub", "test")
                if reg.returncode == 0:
                    break
                time.sleep(0.5)
            assert reg.returncode == 0, reg.stdout + reg.stderr
        supernode = [BIN / "flower-supernode", "--superlink", f"{HOST}:{port}",
                     "--root-certificates", tmp_path / "ca.crt"]
        for i in range(2):
            cluster.start(f"node{i}.log", *supernode, "--port", _free_port(),
                          "--auth-supernode-private-key", tmp_path / f"node{i}",
                          "--node-config", f"partition-id={i} num-partitions=2")
        rogue = cluster.start("rogue.log", *supernode, "--port", _free_port(),
                              "--auth-supernode-private-key", tmp_path / "rogue",
                              "--node-config", "partition-id=0 num-partitions=2",
                              "--max-retries", "1", "--max-wait-time", "20")
        res = cluster.flwr("run", APP, "test", "--format", "json", "--run-config",
                           f"set='{RUN_SET}' out-dir='{out}' node-wait=240.0")
        assert res.returncode == 0, res.stdout + res.stderr
        run_id = json.loads(res.stdout)["run-id"]
        status = _wait_for_run(cluster, run_id, limit_s=420)
        if status != "finished:completed":
            logs = cluster.flwr("log", run_id, "test", "--show")
            pytest.fail(f"run ended as {status!r}:\n{logs.stdout[-4000:]}")
        records = read_metrics(out / "metrics.jsonl")
        assert [r["round"] for r in records] == list(range(1, ROUNDS + 1))
        assert all(r["uploads"] == 2 and r["rejected"] == [] for r in records)
        assert (out / "server_model.pt").is_file()
        # the same experiment in process gives the same rounds (same clients, same numbers)
        cfg = load_config(APP / "spikefed_app" / "experiment.yaml", RUN_SET.split(";"))
        Simulation(cfg, tmp_path / "in-process").run()
        for got, want in zip(records, read_metrics(tmp_path / "in-process" / "metrics.jsonl"),
                             strict=True):
            for key in ("bytes_up", "bytes_down", "server_acc", "server_loss"):
                assert got[key] == pytest.approx(want[key], rel=1e-6), key
        assert rogue.wait(60) != 0
        refused = (tmp_path / "rogue.log").read_text()
        assert "Failed to activate SuperNode" in refused, refused[-2000:]
    finally:
        cluster.stop()

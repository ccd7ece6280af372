"""systemd/moorage.service: systemd's own checks pass, and the real `moorage serve` works under its sandbox.

systemd is not PID 1 on every machine that runs these tests, so where no manager runs, scripts/unit-sandbox.py
rebuilds the unit's sandbox (namespaces, mounts, a dynamic uid, capabilities, seccomp) from the unit file; where
one runs, `systemd-run` starts moorage with the unit's own [Service] lines. Either way a smoke suite goes through
HTTP, so hardening that breaks psutil, the Docker socket or Python is caught here, not on a host.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import psutil
import pytest

from moorage.access.keys import hash_key

from ..helpers import ROOT, TEST_IMAGE, TEST_LABEL, free_port, get_json, plain_key

UNIT = ROOT / "systemd" / "moorage.service"
SANDBOX = ROOT / "scripts" / "unit-sandbox.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-seccomp; the unit's venv is made from it too
INSTALLED = "/opt/moorage/venv/bin/moorage"  # where README installs moorage, as ExecStart names it
INSTALLED_CONFIG = "/etc/moorage/config.toml"
MAX_EXPOSURE = 2.0
SYSTEMD_DIRS = (Path("/var/lib"), Path("/var/log"))  # where systemd makes StateDirectory= and LogsDirectory=
# Outside /tmp, /root and /home, which the unit hides from moorage.
WORK = Path(os.environ.get("MOORAGE_TEST_STATE", "/var/lib/moorage-test"))
# [Service] keys this test applies itself, beside those scripts/unit-sandbox.py applies.
APPLIED_HERE = {
    "Type": "notify: READY=1 must reach the notify socket once moorage listens",
    "NotifyAccess": "main: the notifications must come from the main pid",
    "WatchdogSec": "WATCHDOG_USEC is set from it and WATCHDOG=1 must arrive",
    "ExecStart": "run as written, with the test's venv and config in place of /opt/moorage/venv and /etc/moorage",
    "ExecReload": "run with $MAINPID; moorage reloads and keeps answering",
    "TimeoutStopSec": "SIGTERM must end moorage, with status 0, within it",
}
NOT_REPRODUCIBLE = {
    "Restart": "restarting is the service manager's, and none runs here",
    "RestartSec": "restarting is the service manager's, and none runs here",
    "RestartPreventExitStatus": "restarting is the service manager's, and none runs here",
}


def describe() -> dict[str, Any]:
    """The unit's [Service] lines (parsed by the sandbox script, which applies them) and the keys it applies."""
    out = subprocess.run([SYSTEM_PYTHON, str(SANDBOX), "describe", str(UNIT)], capture_output=True, check=True)
    found: dict[str, Any] = json.loads(out.stdout)
    return found


def service(key: str) -> str:
    [value] = [value for name, value in describe()["service"] if name == key]
    return str(value)


def seconds(span: str) -> float:
    """A systemd time span of the forms the unit uses: `30`, `30s`, `2min`."""
    match = re.fullmatch(r"(\d+)\s*(s|min)?", span)
    assert match, f"time span {span!r} not understood here"
    return int(match[1]) * (60 if match[2] == "min" else 1)


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart's binary at the project's venv: systemd-analyze checks that the binary exists."""
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED} " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED} ", f"ExecStart={ROOT / '.venv/bin/moorage'} "))
    return copy


def test_systemd_analyze_verify_passes(unit_copy: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(unit_copy)], capture_output=True, text=True)
    # verify exits 0 on an unknown key or a bad value and only warns: any output is a failure.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_security_exposure_is_low_and_recorded_in_readme(unit_copy: Path) -> None:
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit_copy)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    [figure] = re.findall(r"Overall exposure level for moorage\.service: (\d+\.\d)", out)
    assert float(figure) <= MAX_EXPOSURE
    section = (ROOT / "README.md").read_text().split("## Running under systemd", 1)[1].split("\n## ", 1)[0]
    assert f"exposure level of {figure}" in section


def test_every_service_key_is_applied_or_said_not_reproducible() -> None:
    unit = describe()
    keys = {key for key, _ in unit["service"]}
    unchecked = keys - set(unit["applied"]) - APPLIED_HERE.keys() - NOT_REPRODUCIBLE.keys()
    assert not unchecked, f"neither applied by the sandbox test nor listed as not reproducible: {sorted(unchecked)}"


def manager_runs() -> bool:
    """Whether systemd runs here as the service manager (`degraded` still runs units)."""
    if not shutil.which("systemctl"):
        return False
    state = subprocess.run(["systemctl", "is-system-running"], capture_output=True, text=True).stdout.strip()
    return state in ("running", "degraded")


@dataclass
class Sandboxed:
    """moorage under the unit's sandbox: its main pid, where it listens, how the manager would reload and stop it."""

    url: str
    pid: int
    log: Path
    logs: Path  # LogsDirectory=
    notify: socket.socket | None = None  # the notify socket, when the test plays the manager
    proc: subprocess.Popen[bytes] | None = None
    unit_name: str = ""
    heard: list[str] = field(default_factory=list)

    def hear(self, timeout: float) -> str:
        """The next notification, checked to come from the main pid (NotifyAccess=main)."""
        assert self.notify is not None and self.proc is not None
        self.notify.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                data, ancillary, _, _ = self.notify.recvmsg(256, socket.CMSG_SPACE(12))
                break
            except TimeoutError:
                assert self.proc.poll() is None, f"exited with {self.proc.returncode}: {self.output()}"
                assert time.monotonic() < deadline, f"no notification within {timeout}s: {self.output()}"
        [(level, kind, creds)] = ancillary
        assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
        assert int.from_bytes(creds[:4], "little") == self.pid
        self.heard.append(data.decode())
        return self.heard[-1]

    def reload(self) -> None:
        if self.unit_name:
            subprocess.run(["systemctl", "reload", self.unit_name], check=True)
        else:
            subprocess.run(shlex.split(service("ExecReload").replace("$MAINPID", str(self.pid))), check=True)

    def stop(self, timeout: float) -> int:
        """SIGTERM, as systemctl stop sends it; the exit status, which must come within `timeout`."""
        if self.unit_name:
            subprocess.run(["systemctl", "stop", self.unit_name], check=True, timeout=timeout + 5)
            result = subprocess.run(
                ["systemctl", "show", "-P", "ExecMainStatus", self.unit_name], capture_output=True, text=True
            )
            return int(result.stdout.strip() or "0")
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        if self.unit_name:
            cmd = ["journalctl", "--no-pager", "-o", "cat", "-u", self.unit_name]
            return subprocess.run(cmd, capture_output=True, text=True).stdout
        return self.log.read_text(errors="replace")


def exec_start(venv: Path, config: Path) -> list[str]:
    """ExecStart as written, with the test's venv and config where README installs them."""
    argv = shlex.split(service("ExecStart"))
    assert argv[0] == INSTALLED and INSTALLED_CONFIG in argv
    # The venv has no console script (see venv_for_unit): its python runs the same entry point.
    return [
        str(venv / "bin" / "python"),
        "-m",
        "moorage",
        *(str(config) if a == INSTALLED_CONFIG else a for a in argv[1:]),
    ]


def venv_for_unit(work: Path) -> Path:
    """A venv of Debian's python3 that reads a copy of the project's packages and code. The project's own .venv
    cannot serve: its interpreter may live under /root (pyenv), which ProtectHome= hides, and the checkout itself
    may be under /tmp or a home, which PrivateTmp= and ProtectHome= hide; README installs under /opt."""
    code = installed_copy(work / "code")
    venv = work / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    [site] = venv.glob("lib/python3*/site-packages")
    (site / "moorage-project.pth").write_text(f"import site; site.addsitedir({str(code)!r})\n")
    return venv


def installed_copy(target: Path) -> Path:
    """The project's site-packages, linked file by file where the file system allows (it is quick), with the
    editable install of moorage pointed at a copy of src/ (copied: a snapshot, and small). Nothing may write into
    the linked files: they are the project's own."""
    shutil.copytree(sysconfig.get_paths()["purelib"], target, copy_function=link_or_copy, symlinks=True)
    shutil.copytree(ROOT / "src", target.parent / "src")
    for editable in target.glob("__editable__.moorage-*.pth"):
        editable.unlink()  # a link to the project's own file: unlinked, not rewritten
        editable.write_text(f"{target.parent / 'src'}\n")
    return target


def link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def start_in_sandbox(work: Path, port: int, command: list[str]) -> Sandboxed:
    """unit-sandbox.py, with the test as the service manager: notify socket, watchdog period, stop."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    address = f"moorage-unit-test-{uuid.uuid4().hex}"
    notify.bind(f"\0{address}")  # abstract: reachable from the sandbox's own mount namespace
    env = {
        **os.environ,
        "NOTIFY_SOCKET": f"@{address}",
        "WATCHDOG_USEC": str(int(seconds(service("WatchdogSec")) * 1e6)),
    }
    leave = [f"--leave={key}" for key in (*APPLIED_HERE, *NOT_REPRODUCIBLE)]
    dirs = [f"--state-dir={work / 'state'}", f"--logs-dir={work / 'logs'}"]
    log = work / "moorage.log"
    # It runs itself again and reads the unit inside the sandbox, where a checkout under /tmp or a home is
    # out of sight: both are copied beside the test's venv.
    sandbox = Path(shutil.copy2(SANDBOX, work / SANDBOX.name))
    unit = Path(shutil.copy2(UNIT, work / UNIT.name))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(sandbox), "run", str(unit), *dirs, *leave, "--", *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return Sandboxed(f"http://127.0.0.1:{port}", proc.pid, log, work / "logs", notify=notify, proc=proc)


def start_with_systemd(name: str, port: int, command: list[str]) -> Sandboxed:
    """systemd-run with every [Service] line of the unit, but ExecStart (the command) and the directories' names:
    a moorage installed on the host keeps its own."""
    renamed = ("ExecStart", "StateDirectory", "LogsDirectory")
    props = [f"--property={key}={value}" for key, value in describe()["service"] if key not in renamed]
    props += [f"--property=StateDirectory={name}", f"--property=LogsDirectory={name}"]
    # Type=notify: systemd-run returns once moorage said READY=1.
    subprocess.run(["systemd-run", f"--unit={name}", "--collect", *props, "--", *command], check=True, timeout=30)
    pid = subprocess.run(["systemctl", "show", "-P", "MainPID", name], capture_output=True, text=True, check=True)
    logs = SYSTEMD_DIRS[1] / name
    return Sandboxed(f"http://127.0.0.1:{port}", int(pid.stdout), logs / "moorage.log", logs, unit_name=name)


@pytest.fixture
def work() -> Iterator[Path]:
    path = WORK / f"unit-{uuid.uuid4().hex[:12]}"
    for sub in ("", "state", "logs"):
        (path / sub).mkdir(mode=0o755, parents=True)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def under_unit(work: Path) -> Iterator[Sandboxed]:
    """moorage started under the unit's sandbox with a config holding a test key, stopped after the test."""
    port = free_port()
    name = f"moorage-unit-test-{work.name}" if manager_runs() else ""
    logs = SYSTEMD_DIRS[1] / name if name else work / "logs"
    config = work / "config.toml"
    key = hash_key(plain_key("unit-admin"))
    config.write_text(
        f'[server]\nport = {port}\n[[auth.api_keys]]\nname = "unit-admin"\nrole = "admin"\nsha256 = "{key}"\n'
        f'[audit]\npath = "{logs / "audit.log"}"\n[metrics]\ninterval = 0.5\n'
    )
    # As README installs it: root's, readable by the service's dynamic user through the docker group only.
    os.chown(config, 0, grp.getgrnam("docker").gr_gid)
    config.chmod(0o640)
    command = exec_start(venv_for_unit(work), config)
    daemon = start_with_systemd(name, port, command) if name else start_in_sandbox(work, port, command)
    try:
        yield daemon
    finally:
        if name:
            subprocess.run(["systemctl", "stop", name], capture_output=True)
            for base in SYSTEMD_DIRS:  # DynamicUser=: the directories are in private/, reached by a symlink
                (base / name).unlink(missing_ok=True)
                shutil.rmtree(base / "private" / name, ignore_errors=True)
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
        if daemon.notify is not None:
            daemon.notify.close()


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


async def test_moorage_works_under_the_unit_sandbox(
    under_unit: Sandboxed, docker: aiodocker.Docker, case_label: str
) -> None:
    daemon = under_unit
    if daemon.notify is not None:
        assert await asyncio.to_thread(daemon.hear, 20) == "READY=1", daemon.output()
        assert await asyncio.to_thread(daemon.hear, 5) == "WATCHDOG=1"
    # The sandbox holds: a dynamic user in the docker group, no capabilities, no_new_privs, seccomp filters.
    status = proc_status(daemon.pid)
    uid = int(status["Uid"].split()[0])
    assert 61184 <= uid <= 65519 and str(grp.getgrnam("docker").gr_gid) in status["Groups"].split()
    assert {status[c] for c in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {"0000000000000000"}
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "2")

    made: list[str] = []
    async with aiohttp.ClientSession(daemon.url, headers={"X-API-Key": plain_key("unit-admin")}) as session:
        try:
            assert (await get_json(session, "/healthz"))[0] == 200
            assert (await get_json(session, "/readyz"))[0] == 200, daemon.output()
            assert (await get_json(session, "/api/v1/containers"))[0] == 200
            body = {
                "image": TEST_IMAGE,
                "command": ["sh", "-c", "echo unit-smoke; sleep 600"],
                "labels": {TEST_LABEL: case_label},
                "network": "none",  # it needs none, and so does not depend on the engine's bridge
                "start": True,
            }
            async with session.post("/api/v1/containers", json=body) as resp:
                assert resp.status == 201, await resp.text()
                made.append((await resp.json())["data"]["id"])
            await check_container(session, made[0])
            await check_host_metrics(session)
            async with session.delete(f"/api/v1/containers/{made[0]}?force=true") as resp:
                assert resp.status == 200, await resp.text()
            with pytest.raises(aiodocker.DockerError):
                await docker.containers.get(made[0])
        finally:
            for container_id in made:
                with contextlib.suppress(aiodocker.DockerError):
                    await docker.containers.container(container_id).delete(force=True)
    # LogsDirectory= is writable: the audit log is there.
    audit = [json.loads(line) for line in (daemon.logs / "audit.log").read_text().splitlines()]
    assert [(line["method"], line["result"]) for line in audit] == [("POST", 201), ("DELETE", 200)]
    await asyncio.to_thread(daemon.reload)
    async with aiohttp.ClientSession() as session:
        assert (await get_json(session, f"{daemon.url}/healthz"))[0] == 200
    started = time.monotonic()
    code = await asyncio.to_thread(daemon.stop, seconds(service("TimeoutStopSec")))
    assert code == 0 and time.monotonic() - started < seconds(service("TimeoutStopSec"))
    output = daemon.output()
    assert "configuration reloaded" in output and "Traceback" not in output, output
    if daemon.notify is not None:
        while daemon.hear(5) == "WATCHDOG=1":
            pass
        assert daemon.heard[-1] == "STOPPING=1"


async def check_container(session: aiohttp.ClientSession, container_id: str) -> None:
    """Its log line through moorage, and its metrics from a stats stream of the engine."""
    deadline = time.monotonic() + 10
    lines: list[str] = []
    pids = 0
    while time.monotonic() < deadline and not ("unit-smoke" in lines and pids >= 1):
        status, logs = await get_json(session, f"/api/v1/containers/{container_id}/logs?format=json")
        assert status == 200, logs
        lines = [item["line"] for item in logs["data"]["items"]]
        status, metrics = await get_json(session, f"/api/v1/metrics/containers/{container_id}")
        assert status == 200, metrics
        pids = metrics["data"]["pids"]
        await asyncio.sleep(0.2)
    assert "unit-smoke" in lines
    assert pids >= 1 and metrics["data"]["memory"]["usage"] > 0


async def check_host_metrics(session: aiohttp.ClientSession) -> None:
    """psutil works in the sandbox: the host's figures, as the test (outside it) sees them."""
    status, body = await get_json(session, "/api/v1/metrics/resources")
    assert status == 200, body
    data = body["data"]
    assert not data["stale"]
    assert 0 <= data["cpu"]["percent"] <= 100 and len(data["cpu"]["per_core"]) == psutil.cpu_count()
    assert data["memory"]["total"] == psutil.virtual_memory().total
    assert data["disks"]["/"]["total"] == psutil.disk_usage("/").total
    assert data["network"]["rx_bytes"] > 0 and data["uptime_seconds"] > 0

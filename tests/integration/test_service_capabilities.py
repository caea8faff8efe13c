"""The NixOS service runs http-profiler as a dynamic (non-root) user holding only the
capabilities listed in nixos/module.nix. This runs the binary the same way here, as
`nobody` with exactly that list as ambient capabilities, and checks that it captures."""

import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BINARY, ROOT
from test_scheduling import SCHED_BATCH, SCHED_IDLE, policies


def reader_policy(pid):
    return policies(pid).get("http-profiler")

MODULE = ROOT / "nixos" / "module.nix"
# Kernels from 5.11 charge BPF maps to the memory cgroup instead of RLIMIT_MEMLOCK, so
# CAP_SYS_RESOURCE matters only before; a container may lack it in its bounding set.
ONLY_FOR_OLD_KERNELS = {"CAP_SYS_RESOURCE"}


def module_capabilities():
    text = MODULE.read_text()
    block = re.search(r"capabilities = \[(.*?)\];", text, re.S)
    assert block, f"no `capabilities = [ ... ];` list in {MODULE}"
    caps = re.findall(r'"(CAP_[A-Z_]+)"', block.group(1))
    assert caps, f"the capability list in {MODULE} is empty"
    return caps


def module_nice_limit():
    """RLIMIT_NICE as the module's `LimitNICE = "+N"` sets it (systemd: nice N is 20 - N)."""
    m = re.search(r'LimitNICE = "\+(\d+)";', MODULE.read_text())
    assert m, f"no `LimitNICE = \"+N\";` in {MODULE}"
    return 20 - int(m.group(1))


def bounding_set():
    status = Path("/proc/self/status").read_text()
    mask = int(re.search(r"^CapBnd:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    decoded = subprocess.run(["capsh", f"--decode={mask:x}"], capture_output=True, text=True, check=True).stdout
    return {c.upper() for c in decoded.split("=", 1)[1].strip().split(",")}


def run_as_nobody(caps, workdir, port, nice_limit=None):
    """Starts the profiler as nobody with `caps` (ambient), and RLIMIT_NICE `nice_limit`
    when one is given; returns (process, stderr path)."""
    names = ",".join(c.lower() for c in caps)
    out, err = workdir / "events.jsonl", workdir / "stderr"
    command = f"exec {BINARY} --output {out} --port {port}"
    limit = [] if nice_limit is None else ["prlimit", f"--nice={nice_limit}:{nice_limit}"]
    proc = subprocess.Popen(
        limit + [
            "capsh",
            f"--caps={names}+eip cap_setuid,cap_setgid+ep",
            "--keep=1",
            "--user=nobody",
            f"--caps={names}+eip",
            f"--addamb={names}",
            "--",
            "-c",
            command,
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(err, "w"),
    )
    return proc, err


@pytest.fixture
def nobody_dir():
    if shutil.which("capsh") is None:
        pytest.fail("capsh is missing: run `make setup` (Debian package libcap2-bin)")
    d = Path(tempfile.mkdtemp(prefix="http-profiler-caps-"))
    os.chmod(d, 0o755)
    shutil.chown(d, "nobody")
    yield d
    shutil.rmtree(d)


def wait_for(predicate, what, proc, err, seconds=30):
    deadline = time.time() + seconds
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"http-profiler exited {proc.returncode} before {what}: {err.read_text()}")
        assert time.time() < deadline, f"timed out waiting for {what}: {err.read_text()}"
        time.sleep(0.05)


def test_module_capabilities_are_enough_without_root(nobody_dir, echo_server):
    wanted = module_capabilities()
    available = bounding_set()
    missing = [c for c in wanted if c not in available]
    assert set(missing) <= ONLY_FOR_OLD_KERNELS, f"this machine cannot grant {missing}"
    caps = [c for c in wanted if c in available]

    _, port = echo_server
    # Raising a hard limit takes CAP_SYS_RESOURCE, which a container may lack (systemd,
    # which sets LimitNICE for the service, has it): then the limit stays as it is here.
    nice_limit = module_nice_limit() if "CAP_SYS_RESOURCE" in available else None
    proc, err = run_as_nobody(caps, nobody_dir, port, nice_limit)
    wait_for(lambda: "capturing" in err.read_text(), "capturing", proc, err)
    # With a limit that permits nice 0 the reader can be raised again, so it runs lowered.
    hard_limit = nice_limit if nice_limit is not None else resource.getrlimit(resource.RLIMIT_NICE)[1]
    expected = SCHED_IDLE if hard_limit >= 20 else SCHED_BATCH
    assert reader_policy(proc.pid) == expected, (hard_limit, err.read_text())
    for path in ("/", "/?second"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
            assert r.status == 200
    time.sleep(0.5)
    proc.terminate()
    assert proc.wait(timeout=30) == 0, err.read_text()

    lines = (nobody_dir / "events.jsonl").read_text().splitlines()
    responses = [line for line in lines if '"status_code":200' in line]
    # Two exchanges, each seen by the client and by the server.
    assert len(responses) == 4, f"expected 4 responses in {len(lines)} lines: {lines}"


def test_the_reader_runs_lowered_only_where_it_can_be_raised_again(nobody_dir, echo_server):
    """SCHED_IDLE is a one-way door without CAP_SYS_NICE or an RLIMIT_NICE permitting
    nice 0: the profiler asks before it lowers the reader, and runs it as SCHED_BATCH
    (yielding) where it could not be raised again."""
    caps = [c for c in module_capabilities() if c in bounding_set()]
    for extra, expected in (([], SCHED_BATCH), (["CAP_SYS_NICE"], SCHED_IDLE)):
        proc, err = run_as_nobody(caps + extra, nobody_dir, echo_server[1], nice_limit=0)
        wait_for(lambda: "capturing" in err.read_text(), "capturing", proc, err)
        assert reader_policy(proc.pid) == expected, (extra, err.read_text())
        proc.terminate()
        assert proc.wait(timeout=30) == 0, err.read_text()


def test_without_tracefs_access_it_cannot_attach(nobody_dir, echo_server):
    """CAP_DAC_READ_SEARCH is in the list because tracefs is root's, mode 0700."""
    caps = [c for c in module_capabilities() if c in bounding_set() and c != "CAP_DAC_READ_SEARCH"]
    proc, err = run_as_nobody(caps, nobody_dir, echo_server[1])
    assert proc.wait(timeout=30) == 2, err.read_text()
    assert "cannot read tracefs" in err.read_text() and "CAP_DAC_READ_SEARCH" in err.read_text(), err.read_text()

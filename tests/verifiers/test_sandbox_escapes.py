"""The escape battery: each attack is contained, and no process of the run is left afterwards.

These run in CI (root, bubblewrap installed by .ci/run); they skip only where bwrap is missing.
A leftover is found by the run's marker, which is in the command line of every process the candidate
forks, and by a token the attack puts in the command line of what it starts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefdata.verifiers.code import CodeResult, code_verify
from prefdata.verifiers.sandbox import Limits

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bubblewrap (bwrap) is not installed: code verification refuses to run")

LIMITS = Limits(wall_s=4.0, cpu_s=3, memory_bytes=512 << 20, processes=24, file_bytes=4 << 20,
                tmpfs_bytes=16 << 20, output_bytes=64 << 10)
PROJECT = Path(__file__).resolve().parents[2]
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]


def _processes_with(token: str) -> list[int]:
    """Host pids (not this one) whose command line holds ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if token.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def run(code: str, *tokens: str, tests: list[str] | None = None, limits: Limits = LIMITS) -> CodeResult:
    """Verify ``code``; assert that nothing of the run (its marker, or ``tokens``) is alive afterwards."""
    result = code_verify(code=code, tests=tests or ADD_TESTS, limits=limits)
    assert result.sandboxed
    assert result.marker
    for token in (result.marker, *tokens):
        assert _processes_with(token) == [], f"processes left behind: {token}"
    return result


def test_a_correct_candidate_passes_in_the_sandbox():
    result = run("def add(a, b):\n    return a + b\n")
    assert result.passed and result.passed_tests == 2


def test_fork_bomb_is_stopped_by_the_process_limit():
    code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    print('fork refused after', n, flush=True)\n"
        "def add(a, b):\n    return a + b\n"
    )
    result = run(code)
    line = next(line for line in result.stdout.splitlines() if line.startswith("fork refused after"))
    assert int(line.split()[-1]) < LIMITS.processes
    # The sleeping children die with the run's PID namespace when the harness ends.
    assert result.wall_s < LIMITS.wall_s


def test_memory_bomb_fails_with_memory_error():
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(32 << 20))\n"
    result = run(code)
    assert not result.passed
    assert "MemoryError" in result.stderr


def test_infinite_loop_is_killed_at_the_wall_clock():
    limits = Limits(wall_s=1.5, cpu_s=30)
    result = run("while True:\n    pass\n", limits=limits)
    assert result.timed_out and not result.passed
    assert result.wall_s < limits.wall_s + 2


def test_child_that_ignores_sigterm_and_spins_is_gone_after_the_run():
    token = "spin-token-7f3a"
    code = (
        "import subprocess, time\n"
        f"subprocess.Popen(['/bin/sh', '-c', 'trap \"\" TERM HUP INT; : {token}; while :; do :; done'])\n"
        "time.sleep(0.3)\n"
        "def add(a, b):\n    return a + b\n"
    )
    # The harness passes and exits while its child still spins: the child must not outlive the run.
    result = run(code, token, limits=Limits(wall_s=4.0, cpu_s=30))
    assert result.passed


def test_spinning_child_and_waiting_parent_are_killed_at_the_deadline():
    token = "spin-token-91c2"
    code = (
        "import subprocess\n"
        f"subprocess.Popen(['/bin/sh', '-c', 'trap \"\" TERM; : {token}; while :; do :; done']).wait()\n"
    )
    result = run(code, token, limits=Limits(wall_s=1.5, cpu_s=30))
    assert result.timed_out and not result.passed


def test_no_network_loopback_of_the_host():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "    print('CONNECTED')\n"
        "except OSError as exc:\n"
        "    print('blocked', type(exc).__name__)\n"
    )
    try:
        result = run(code)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert "blocked" in result.stdout and "CONNECTED" not in result.stdout


def test_no_network_outside():
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "    print('CONNECTED')\n"
        "except OSError as exc:\n"
        "    print('blocked', type(exc).__name__)\n"
        "print('interfaces', sorted(name for _, name in socket.if_nameindex()))\n"
    )
    result = run(code)
    assert "blocked" in result.stdout and "CONNECTED" not in result.stdout
    assert "interfaces ['lo']" in result.stdout


def test_host_files_and_environment_are_not_visible(monkeypatch):
    secret = "host-secret-key-5c1d9e"
    monkeypatch.setenv("SECRET_KEY", secret)
    settings = PROJECT / "config" / "settings.py"
    assert settings.exists()
    code = (
        "import os, glob\n"
        f"for path in ['/etc/shadow', '/etc/passwd', {str(settings)!r}, {str(PROJECT / 'pyproject.toml')!r}]:\n"
        "    try:\n"
        "        open(path).read()\n"
        "        print('READ', path)\n"
        "    except OSError as exc:\n"
        "        print('denied', path, type(exc).__name__)\n"
        "print('env', dict(os.environ))\n"
        "for path in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):\n"
        "    try:\n"
        "        print('proc', path, open(path, 'rb').read())\n"
        "    except OSError:\n"
        "        pass\n"
        f"print('project visible', os.path.exists({str(PROJECT)!r}))\n"
        f"print('home visible', os.path.exists(os.path.expanduser('~root/.bashrc')))\n"
    )
    result = run(code)
    assert "READ" not in result.stdout
    assert result.stdout.count("denied") == 4
    assert secret not in result.stdout
    assert "SECRET_KEY" not in result.stdout
    assert "project visible False" in result.stdout
    assert "home visible False" in result.stdout


def test_writes_outside_the_temporary_directory_fail(tmp_path):
    target = tmp_path / "escaped.txt"
    code = (
        "import os, sys\n"
        f"for path in [{str(target)!r}, '/usr/escaped', '/escaped', {sys.base_prefix + '/escaped'!r}, "
        f"{str(PROJECT / 'escaped')!r}]:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('denied', type(exc).__name__)\n"
        "open('/tmp/inside.txt', 'w').write('fine')\n"
        "print('tmp ok', open('/tmp/inside.txt').read())\n"
    )
    result = run(code)
    assert "WROTE" not in result.stdout
    assert result.stdout.count("denied") == 5
    assert "tmp ok fine" in result.stdout
    assert not target.exists()
    assert not (PROJECT / "escaped").exists()


def test_a_file_larger_than_the_limit_cannot_be_written():
    code = (
        "try:\n"
        "    with open('/tmp/big', 'wb') as f:\n"
        "        for _ in range(64):\n"
        "            f.write(b'x' * (1 << 20))\n"
        "    print('WROTE')\n"
        "except OSError as exc:\n"
        "    print('stopped', type(exc).__name__)\n"
    )
    result = run(code)
    assert "stopped" in result.stdout and "WROTE" not in result.stdout


def test_killing_the_parent_and_everyone_is_contained():
    canary = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        first = run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef add(a, b):\n    return a + b\n")
        second = run("import os\nos.system('kill -9 -1')\ndef add(a, b):\n    return a + b\n")
        assert canary.poll() is None, "a process outside the sandbox was killed"
    finally:
        canary.kill()
        canary.wait()
    # The sandbox's PID 1 ignores signals from inside: the first run completes normally.
    assert first.passed
    # kill -9 -1 kills the harness itself: no pass can be reported.
    assert not second.passed


@pytest.mark.parametrize("code", [
    "import sys\nsys.exit(0)\n",
    "import os\nos._exit(0)\n",
    "print('PASSED')\nprint('ok 0')\nimport os\nos._exit(0)\n",
    # Forge report lines without the nonce.
    "import os, sys\nfd = int(sys.argv[2])\nfor i in range(2):\n    os.write(fd, b'ok %d fake\\n' % i)\nos._exit(0)\n",
    # Patch the runner: exec, compile, os.write and sys.exit no longer do what the harness expects.
    "import builtins, os, sys\nbuiltins.exec = lambda *a, **k: None\nbuiltins.compile = lambda *a, **k: None\n"
    "os.write = lambda fd, data: len(data)\nsys.exit = lambda *a: None\n"
    "def add(a, b):\n    return a - b\n",
    # A wrong function that exits 0 during the test, before the assert can fail.
    "import os\ndef add(a, b):\n    os._exit(0)\n",
])
def test_faking_the_result_does_not_pass(code):
    result = run(code)
    assert not result.passed
    assert result.passed_tests == 0


def test_huge_output_is_capped():
    code = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"
    result = run(code, limits=Limits(wall_s=4.0, output_bytes=64 << 10))
    assert not result.passed
    assert len(result.stdout) <= 64 << 10
    # The pipe is closed at the cap: the run ends by itself, long before its deadline.
    assert not result.timed_out


def _sandbox_cgroups() -> set[Path]:
    return {p for p in Path("/sys/fs/cgroup").glob("*/**/prefdata-sandbox/*") if p.is_dir()
            and not p.name.startswith("probe")}


def test_no_leftover_cgroup_or_process_after_many_runs():
    existing = _sandbox_cgroups()  # a run of a process killed earlier on this machine is not these runs'
    before = time.monotonic()
    results = [run("def add(a, b):\n    return a + b\n") for _ in range(5)]
    assert all(r.passed for r in results)
    assert time.monotonic() - before < 5 * LIMITS.wall_s
    assert _sandbox_cgroups() - existing == set()

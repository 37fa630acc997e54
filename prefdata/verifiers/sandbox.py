"""Run untrusted Python in a bubblewrap sandbox, with resource limits, a wall clock, and nothing left behind.

What a run gets (``sandbox_run``):

- **Namespaces** (``bwrap --unshare-all``): no network (a fresh network namespace has only a loopback of its
  own, so neither the host's listening sockets nor the outside can be reached), its own PID namespace
  (the host's processes cannot be seen or signalled; when its first process ends the kernel kills all the
  others), its own IPC, UTS and user namespace (uid 65534 inside, all capabilities dropped, no further
  user namespaces).
- **Files**: a read-only bind of ``/usr`` (with ``/bin``, ``/lib``, ``/lib64`` as on the host) and of the
  base interpreter's prefix (``sys.base_prefix``: never the virtualenv, the project, ``/etc`` or a home
  directory), a fresh ``/proc`` and ``/dev``, and a size-capped tmpfs on ``/tmp``, the only writable place.
- **Environment**: cleared (``--clearenv``); only ``PATH``, ``HOME`` and ``LANG`` are set.
- **Limits** (``prlimit``, inherited by every process of the run): CPU seconds, address space, file size,
  open files. The number of processes is limited by a pids cgroup of the run where one can be made (root
  with cgroup v1, or v2 with the pids controller delegated); ``RLIMIT_NPROC`` cannot do it for root (root
  is exempt) and counts every process of the user, not of the run, so it is only the fallback for a
  non-root user. The same cgroup caps the run's memory as a whole (``memory`` controller), which the
  per-process address-space limit does not.
- **Wall clock**: at the deadline the launcher's process group is killed (``sh`` → ``prlimit`` → ``bwrap``,
  in a session of its own); ``--die-with-parent`` then kills the sandbox's PID 1, which takes the whole PID
  namespace with it; the run's cgroup, when there is one, is swept as well and must be empty before it is
  removed.
- **Output**: stdout and stderr are read up to a cap each; past it the pipe is closed (the writer gets
  EPIPE) and the result says ``truncated``. A third pipe, the *report* channel (its fd number is given to
  the program as ``argv[2]``), carries what the program's harness wants the parent to see.

Where ``bwrap`` is missing, ``sandbox_run`` refuses (``SandboxUnavailable``) unless the caller allows the
unsandboxed mode (argument ``allow_unsandboxed`` or the environment variable
``PREFDATA_ALLOW_UNSANDBOXED=1``), which keeps only the limits, the cleared environment, a temporary working
directory and the wall clock: the program can then read and write what the worker's user can.
``sandbox_status()`` says which protections are active, for a page to show.
"""

from __future__ import annotations

import functools
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Limits",
    "RunResult",
    "SandboxUnavailable",
    "sandbox_run",
    "sandbox_status",
    "unsandboxed_allowed",
]

MARKER_PREFIX = "prefdata-sandbox:"
CGROUP_ROOT = "/sys/fs/cgroup"
_CGROUP_NAME = "prefdata-sandbox"


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing (or does not work here) and the unsandboxed mode is not allowed."""


@dataclass(frozen=True)
class Limits:
    """The resources of one run."""

    wall_s: float = field(default=10.0, metadata={"help": "wall-clock seconds before the whole run is killed"})
    cpu_s: int = field(default=10, metadata={"help": "CPU seconds of each process (RLIMIT_CPU)"})
    memory_bytes: int = field(default=1 << 30, metadata={"help": "address space of each process (RLIMIT_AS); "
                                                          "also the run's total memory where a cgroup caps it"})
    processes: int = field(default=32, metadata={"help": "processes and threads of the run (pids cgroup)"})
    file_bytes: int = field(default=16 << 20, metadata={"help": "largest file a process may write (RLIMIT_FSIZE)"})
    open_files: int = field(default=64, metadata={"help": "open file descriptors per process (RLIMIT_NOFILE)"})
    tmpfs_bytes: int = field(default=64 << 20, metadata={"help": "size of the writable /tmp"})
    output_bytes: int = field(default=1 << 20, metadata={"help": "stdout and stderr kept, each"})
    report_bytes: int = field(default=64 << 10, metadata={"help": "report channel kept"})


@dataclass(frozen=True)
class RunResult:
    """What one run did. ``returncode`` is None when the run was killed at its deadline."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    report: bytes
    timed_out: bool
    truncated: bool
    wall_s: float
    sandboxed: bool
    marker: str


# -- what is available here -----------------------------------------------------------------------------------


def unsandboxed_allowed() -> bool:
    """Whether the environment allows running code without bubblewrap (``PREFDATA_ALLOW_UNSANDBOXED=1``)."""
    return os.environ.get("PREFDATA_ALLOW_UNSANDBOXED", "").strip().lower() in {"1", "true", "yes"}


def _interpreter() -> tuple[str, str]:
    """(the base interpreter's executable, its prefix): what the sandbox runs and binds read-only.

    The virtualenv's ``python`` is a link to the base interpreter; running the base one with ``-I -S``
    needs nothing of the virtualenv (nor of the project it lives in).
    """
    prefix = os.path.realpath(sys.base_prefix)
    executable = os.path.realpath(sys.executable)
    if not executable.startswith(prefix + os.sep):
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        executable = os.path.join(prefix, "bin", version)
    return executable, prefix


@functools.lru_cache(maxsize=1)
def _bwrap_works() -> str | None:
    """None when a trial sandbox runs ``true``; else why not (a container without user namespaces, ...)."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return "bubblewrap (bwrap) is not installed"
    try:
        done = subprocess.run([bwrap, *_bwrap_args(tmpfs_bytes=1 << 20), "--", "/bin/true"],
                              capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap does not start: {exc}"
    if done.returncode != 0:
        return f"bwrap fails here: {done.stderr.decode(errors='replace').strip()[:300]}"
    return None


def _own_cgroup(controller: str) -> tuple[str, str] | None:
    """(hierarchy mount, this process's path in it) for a v1 ``controller``, or for v2 when controller is ''."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller and controller in controllers.split(","):
            mount = os.path.join(CGROUP_ROOT, controller)
            return (mount, path) if os.path.isdir(mount) else None
        if not controller and controllers == "":
            for mount in (CGROUP_ROOT, os.path.join(CGROUP_ROOT, "unified")):
                if os.path.isfile(os.path.join(mount, "cgroup.controllers")):
                    return mount, path
    return None


@functools.lru_cache(maxsize=1)
def _cgroup_parents() -> dict[str, str]:
    """The writable parent folder of the runs' cgroups per controller: ``pids`` and ``memory`` (v1), or ``v2``.

    Tried by making the parent once; an empty dict when no controller may be used (not root, read-only
    cgroup file system, controller not delegated).
    """
    found: dict[str, str] = {}
    for controller in ("pids", "memory"):
        own = _own_cgroup(controller)
        if own is None:
            continue
        parent = os.path.join(own[0], own[1].lstrip("/"), _CGROUP_NAME)
        try:
            os.makedirs(parent, exist_ok=True)
            probe = os.path.join(parent, "probe-" + secrets.token_hex(4))
            os.mkdir(probe)
            os.rmdir(probe)
        except OSError:
            continue
        found[controller] = parent
    if "pids" not in found:
        own = _own_cgroup("")
        if own is not None:
            parent = os.path.join(own[0], own[1].lstrip("/"), _CGROUP_NAME)
            try:
                os.makedirs(parent, exist_ok=True)
                enabled = Path(parent, "cgroup.controllers").read_text().split()
                if "pids" in enabled:
                    Path(parent, "cgroup.subtree_control").write_text("+pids" + (" +memory" if "memory" in enabled
                                                                                   else ""))
                    found = {"v2": parent}
            except OSError:
                pass
    return found


def sandbox_status(*, allow_unsandboxed: bool | None = None) -> dict:
    """Which protections a run gets on this machine, for a page to show and for a refusal to explain.

    ``mode`` is ``"sandbox"``, ``"unsandboxed"`` (bwrap missing, running allowed) or ``"refused"``;
    ``protections`` lists what is active, ``missing`` what is not.
    """
    allowed = unsandboxed_allowed() if allow_unsandboxed is None else allow_unsandboxed
    problem = _bwrap_works()
    cgroups = _cgroup_parents()
    protections = ["CPU seconds, address space, file size and open files per process (prlimit)",
                   "wall-clock timeout that kills the run's process group",
                   "environment cleared (only PATH, HOME, LANG)"]
    missing: list[str] = []
    if cgroups:
        kind = "cgroup v2" if "v2" in cgroups else "cgroup v1"
        protections.append(f"number of processes of the run ({kind} pids)")
        if "memory" in cgroups or "v2" in cgroups:
            protections.append(f"total memory of the run ({kind} memory)")
    elif os.geteuid() != 0:
        protections.append("number of processes (RLIMIT_NPROC: counts all of this user's processes)")
    else:
        missing.append("number of processes (no writable pids cgroup, and root ignores RLIMIT_NPROC)")
    sandbox = ["no network (own network namespace)", "own PID namespace: every process dies with the run",
               "read-only system (/usr and the interpreter only), no project files, no /etc, no home",
               "a size-capped tmpfs as the only writable place", "no capabilities, uid 65534 inside"]
    if problem is None:
        protections[2:2] = sandbox
        mode = "sandbox"
    else:
        missing[:0] = sandbox
        mode = "unsandboxed" if allowed else "refused"
    return {"mode": mode, "bwrap": shutil.which("bwrap"), "problem": problem, "protections": protections,
            "missing": missing, "unsandboxed_allowed": allowed}


# -- launching ----------------------------------------------------------------------------------------------------


def _bind_system() -> list[str]:
    """/usr read-only, and /bin, /lib, /lib64 as the host has them (links into /usr, or folders)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def _bwrap_args(*, tmpfs_bytes: int) -> list[str]:
    _, prefix = _interpreter()
    args = ["--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--disable-userns",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox",
            "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "LANG", "C.UTF-8", *_bind_system()]
    if not prefix.startswith("/usr/") and prefix != "/usr":
        args += ["--ro-bind", prefix, prefix]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmpfs_bytes), "--tmpfs", "/tmp",
             "--remount-ro", "/", "--chdir", "/tmp"]
    return args


def _prlimit_args(limits: Limits, *, nproc: bool) -> list[str]:
    args = [shutil.which("prlimit") or "prlimit", f"--cpu={limits.cpu_s}", f"--as={limits.memory_bytes}",
            f"--fsize={limits.file_bytes}", f"--nofile={limits.open_files}", "--core=0"]
    if nproc:
        args.append(f"--nproc={limits.processes}")
    return [*args, "--"]


# Joins the run's cgroups ($1 ... up to "--"), then becomes the rest of the command line.
_JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


def _cgroups_make(run_id: str, limits: Limits) -> list[str]:
    """The run's cgroup folders, made and limited (empty list when none can be)."""
    made: list[str] = []
    for controller, parent in _cgroup_parents().items():
        path = os.path.join(parent, run_id)
        try:
            os.mkdir(path)
            if controller in ("pids", "v2"):
                Path(path, "pids.max").write_text(str(limits.processes))
            if controller == "memory":
                Path(path, "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            if controller == "v2" and Path(path, "memory.max").exists():
                Path(path, "memory.max").write_text(str(limits.memory_bytes))
                Path(path, "memory.swap.max").write_text("0") if Path(path, "memory.swap.max").exists() else None
        except OSError:
            _cgroup_remove(path)
            continue
        made.append(path)
    return made


def _cgroup_pids(path: str) -> list[int]:
    try:
        return [int(p) for p in Path(path, "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _cgroup_remove(path: str) -> None:
    """Kill what is left in the cgroup (a fork bomb may still fork: repeat) and remove it."""
    for _ in range(200):
        pids = _cgroup_pids(path)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.005)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _collect(proc: subprocess.Popen, report_fd: int, limits: Limits, deadline: float) -> tuple[dict, bool, bool]:
    """Read stdout, stderr and the report channel until all close or the deadline; (data, timed out, truncated)."""
    caps = {"stdout": limits.output_bytes, "stderr": limits.output_bytes, "report": limits.report_bytes}
    data = {name: bytearray() for name in caps}
    truncated = False
    selector = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    for name, fd in (("stdout", proc.stdout.fileno()), ("stderr", proc.stderr.fileno()), ("report", report_fd)):
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ, name)
    timed_out = False
    try:
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in selector.select(timeout=remaining):
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                buffer = data[key.data]
                if chunk:
                    buffer += chunk[: caps[key.data] - len(buffer)]
                if not chunk or len(buffer) >= caps[key.data]:
                    # Closed, or over the cap: stop reading (a writer past the cap gets EPIPE).
                    truncated = truncated or bool(chunk)
                    selector.unregister(key.fd)
                    if key.data != "report":
                        (proc.stdout if key.data == "stdout" else proc.stderr).close()
    finally:
        selector.close()
    return data, timed_out, truncated


def sandbox_run(*, code: str, args: list[str] | None = None, stdin: bytes = b"", limits: Limits | None = None,
                allow_unsandboxed: bool | None = None) -> RunResult:
    """Run the Python program ``code`` (``python -I -S -c code``) in the sandbox; see the module docstring.

    The program sees ``sys.argv[1]`` = the run's marker (``prefdata-sandbox:<id>``: in the command line of
    every process the program forks, so that a test can look for leftovers), ``sys.argv[2]`` = the report
    channel's fd number, then ``args``. Every process of the run is gone when this returns.
    """
    limits = limits or Limits()
    problem = _bwrap_works()
    allowed = unsandboxed_allowed() if allow_unsandboxed is None else allow_unsandboxed
    if problem is not None and not allowed:
        raise SandboxUnavailable(f"{problem}: code verification refuses to run unsandboxed code "
                                 "(set PREFDATA_ALLOW_UNSANDBOXED=1 or pass allow_unsandboxed=True to accept "
                                 "resource limits only)")
    sandboxed = problem is None
    run_id = secrets.token_hex(8)
    marker = MARKER_PREFIX + run_id
    executable, _ = _interpreter()
    report_read, report_write = os.pipe()
    cgroups = _cgroups_make(run_id, limits)
    workdir = None if sandboxed else tempfile.mkdtemp(prefix="prefdata-run-")
    command = [executable, "-I", "-S", "-c", code, marker, str(report_write), *(args or [])]
    if sandboxed:
        command = [shutil.which("bwrap") or "bwrap", *_bwrap_args(tmpfs_bytes=limits.tmpfs_bytes), "--", *command]
    nproc = not cgroups and os.geteuid() != 0
    command = ["/bin/sh", "-c", _JOIN, "sh", *[os.path.join(c, "cgroup.procs") for c in cgroups], "--",
               *_prlimit_args(limits, nproc=nproc), *command]
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir or "/tmp", "LANG": "C.UTF-8"}
    started = time.monotonic()
    deadline = started + limits.wall_s
    proc = None
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=(report_write,), env=env, cwd=workdir or "/", start_new_session=True,
                                close_fds=True)
        os.close(report_write)
        report_write = -1
        assert proc.stdin is not None
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        data, timed_out, truncated = _collect(proc, report_read, limits, deadline)
        if timed_out:
            _kill_group(proc.pid)
        try:
            returncode = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            returncode = proc.wait()
    finally:
        if proc is not None and proc.poll() is None:
            _kill_group(proc.pid)
            proc.wait()
        if proc is not None:
            # The program's own session (bwrap --new-session) died with bwrap's PID 1; sweep the leader's
            # group in case anything of the launcher outlived it, then the cgroups.
            _kill_group(proc.pid)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None and not stream.closed:
                    stream.close()
        for path in cgroups:
            _cgroup_remove(path)
        os.close(report_read)
        if report_write >= 0:
            os.close(report_write)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return RunResult(returncode=None if timed_out else returncode, stdout=bytes(data["stdout"]),
                     stderr=bytes(data["stderr"]), report=bytes(data["report"]), timed_out=timed_out,
                     truncated=truncated, wall_s=time.monotonic() - started, sandboxed=sandboxed, marker=marker)

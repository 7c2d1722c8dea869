"""The OS jail holds on its own: plain, unrestricted Python inside the worker (the policy switched
off with the test-only `python_policy=False`) reaches no user file, no socket, no other process.

Each probe prints OK or DENIED; a probe that prints OK means a hole in the jail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rlm.errors import SandboxError
from rlm.sandbox import registry
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox, jail
from rlm.sandbox.local.sandbox import jail_refused
from tests.sandbox.conftest import no_calls

pytestmark = pytest.mark.skipif(not jail.probe().available, reason=f"no OS jail here: {jail.probe().problem}")


PROBE_REPORT = """
    print('OK:', repr(result)[:200])
except BaseException as exc:
    print('DENIED:', type(exc).__name__, exc)"""


def attempt(box: LocalSandbox, action: str) -> str:
    """Run `action` as plain Python in the jailed worker; 'OK: ...' if it worked, else 'DENIED: ...'."""
    code = "try:\n" + textwrap.indent(textwrap.dedent(action), "    ") + PROBE_REPORT
    result = box.execute(code, no_calls)
    assert result.error is None, result.error
    return result.output


def test_the_policy_is_really_off_in_these_tests(unrestricted):
    assert attempt(unrestricted, "import os\nresult = os.getpid()").startswith("OK")


def read(path: str | Path) -> str:
    return f"result = open({str(path)!r}, 'rb').read(100)"


@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    """Secret files where a user keeps them: a temp folder, the working directory, the home folder."""
    home_secret = Path.home() / f".rlm-jail-test-{os.getpid()}.env"
    home_secret.write_text("OPENAI_API_KEY=sk-home")
    cwd_secret = Path.cwd() / f".rlm-jail-test-{os.getpid()}.env"
    cwd_secret.write_text("OPENAI_API_KEY=sk-cwd")
    tmp_secret = tmp_path_factory.mktemp("secret") / ".env"
    tmp_secret.write_text("OPENAI_API_KEY=sk-tmp")
    yield {"home": home_secret, "cwd": cwd_secret, "tmp": tmp_secret}
    home_secret.unlink()
    cwd_secret.unlink()


@pytest.mark.parametrize("where", ["home", "cwd", "tmp"])
def test_user_files_are_unreadable(unrestricted, secrets, where):
    assert Path(secrets[where]).read_text().startswith("OPENAI")  # the host can read it
    assert attempt(unrestricted, read(secrets[where])).startswith("DENIED")


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/etc/hostname",
        f"/proc/{os.getpid()}/cmdline",
        f"/proc/{os.getpid()}/environ",
        f"/proc/{os.getpid()}/cwd/pyproject.toml",
        "/proc/self/environ",
        "/proc/1/cmdline",
        "/sys/kernel/hostname" if os.path.exists("/sys/kernel/hostname") else "/sys/kernel/osrelease",
        "/dev/mem",
    ],
)
def test_system_and_host_process_files_are_unreadable(unrestricted, path):
    assert attempt(unrestricted, read(path)).startswith("DENIED")


def test_folders_cannot_be_listed(unrestricted):
    for folder in ("/", "/tmp", str(Path.home()), str(Path.cwd()), "/proc"):
        assert attempt(unrestricted, f"import os\nresult = os.listdir({folder!r})").startswith("DENIED"), folder


def test_site_packages_stay_closed(unrestricted):
    import dspy

    assert attempt(unrestricted, read(dspy.__file__)).startswith("DENIED")


def test_site_packages_inside_the_standard_library_folder_stay_closed(unrestricted):
    import sysconfig

    inside = Path(os.__file__).parent / "site-packages"
    files = sorted(inside.glob("*/__init__.py")) if inside.is_dir() else []
    if not files or sysconfig.get_paths()["stdlib"] != str(Path(os.__file__).parent):
        pytest.skip("this Python keeps no site-packages inside its standard library folder")
    assert files[0].read_bytes() is not None  # the host can read it
    assert attempt(unrestricted, read(files[0])).startswith("DENIED")
    assert attempt(unrestricted, read(Path(os.__file__).parent / "textwrap.py")).startswith("OK")


@pytest.mark.parametrize(
    "action",
    [
        "result = open('/tmp/rlm-jail-written', 'w').write('x')",
        "result = open('/rlm-jail-written', 'w').write('x')",
        "import os\nresult = os.mkdir('/tmp/rlm-jail-dir')",
        "import os\nresult = os.symlink('/etc/passwd', '/tmp/rlm-jail-link')",
        "import os\nresult = os.chmod('/tmp', 0o777)",
        "import os\nresult = os.truncate('/etc/hostname', 0)",
        "import os\nresult = os.mkfifo('/tmp/rlm-jail-fifo')",
    ],
    ids=["write-tmp", "write-root", "mkdir", "symlink", "chmod", "truncate", "mkfifo"],
)
def test_nothing_is_writable(unrestricted, action):
    assert attempt(unrestricted, action).startswith("DENIED")
    for leftover in ("/tmp/rlm-jail-written", "/rlm-jail-written", "/tmp/rlm-jail-dir", "/tmp/rlm-jail-fifo"):
        assert not os.path.exists(leftover)


@pytest.fixture
def listener():
    """A TCP listener on 127.0.0.1 that logs every connection it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[1])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def test_no_tcp_connection_reaches_a_local_listener(unrestricted, listener):
    port, accepted = listener
    outcome = attempt(unrestricted, f"import socket\nresult = socket.create_connection(('127.0.0.1', {port}), 2)")
    assert outcome.startswith("DENIED")
    time.sleep(0.3)
    assert accepted == []


@pytest.mark.parametrize(
    "action",
    [
        "import socket\nu = socket.socket(type=socket.SOCK_DGRAM)\nresult = u.sendto(b'x', ('127.0.0.1', 9))",
        "import socket\ns = socket.socket()\nresult = s.bind(('127.0.0.1', 0))",
        "import socket\nresult = socket.socket(socket.AF_INET6)",
        "import socket\nresult = socket.socket(socket.AF_UNIX)",
        "import socket\nresult = socket.socketpair()",
        "import socket\nresult = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)",
        "import socket\nresult = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
    ],
    ids=["udp", "tcp-bind", "ipv6", "unix", "socketpair", "netlink", "packet"],
)
def test_no_socket_of_any_kind(unrestricted, action):
    assert attempt(unrestricted, action).startswith("DENIED")


def test_a_named_unix_socket_of_the_host_is_unreachable(unrestricted, tmp_path_factory):
    path = tmp_path_factory.mktemp("sock") / "s"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    try:
        code = f"import socket\ns = socket.socket(socket.AF_UNIX)\nresult = s.connect({str(path)!r})"
        assert attempt(unrestricted, code).startswith("DENIED")
    finally:
        server.close()


def test_no_signal_reaches_the_host(unrestricted):
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        pid = os.getpid()
        for action in (
            f"import os\nresult = os.kill({pid}, 10)",
            "import os\nresult = os.kill(-1, 10)",
            f"import os\nresult = os.killpg(os.getpgid({pid}), 10)",
            f"import os, signal\nresult = signal.pidfd_send_signal(os.pidfd_open({pid}), 10)",
        ):
            attempt(unrestricted, action)
        time.sleep(0.2)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert received == []


@pytest.mark.parametrize(
    "action",
    [
        "import os\nresult = os.fork()",
        "import subprocess\nresult = subprocess.run(['/bin/true'])",
        "import os\nresult = os.execv('/bin/true', ['true'])",
        "import os\nresult = os.posix_spawn('/bin/true', ['true'], {})",
        "import _thread\nresult = _thread.start_new_thread(print, ())",
    ],
    ids=["fork", "subprocess", "exec", "posix-spawn", "thread"],
)
def test_no_new_process_or_program(unrestricted, action):
    assert attempt(unrestricted, action).startswith("DENIED")


def test_no_new_privileges_and_no_way_back(unrestricted):
    code = """
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    no_new_privs = libc.prctl(39, 0, 0, 0, 0)
    unset_death_signal = libc.prctl(1, 0, 0, 0, 0)
    import resource
    try:
        resource.setrlimit(resource.RLIMIT_AS, (-1, -1))
        raised = True
    except (OSError, ValueError):
        raised = False
    result = (no_new_privs, unset_death_signal, raised)
    """
    assert attempt(unrestricted, code).strip() == "OK: (1, -1, False)"


def test_the_environment_is_empty_and_the_cwd_is_root(unrestricted):
    # LC_CTYPE is Python's own locale coercion (PEP 538) in the worker, not the host's environment.
    code = "import os\nresult = (sorted(set(os.environ) - {'LC_CTYPE'}), os.getcwd())"
    assert attempt(unrestricted, code).strip() == "OK: ([], '/')"


@pytest.mark.parametrize(
    "action",
    [
        "result = libc.unshare(0x10000000)",  # a new user namespace
        "result = libc.ptrace(16, 1, 0, 0)",  # attach to PID 1
        "result = libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)",
        "import os\nresult = os.chroot('/')",
        "import os\nresult = os.setsid()",
    ],
    ids=["unshare", "ptrace", "mount", "chroot", "setsid"],
)
def test_kernel_doors_are_shut(unrestricted, action):
    if action.startswith("result = libc."):
        action = (
            f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n{action}\n"
            "if result != 0:\n    raise OSError(ctypes.get_errno(), 'refused')"
        )
    outcome = attempt(unrestricted, action)
    assert outcome.startswith("DENIED"), outcome


def test_the_worker_still_works_after_the_probes(unrestricted):
    assert attempt(
        unrestricted, "import re, json, hashlib, decimal, datetime\nresult = json.dumps(re.findall('o', 'foo'))"
    ).startswith("OK")


def test_jailed_policy_sandbox_runs_ordinary_steps():
    with LocalSandbox() as box:
        box.load("alpha beta\ngamma")
        assert "landlock-files" in box.jail_layers and "seccomp" in box.jail_layers
        result = box.execute(
            "import re, collections, datetime, statistics, difflib, unicodedata, csv, hashlib, decimal\n"
            "print(collections.Counter(re.findall(r'\\w+', context)).most_common(1), "
            "datetime.datetime.strptime('2024-01-02', '%Y-%m-%d').year, b'\\xe9'.decode('latin-1'))\n"
            # datetime's C code imports `time` through the code's own __import__ for these two
            "day = datetime.date(2024, 3, 5)\nprint(day.strftime('%d/%m'), f'{day:%Y}')",
            no_calls,
        )
        assert result.error is None and result.output == "[('alpha', 1)] 2024 é\n05/03 2024\n"


def test_workers_die_with_a_host_killed_by_sigkill(tmp_path):
    script = tmp_path / "host.py"
    script.write_text(
        "import threading, time\n"
        "from rlm.sandbox.local import LocalSandbox\n"
        "box = LocalSandbox()\n"
        # started from a short-lived thread: the death signal must still follow the host, not the thread
        "t = threading.Thread(target=box.start); t.start(); t.join()\n"
        "print(box._process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    host = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(host.stdout.readline())
        time.sleep(0.3)
        assert _alive(worker_pid), "the worker should outlive the thread that started it"
        host.kill()
        host.wait(5)
        deadline = time.monotonic() + 5
        while _alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker_pid)
    finally:
        host.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or going while we read
        return False


# --- no silent downgrade ----------------------------------------------------------------------------
def test_restricted_refuses_to_start_without_its_jail(monkeypatch):
    monkeypatch.setattr(registry, "_jail_problem", "the kernel has no usable Landlock")
    with pytest.raises(SandboxError) as caught:
        registry.resolve_sandbox_name("restricted")
    message = str(caught.value)
    assert "no usable Landlock" in message and "sandbox='e2b'" in message and "restricted-policy-only" in message


def test_auto_picks_policy_only_with_a_warning_that_names_it(monkeypatch, caplog):
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    monkeypatch.setattr(registry, "_jail_problem", "the kernel has no usable Landlock")
    registry._warned.clear()
    with caplog.at_level("WARNING"):
        assert registry.resolve_sandbox_name("auto") == "restricted-policy-only"
    assert "restricted-policy-only" in caplog.text and "no usable Landlock" in caplog.text


def test_auto_picks_the_jail_where_it_exists(monkeypatch):
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    assert registry.resolve_sandbox_name("auto") == "restricted"


def test_policy_only_is_an_explicit_choice_that_still_runs():
    box = registry.create_sandbox("restricted-policy-only", SandboxLimits())
    try:
        box.start()
        box.load("x")
        assert box.execute("len(context)", no_calls).output == "1\n"
        assert isinstance(box, LocalSandbox) and box.jail_layers in ([], ["network-namespace"])
    finally:
        box.close()


def test_a_worker_that_cannot_enter_the_jail_is_refused_with_the_cause():
    error = jail_refused("landlock_restrict_self failed: [Errno 1] Operation not permitted")
    assert "Operation not permitted" in str(error) and "sandbox='e2b'" in str(error)


# --- holes found by our own attack round, closed at their cause ----------------------------------
def test_system_v_shared_memory_of_the_host_is_unreachable(unrestricted):
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    key = 0x524C4D00 + os.getpid() % 0xFF
    segment = libc.shmget(key, 4096, 0o1600)  # IPC_CREAT | 0600
    assert segment >= 0
    try:
        ctypes.memmove(libc.shmat(segment, None, 0), b"HOST-SECRET", 11)
        code = f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        found = libc.shmget({key}, 0, 0)
        if found < 0:
            raise OSError(ctypes.get_errno(), 'shmget refused')
        result = found
        """
        assert attempt(unrestricted, code).startswith("DENIED")
    finally:
        libc.shmctl(segment, 0, None)  # IPC_RMID


@pytest.mark.parametrize(
    "call",
    [
        "libc.shmget(0, 1 << 20, 0o1600)",  # a new segment that would outlive the worker
        "libc.msgget(0, 0o1600)",
        "libc.semget(0, 1, 0o1600)",
        "libc.mq_open(b'/rlm-probe', 0o100 | 2, 0o600, None)",
        "libc.pipe((ctypes.c_int * 2)())",  # pipes hold kernel memory outside the memory cap
        "libc.inotify_init()",  # watching the host's files change
        f"libc.setpriority(0, {os.getpid()}, 19)",  # the host's scheduling
        f"libc.sched_setaffinity({os.getpid()}, 8, ctypes.byref(ctypes.c_ulong(1)))",
        # prctl(PR_SET_PDEATHSIG, 0) with high bits set in the option, which the kernel ignores
        "libc.syscall(ctypes.c_long(157), ctypes.c_long((1 << 32) | 1), ctypes.c_long(0), 0, 0, 0)",
    ],
    ids=["shm", "msg", "sem", "mqueue", "pipe", "inotify", "setpriority", "affinity", "pdeathsig-high-bits"],
)
def test_ipc_scheduling_and_death_signal_calls_are_refused(unrestricted, call):
    code = f"""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    result = {call}
    if result < 0:
        raise OSError(ctypes.get_errno(), 'refused')
    """
    assert attempt(unrestricted, code).startswith("DENIED")


@pytest.mark.parametrize("command", [8, 10, 15], ids=["F_SETOWN", "F_SETSIG", "F_SETOWN_EX"])
def test_descriptors_cannot_be_pointed_at_another_process_for_signals(unrestricted, command):
    # Landlock scopes signals only from ABI 6; the filter refuses these fcntl commands on any kernel.
    argument = {8: str(os.getpid()), 10: "9", 15: f"struct.pack('ii', 1, {os.getpid()})"}[command]
    code = f"""
    import errno, fcntl, struct
    refusals = set()
    for fd in range(12):
        try:
            fcntl.fcntl(fd, {command}, {argument})
            refusals.add('ACCEPTED')
        except OSError as exc:
            refusals.add(errno.errorcode[exc.errno])
    result = sorted(refusals)
    """
    assert attempt(unrestricted, code).strip() in ("OK: ['EBADF', 'EPERM']", "OK: ['EPERM']")


def test_files_it_may_read_cannot_be_locked_or_leased_against_other_processes(unrestricted):
    import os as host_os

    target = host_os.path.join(host_os.path.dirname(host_os.__file__), "textwrap.py")
    code = f"""
    import fcntl, os, signal
    signal.signal(signal.SIGIO, signal.SIG_IGN)
    fd = os.open({target!r}, os.O_RDONLY)
    refused = []
    lock = lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    lease = lambda: fcntl.fcntl(fd, 1024, fcntl.F_RDLCK)
    for action in (lock, lease):
        try:
            action()
        except OSError:
            refused.append(True)
    if len(refused) != 2:
        result = refused
    else:
        raise PermissionError('both refused')
    """
    assert attempt(unrestricted, code).startswith("DENIED")

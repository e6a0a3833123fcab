"""Shared fixtures: a private pipe run directory, root checks, frames."""

import os
import shutil
import struct
import tempfile

import pytest

try:
    from hypothesis import settings
    settings.register_profile("netmapy", deadline=None, max_examples=60,
                              database=None)
    settings.load_profile("netmapy")
except ImportError:          # pragma: no cover
    pass

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (creates network "
                                "namespaces and raw sockets)")


@pytest.fixture(scope="session", autouse=True)
def private_rundir():
    """Pipes of this test run live in their own directory."""
    d = tempfile.mkdtemp(prefix="netmapy-test-", dir="/dev/shm")
    os.chmod(d, 0o700)
    old = os.environ.get("NETMAPY_RUNDIR")
    os.environ["NETMAPY_RUNDIR"] = d
    yield d
    if old is None:
        os.environ.pop("NETMAPY_RUNDIR", None)
    else:
        os.environ["NETMAPY_RUNDIR"] = old
    shutil.rmtree(d, ignore_errors=True)


def make_frame(i, size=60, dst=b"\x02\x00\x00\x00\x00\x02",
               src=b"\x02\x00\x00\x00\x00\x01", ethertype=0x88B5):
    """A test frame: Ethernet header (local experimental EtherType), then a
    sequence number and a pattern derived from it."""
    head = dst + src + struct.pack("!H", ethertype) + struct.pack("!I", i)
    body = bytes((i + k) & 0xff for k in range(size - len(head)))
    return head + body


def frame_set(n, sizes=(60, 61, 64, 128, 333, 1000, 1514), **kw):
    return [make_frame(i, sizes[i % len(sizes)], **kw) for i in range(n)]


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def unprivileged(argv):
    """argv run with empty capability sets (as root's uid, so files stay
    readable, but with no privilege at all), when we can drop them."""
    import shutil
    if os.geteuid() == 0 and shutil.which("setpriv"):
        return ["setpriv", "--securebits=+noroot,+noroot_locked",
                "--bounding-set=-all", "--inh-caps=-all"] + list(argv)
    return list(argv)


@pytest.fixture(scope="session")
def nogil_example(tmp_path_factory):
    """docs/examples/nogil_forward.pyx compiled as a user would, against the
    netmapy in this tree, and imported."""
    import importlib.util
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    d = tmp_path_factory.mktemp("cyex")
    src = os.path.join(repo, "docs", "examples", "nogil_forward.pyx")
    shutil.copy(src, d / "nogil_forward.pyx")
    import netmapy
    env = dict(os.environ, PYTHONPATH=repo, CFLAGS="-I" + netmapy.get_include())
    out = subprocess.run([sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-q",
                          "nogil_forward.pyx"], cwd=d, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    so = [f for f in os.listdir(d) if f.startswith("nogil_forward") and f.endswith(".so")]
    assert so, os.listdir(d)
    spec = importlib.util.spec_from_file_location("nogil_forward", d / so[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def stop_within(p, sig, seconds=10):
    """Send `sig` to the process p (a Popen with pipes) and collect its
    output; fail (and kill it) if it is still alive `seconds` later.
    Returns (stdout, stderr)."""
    import subprocess
    p.send_signal(sig)
    try:
        return p.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("still running %d s after signal %d; stderr: %s"
                             % (seconds, sig, err[-2000:]))

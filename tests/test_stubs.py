"""The type information netmapy ships: netmapy/core.pyi (the Cython ring
model: Port, Ring, Slot, Batch, Memory) agrees with the built module, and
open(), the names and the errors are typed, checked by mypy's stubtest;
and a user's code type-checks against real types, not Any."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mypy", reason="mypy is installed by tools/setup.sh")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = ["netmapy.core", "netmapy.errors", "netmapy._api", "netmapy.names"]


def _run(argv, cwd):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m"] + argv, capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_stubtest_clean(tmp_path):
    out = _run(["mypy.stubtest"] + MODULES +
               ["--allowlist", os.path.join(REPO, "tests", "stubtest-allowlist.txt"),
                "--mypy-config-file", os.devnull], cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "Success: no issues found in %d modules" % len(MODULES) in out.stdout


def test_user_code_sees_real_types(tmp_path):
    (tmp_path / "user.py").write_text(textwrap.dedent("""\
        import netmapy

        with netmapy.open("pipe:x{1") as p:
            b = p.recv(timeout=1.0)
            reveal_type(p)
            reveal_type(b.lengths())
            reveal_type(p.rx_ring[0])
            n: str = p.tx_ring.head
            netmapy.open(iface="nb-mi0", queue="1")
        """))
    out = _run(["mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), "user.py"],
               cwd=str(tmp_path))
    text = out.stdout
    assert 'Revealed type is "netmapy.core.Port"' in text, text
    assert 'Revealed type is "list[int]"' in text or \
        'Revealed type is "builtins.list[builtins.int]"' in text, text
    assert 'Revealed type is "netmapy.core.Slot"' in text, text
    assert 'user.py:8: error: Incompatible types in assignment (expression has type "int", ' \
           'variable has type "str")' in text, text
    assert 'user.py:9: error: Argument "queue" to "open" has incompatible type "str"' in text, text

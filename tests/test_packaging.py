"""What `pip install .` does: only netmapy and middlebox go into
site-packages (no generic top-level package such as `tools`), every
command's entry point is there, and a machine without libpcap's or
libbpf's development files gets one line naming the Debian package instead
of a compiler error."""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMANDS = ["netmapy", "netmapy-bridge", "nm-offload", "netmapy-nic", "netmapy-lb",
            "netmapy-pipeline", "netmapy-pktgen", "netmapy-bench", "netmapy-lab",
            "netmapy-demo", "netmapy-microbench"]


def _pyproject():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_only_netmapy_and_middlebox_install():
    cfg = _pyproject()
    pkgs = cfg["tool"]["setuptools"]["packages"]
    assert {p.split(".")[0] for p in pkgs} == {"netmapy", "middlebox"}, pkgs
    assert "click>=8.1" in cfg["project"]["dependencies"]
    scripts = cfg["project"]["scripts"]
    assert sorted(scripts) == sorted(COMMANDS)
    for name, target in scripts.items():
        module, _, fn = target.partition(":")
        assert module.split(".")[0] in ("netmapy", "middlebox"), (name, target)
        # the entry point exists and is a click command run the netmapy way
        code = "import %s as m; import sys; sys.exit(m.%s(['--help']))" % (module, fn)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=REPO, timeout=60)
        assert out.returncode == 0 and out.stdout.startswith("Usage: %s " % name), \
            (name, out.stdout[:200], out.stderr[-500:])


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_missing_library_is_one_line_naming_the_package():
    # the real compiler, told not to look in the system's include directories:
    # libpcap's headers are missing for it
    out = subprocess.run([sys.executable, "setup.py", "check-libs"], capture_output=True,
                         text=True, cwd=REPO, env=dict(os.environ, CC="cc -nostdinc"),
                         timeout=120)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines == ["netmapy: libpcap's development files are missing (pcap/pcap.h not "
                     "found): install libpcap-dev (apt-get install libpcap-dev) and build "
                     "again"], out.stderr
    ok = subprocess.run([sys.executable, "setup.py", "check-libs"], capture_output=True,
                        text=True, cwd=REPO, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "libpcap: " in ok.stdout and "libbpf: " in ok.stdout


def test_every_data_file_is_packaged():
    # what `pip install .` copies besides modules: every .pxd/.pyi/.h (for
    # users' cimports and the C the extensions include), the BPF and C
    # sources the middlebox builds, the unit files -- each tracked file must
    # match a package-data glob of the package that holds it
    import fnmatch
    cfg = _pyproject()["tool"]["setuptools"]
    pkgs = set(cfg["packages"])
    data = cfg.get("package-data", {})
    tracked = subprocess.run(["git", "ls-files", "netmapy", "middlebox"], capture_output=True,
                             text=True, cwd=REPO, check=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    missing = []
    for path in tracked:
        if not path.endswith((".pxd", ".pyi", ".h", ".bpf.c", "csrc/mb_kern.c", ".service",
                              "py.typed")):
            continue
        parts = path.split("/")
        # setuptools globs are relative to a package's directory and a '*'
        # does not cross '/': match segment by segment, for every listed
        # package that holds the file
        ok = False
        for k in range(1, len(parts)):
            pkg, rel = ".".join(parts[:k]), parts[k:]
            if pkg not in pkgs:
                continue
            for g in data.get(pkg, []):
                gp = g.split("/")
                if len(gp) == len(rel) and all(fnmatch.fnmatchcase(a, b)
                                               for a, b in zip(rel, gp)):
                    ok = True
        if not ok:
            missing.append(path)
    assert not missing, "not in [tool.setuptools.package-data]: %s" % missing

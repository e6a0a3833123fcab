"""The import rules of docs/architecture.md, checked on the source.

Every Python file is parsed (ast); Cython files (.pyx, .pxd) are read with
a regular expression for ``import``, ``cimport`` and ``from ... (c)import``
lines.  Each rule names the layer, what it may not import and why; a
violation fails with the file, the line and the rule."""

import ast
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: the old module names kept as re-exports for users (never used inside)
MOVED = {
    "netmapy.netns": "netmapy.host.netns",
    "netmapy.rundir": "netmapy.host.rundir",
    "netmapy.iface": "netmapy.host.iface",
    "netmapy.cbpf": "netmapy.host.cbpf",
    "netmapy.xdpprog": "netmapy.backends.xdp.prog",
    "netmapy.netmap_req": "netmapy.backends.netmap.req",
    "netmapy.preflight": "netmapy.backends.netmap.preflight",
    "netmapy.pktgen": "netmapy.tools.pktgen_engine",
}
BACKENDS = ("netmap", "xdp", "packet", "pipe", "pcap")
#: the ring model and the front door: what every backend builds on
CORE = ("netmapy", "netmapy.errors", "netmapy.units", "netmapy.names", "netmapy.core",
        "netmapy.stop", "netmapy._api", "netmapy.backends", "netmapy.includes")
HOST_MAY = ("netmapy.errors", "netmapy.units", "netmapy.host")

_CY = re.compile(r"^\s*(?:from\s+(\.*[\w.]*)\s+c?import\s+(.+)|c?import\s+([\w.,\s]+))")


def module_name(path):
    rel = os.path.relpath(path, REPO)
    mod = re.sub(r"\.(py|pyx|pxd)$", "", rel).replace(os.sep, ".")
    return mod[:-len(".__init__")] if mod.endswith(".__init__") else mod


def _absolute(mod, is_pkg, level, name):
    if not level:
        return name
    parts = mod.split(".")
    base = parts if is_pkg else parts[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def imports(path, text=None):
    """[(line, imported module)] of one source file; ``from X import a``
    counts as importing X and X.a (a may be a module)."""
    if text is None:
        with open(path) as f:
            text = f.read()
    mod = module_name(path)
    is_pkg = os.path.basename(path).startswith("__init__.")
    out = []
    if path.endswith(".py"):
        for node in ast.walk(ast.parse(text, path)):
            if isinstance(node, ast.Import):
                out += [(node.lineno, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(mod, is_pkg, node.level, node.module)
                out.append((node.lineno, base))
                out += [(node.lineno, base + "." + a.name) for a in node.names if a.name != "*"]
        return out
    for i, line in enumerate(text.splitlines(), 1):
        m = _CY.match(line)
        if not m:
            continue
        if m.group(1) is not None:
            dots = len(m.group(1)) - len(m.group(1).lstrip("."))
            base = _absolute(mod, is_pkg, dots, m.group(1).lstrip(".") or None)
            out.append((i, base))
            what = re.sub(r"\bas\s+\w+", "", m.group(2).split("#")[0].replace("(", " "))
            out += [(i, base + "." + n) for n in re.findall(r"[A-Za-z_]\w*", what)]
        else:
            out += [(i, n.strip().split(" ")[0]) for n in m.group(3).split(",") if n.strip()]
    return out


def _under(name, *prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _backend_of(mod):
    for b in BACKENDS:
        if _under(mod, "netmapy.backends." + b):
            return b
    return None


def violations(path, text=None):
    """The rules of docs/architecture.md broken by one file: [(line, rule)]."""
    mod = module_name(path)
    bad = []
    own_backend = _backend_of(mod)
    for line, name in imports(path, text):
        if name in MOVED and mod not in MOVED:
            bad.append((line, "%s is an old name kept for users: import %s"
                        % (name, MOVED[name])))
        if _under(mod, "netmapy") and mod not in MOVED:
            if _under(name, "middlebox", "tools"):
                bad.append((line, "netmapy never imports middlebox or the checkout's tools/"))
        if _under(mod, "netmapy.host"):
            if _under(name, "netmapy") and not _under(name, *HOST_MAY) and name != "netmapy":
                bad.append((line, "the host layer imports nothing above it (%s)" % name))
        if mod in CORE or _under(mod, "netmapy.includes"):
            if _backend_of(name) or _under(name, "netmapy.cli", "netmapy.fastpath",
                                             "netmapy.tools"):
                bad.append((line, "the ring model and the front door do not import a "
                                  "backend's implementation, the loops, the CLI or the "
                                  "tools (%s)" % name))
        if own_backend:
            other = _backend_of(name)
            if other and other != own_backend:
                bad.append((line, "backends do not import each other (%s imports %s)"
                            % (own_backend, other)))
            if _under(name, "netmapy.cli", "netmapy.fastpath", "netmapy.tools",
                      "netmapy._api"):
                bad.append((line, "a backend does not import the front door, the loops, "
                                  "the CLI or the tools (%s)" % name))
        if _under(mod, "netmapy.fastpath") and _backend_of(name):
            bad.append((line, "the ready-made loops work on any Port (%s)" % name))
        if _under(mod, "middlebox") and _under(name, "tools", "netmapy.tools"):
            bad.append((line, "middlebox never imports tools (%s)" % name))
    return bad


def sources():
    for top in ("netmapy", "middlebox"):
        for d, _, files in os.walk(os.path.join(REPO, top)):
            for f in sorted(files):
                if f.endswith((".py", ".pyx", ".pxd")):
                    yield os.path.join(d, f)


def test_the_checker_sees_forbidden_imports():
    """The rules fire on imports that break them (a checker that never
    fires would pass any tree)."""
    p = lambda rel: os.path.join(REPO, rel)
    cases = [
        ("netmapy/core.pyx", "from middlebox.stats import Stats\n"),
        ("netmapy/backends/xdp/port.pyx", "from netmapy.backends.packet cimport PacketPort\n"),
        ("netmapy/backends/packet.pyx", "from netmapy.backends import xdp\n"),
        ("netmapy/host/iface.py", "from netmapy.names import parse_name\n"),
        ("netmapy/host/netns.py", "from .. import core\n"),
        ("netmapy/_api.py", "from .backends.xdp import prog\n"),
        ("middlebox/bridge.py", "from netmapy.tools.lab import Lab\n"),
        ("middlebox/stats.py", "from netmapy import rundir\n"),
        ("netmapy/fastpath.pyx", "from netmapy.backends.pipe cimport PipePort\n"),
    ]
    for rel, src in cases:
        assert violations(p(rel), src), (rel, src)
    assert violations(p("netmapy/host/iface.py"), "from ..errors import InterfaceDown\n") == []
    assert violations(p("middlebox/offload.py"),
                      "from netmapy.backends.xdp.prog import steer_program\n") == []


@pytest.mark.parametrize("path", list(sources()), ids=lambda p: os.path.relpath(p, REPO))
def test_imports_follow_the_layers(path):
    bad = violations(path)
    assert not bad, "\n".join("%s:%d: %s" % (os.path.relpath(path, REPO), line, rule)
                              for line, rule in bad)


def test_moved_names_still_import():
    """The old names (thin re-exports, for code written against them) are
    the new modules themselves."""
    import importlib
    for old, new in MOVED.items():
        try:
            new_mod = importlib.import_module(new)
        except ImportError as e:          # an extension that is not built
            pytest.skip("%s: %s" % (new, e))
        assert importlib.import_module(old) is new_mod, old

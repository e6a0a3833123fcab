"""Build the netmapy extensions.

NETMAPY_DEBUG=1 builds with bounds checks, C asserts and -O0 -g.

The extensions need two C libraries' development files: libpcap (the pcap
backend and the filters) and libbpf (the xdp backend).  They are found with
pkg-config where it can; when one is missing the build stops with one line
naming it and the Debian package that provides it.
"""
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig

from setuptools import setup, Extension
from setuptools.command.build_ext import build_ext
from Cython.Build import cythonize

DEBUG = os.environ.get("NETMAPY_DEBUG") == "1"
INC = ["netmapy/includes", "middlebox/includes"]
CFLAGS = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3", "-g0"]
CFLAGS += ["-Wno-unused-function", "-Wno-unreachable-code"]

#: name -> (pkg-config module, a header it provides, link name, Debian package)
LIBS = {
    "libpcap": ("libpcap", "pcap/pcap.h", "pcap", "libpcap-dev"),
    "libbpf": ("libbpf", "bpf/libbpf.h", "bpf", "libbpf-dev"),
}


def _pkg_config(module):
    """(include dirs, library dirs, libraries) from pkg-config, or None."""
    if shutil.which("pkg-config") is None:
        return None
    p = subprocess.run(["pkg-config", "--cflags", "--libs", module], capture_output=True,
                       text=True)
    if p.returncode != 0:
        return None
    inc, libdirs, libs = [], [], []
    for tok in shlex.split(p.stdout):
        if tok.startswith("-I"):
            inc.append(tok[2:])
        elif tok.startswith("-L"):
            libdirs.append(tok[2:])
        elif tok.startswith("-l"):
            libs.append(tok[2:])
    return inc, libdirs, libs


def _compiler():
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)


def _has_header(header, include_dirs):
    """Whether the C compiler finds ``header`` (its preprocessor, nothing
    built)."""
    cc = _compiler()
    if shutil.which(cc[0]) is None:
        raise SystemExit("netmapy: no C compiler (%s): install one (apt-get install "
                         "build-essential)" % cc[0])
    args = cc + ["-E", "-x", "c", "-"] + ["-I" + d for d in include_dirs] + \
        shlex.split(os.environ.get("CPPFLAGS", "")) + shlex.split(os.environ.get("CFLAGS", ""))
    p = subprocess.run(args, input="#include <%s>\n" % header, capture_output=True, text=True)
    return p.returncode == 0


def find_library(name):
    """Include dirs, library dirs and libraries for one of LIBS; stops the
    build with one line naming the Debian package when it is missing."""
    module, header, link, debian = LIBS[name]
    found = _pkg_config(module)
    inc, libdirs, libs = found if found else ([], [], [link])
    if not _has_header(header, inc):
        raise SystemExit("netmapy: %s's development files are missing (%s not found): install "
                         "%s (apt-get install %s) and build again" % (name, header, debian,
                                                                     debian))
    return inc, libdirs, libs or [link]


class BuildExt(build_ext):
    """build_ext that finds libpcap and libbpf first (so a missing one is one
    clear line, not a compiler error), and builds the BPF programs."""

    def run(self):
        if self.inplace:
            _remove_moved()
        found = {name: find_library(name) for name in LIBS}
        build_bpf()                                  # in place (editable, --inplace)
        if not self.inplace and self.build_lib:
            build_bpf(self.build_lib)                # and into the wheel
        for ext in self.extensions:
            for name in EXT_LIBS.get(ext.name, ()):
                inc, libdirs, libs = found[name]
                ext.include_dirs += [d for d in inc if d not in ext.include_dirs]
                ext.library_dirs += [d for d in libdirs if d not in ext.library_dirs]
                ext.libraries += [l for l in libs if l not in ext.libraries]
        super().run()


#: extensions that moved (docs/architecture.md): a stale build of the old
#: name would shadow the package or the re-export that replaced it
MOVED = ["netmapy/pktgen", "netmapy/backends/xdp", "netmapy/backends/netmap"]


def _remove_moved():
    import glob
    for old in MOVED:
        for f in glob.glob(old + ".cpython-*.so") + glob.glob(old + ".c"):
            os.remove(f)


#: extension -> the LIBS it links with
EXT_LIBS = {}


def ext(name, libs=(), sources=()):
    EXT_LIBS[name] = tuple(libs)
    return Extension(name, [name.replace(".", "/") + ".pyx"] + list(sources),
                     include_dirs=list(INC), extra_compile_args=CFLAGS)


extensions = [
    ext("netmapy.stop"),
    ext("netmapy.core"),
    ext("netmapy.fastpath"),
    ext("netmapy.tools.pktgen_engine"),
    ext("netmapy.backends.pipe"),
    ext("netmapy.backends.packet"),
    ext("netmapy.backends.pcap", ["libpcap"]),
    ext("netmapy.backends.netmap.port"),
    ext("middlebox.counters"),
    ext("middlebox.filter", ["libpcap"]),
    ext("middlebox.swap", ["libpcap"]),
    ext("middlebox.loop", ["libpcap"]),
    ext("middlebox.pyloop"),
    ext("middlebox.lb", ["libpcap"]),
    ext("netmapy.backends.xdp.bpf", ["libbpf"]),
    ext("netmapy.backends.xdp.attach", ["libbpf"]),
    ext("netmapy.backends.xdp.port", ["libbpf"]),
    ext("middlebox.kfilter", ["libbpf", "libpcap"], ["middlebox/csrc/mb_kern.c"]),
]

# BPF programs written in C, compiled with clang (-target bpf) into objects
# that ship beside their loaders.  Without clang the build goes on and the
# programs' users say at run time what is missing (rule files then run in
# user space).
BPF_PROGRAMS = ["middlebox/bpf/mb_rules.bpf.c"]


def build_bpf(out_root="."):
    clang = os.environ.get("CLANG") or shutil.which("clang")
    if not clang:
        print("setup.py: clang not found: the in-kernel rule program is not built "
              "(apt-get install clang for it)", file=sys.stderr)
        return
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    incs = ["-I/usr/include/" + arch] if arch and os.path.isdir("/usr/include/" + arch) else []
    for src in BPF_PROGRAMS:
        obj = os.path.join(out_root, src[:-2] + ".o")
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        cmd = [clang, "-O2", "-g", "-Wall", "-target", "bpf"] + incs + ["-c", src, "-o", obj]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("setup.py: compiling %s with clang failed:\n%s" % (src, r.stderr.strip()))

directives = {"language_level": 3, "embedsignature": True}
if DEBUG:
    directives.update(boundscheck=True, wraparound=True)

if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "check-libs":
    # python3 setup.py check-libs: what the build would use, or the one line
    for n in LIBS:
        print("%s: %s" % (n, find_library(n)))
    sys.exit(0)

setup(ext_modules=cythonize(extensions, include_path=["."],
                            compiler_directives=directives, quiet=True),
      cmdclass={"build_ext": BuildExt})

"""Build the netmapy extensions.

NETMAPY_DEBUG=1 builds with bounds checks, C asserts and -O0 -g.
"""
import os
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


def ext(name, libraries=(), sources=()):
    return Extension(name, [name.replace(".", "/") + ".pyx"] + list(sources), include_dirs=INC,
                     extra_compile_args=CFLAGS, libraries=list(libraries))


extensions = [
    ext("netmapy.stop"),
    ext("netmapy.core"),
    ext("netmapy.fastpath"),
    ext("netmapy.pktgen"),
    ext("netmapy.backends.pipe"),
    ext("netmapy.backends.packet"),
    ext("netmapy.backends.pcap", ["pcap"]),
    ext("netmapy.backends.netmap"),
    ext("middlebox.filter", ["pcap"]),
    ext("middlebox.loop", ["pcap"]),
    ext("middlebox.lb", ["pcap"]),
    ext("netmapy.backends.xdp", ["bpf"]),
    ext("middlebox.kfilter", ["bpf", "pcap"], ["middlebox/csrc/mb_kern.c"]),
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


class BuildExt(build_ext):
    def run(self):
        build_bpf()                                  # in place (editable, --inplace)
        if not self.inplace and self.build_lib:
            build_bpf(self.build_lib)                # and into the wheel
        super().run()


directives = {"language_level": 3, "embedsignature": True}
if DEBUG:
    directives.update(boundscheck=True, wraparound=True)

setup(ext_modules=cythonize(extensions, include_path=["."],
                            compiler_directives=directives, quiet=True),
      cmdclass={"build_ext": BuildExt})

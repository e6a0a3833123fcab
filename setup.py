"""Build the netmapy extensions.

NETMAPY_DEBUG=1 builds with bounds checks, C asserts and -O0 -g.
"""
import os
from setuptools import setup, Extension
from Cython.Build import cythonize

DEBUG = os.environ.get("NETMAPY_DEBUG") == "1"
INC = ["netmapy/includes", "middlebox/includes"]
CFLAGS = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3", "-g0"]
CFLAGS += ["-Wno-unused-function", "-Wno-unreachable-code"]


def ext(name, libraries=()):
    return Extension(name, [name.replace(".", "/") + ".pyx"], include_dirs=INC,
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
]

directives = {"language_level": 3, "embedsignature": True}
if DEBUG:
    directives.update(boundscheck=True, wraparound=True)

setup(ext_modules=cythonize(extensions, include_path=["."],
                            compiler_directives=directives, quiet=True))

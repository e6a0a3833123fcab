"""`python3 -m tools.bench` from a checkout: the same as `netmapy-microbench`.

The code is netmapy.tools.bench (it installs with netmapy); importing
tools.bench gives that module itself.
"""

import sys

from netmapy.tools import bench as _impl

if __name__ == "__main__":
    sys.exit(_impl.main())

sys.modules[__name__] = _impl

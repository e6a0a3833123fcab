"""`python3 -m tools.netbench` from a checkout: the same as `netmapy-bench`.

The code is netmapy.tools.netbench (it installs with netmapy); importing
tools.netbench gives that module itself.
"""

import sys

from netmapy.tools import netbench as _impl

if __name__ == "__main__":
    sys.exit(_impl.main())

sys.modules[__name__] = _impl

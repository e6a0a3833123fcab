"""`python3 -m tools.demo` from a checkout: the same as `netmapy-demo`.

The code is netmapy.tools.demo (it installs with netmapy); importing
tools.demo gives that module itself.
"""

import sys

from netmapy.tools import demo as _impl

if __name__ == "__main__":
    sys.exit(_impl.main())

sys.modules[__name__] = _impl

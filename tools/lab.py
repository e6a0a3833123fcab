"""`python3 -m tools.lab` from a checkout: the same as `netmapy-lab`.

The code is netmapy.tools.lab (it installs with netmapy); importing
tools.lab gives that module itself.
"""

import sys

from netmapy.tools import lab as _impl

if __name__ == "__main__":
    sys.exit(_impl.main())

sys.modules[__name__] = _impl

"""`python3 -m tools.pktgen` from a checkout: the same as `netmapy-pktgen`.

The code is netmapy.tools.pktgen (it installs with netmapy); importing
tools.pktgen gives that module itself.
"""

import sys

from netmapy.tools import pktgen as _impl

if __name__ == "__main__":
    sys.exit(_impl.main())

sys.modules[__name__] = _impl

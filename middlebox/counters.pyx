# cython: language_level=3
"""The worker counter layout, declared once in counters.pxd, as Python sees
it: each name of its ``cpdef enum`` (W_PID, DIR0, RX, FWD, ... BLOCK_WORDS)
is an int attribute of this module; ``middlebox.stats`` builds its views
from them, and the C loops cimport the same enum."""

LAYOUT = dict(W_PID=W_PID, W_RESTARTS=W_RESTARTS, W_HEARTBEAT=W_HEARTBEAT, W_STATE=W_STATE,
              W_QUEUE=W_QUEUE, W_CPU=W_CPU, DIR0=DIR0, DIR1=DIR1, W_SAMPLED=W_SAMPLED,
              W_FAILED=W_FAILED, W_KDROPS=W_KDROPS, BLOCK_WORDS=BLOCK_WORDS,
              FIELDS=(RX, RX_BYTES, FWD, FWD_BYTES, DROP, DROP_BYTES, LIMITED, ERRORS))

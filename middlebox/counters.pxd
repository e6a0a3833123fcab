# The worker counter block: declared here, once.  The C loops
# (middlebox.loop, middlebox.lb, middlebox.filter, middlebox.swap,
# middlebox.kfilter) cimport it; Python (middlebox.stats, the supervisor)
# imports the same values from the compiled module middlebox.counters
# (counters.pyx: a cpdef enum is a module attribute there).
#
# One block of BLOCK_WORDS uint64 per worker: fixed words, then one group
# of 8 counters per direction (DIR0: a->b or the only direction, DIR1: b->a
# or a stage's priority input) in the RX .. ERRORS order.

cpdef enum:
    W_PID = 0
    W_RESTARTS = 1
    W_HEARTBEAT = 2       # CLOCK_MONOTONIC ns of the last loop round
    W_STATE = 3           # 0 starting, 1 running, 2 stopping, 3 stopped, 4 dead
    W_QUEUE = 4
    W_CPU = 5
    DIR0 = 8
    DIR1 = 16
    W_SAMPLED = 24
    W_FAILED = 25         # + direction: forwarded, then refused by the TX sync
    W_KDROPS = 27         # + direction: dropped by the kernel before the RX rings (socket ring full)
    BLOCK_WORDS = 32

    # per direction, at DIR0 + X / DIR1 + X; rx = fwd + drop + errors + failed
    RX = 0
    RX_BYTES = 1
    FWD = 2
    FWD_BYTES = 3
    DROP = 4            # decided by a filter (or dropped by a lossy balancer)
    DROP_BYTES = 5
    LIMITED = 6         # of the drops, those a rate limit decided
    ERRORS = 7          # could not be forwarded (larger than the output's buffers)

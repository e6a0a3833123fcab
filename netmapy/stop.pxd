# The process-wide stop request, declared once: every nogil loop of netmapy
# and middlebox reads this flag (cimport it: `from netmapy.stop cimport
# stop_requested, on_eintr`).  It is set by request() (any thread, signal
# safe) and by the C signal handlers a program installs explicitly with
# netmapy.stop.install_handlers(); netmapy.stop.reset() clears it.
from libc.signal cimport sig_atomic_t

cdef volatile sig_atomic_t stop_flag      # nonzero: stop requested
cdef volatile sig_atomic_t stop_signal    # the signal that set it (0: request())


cdef inline bint stop_requested() noexcept nogil:
    return stop_flag != 0


# A wait of a nogil loop returned EINTR: 1 when the loop should stop, 0 to
# retry the wait; -1 (an exception set) when a Python signal handler raised.
cdef int on_eintr() except -1 nogil

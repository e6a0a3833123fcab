"""The values people type: CPU lists, rates, frame sizes, packet counts.

One parser each, used by every command line (through netmapy.cli's click
types) and by the library:

    parse_cpulist("0-3,5")        -> [0, 1, 2, 3, 5]     format_cpulist back
    parse_rate("1.5Mpps")         -> Rate(1500000.0, 'pps')
    parse_rate("200Mbps")         -> Rate(200000000.0, 'bps')
    parse_sizes("imix")           -> SizeSpec('imix', (60, 566, 1514), (7, 4, 1))
    parse_count("10k")            -> 10000
    si(1234567)                   -> '1.23M'

Each raises ValueError with a message that says what was expected.
"""

import math
import re

__all__ = ["parse_cpulist", "format_cpulist", "Rate", "parse_rate", "SizeSpec",
           "parse_sizes", "parse_count", "si", "IMIX", "MIN_FRAME", "MAX_FRAME"]

#: Smallest frame (Ethernet without its 4-byte FCS) and largest.
MIN_FRAME = 60
MAX_FRAME = 65535
#: The usual "simple IMIX": 7 x 64, 4 x 570, 1 x 1518 bytes on the wire (with
#: the FCS), i.e. frames of 60, 566 and 1514 bytes in the buffer.
IMIX = ((60, 566, 1514), (7, 4, 1))

_SI = {"": 1.0, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}


# ------------------------------------------------------------------ CPUs
def parse_cpulist(text):
    """'0-3,8,10-11' (the kernel's cpulist format; 'A-B:STEP' too), an int
    or an iterable of ints -> sorted list of distinct CPU numbers."""
    if isinstance(text, bool):
        raise ValueError("bad CPU list %r" % (text,))
    if isinstance(text, int):
        if text < 0:
            raise ValueError("bad CPU number %d: CPUs are numbered from 0" % text)
        return [text]
    if not isinstance(text, str):
        cpus = sorted({int(c) for c in text})
        if cpus and cpus[0] < 0:
            raise ValueError("bad CPU number %d: CPUs are numbered from 0" % cpus[0])
        return cpus
    out = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                b, _, step = b.partition(":")
                a, b = int(a), int(b)
                step = int(step) if step else 1
                if a > b or a < 0 or step < 1:
                    raise ValueError
                out.update(range(a, b + 1, step))
            else:
                c = int(part)
                if c < 0:
                    raise ValueError
                out.add(c)
        except ValueError:
            raise ValueError("bad CPU list %r: use CPU numbers and ranges, e.g. 0-3,5"
                             % (text,)) from None
    if not out:
        raise ValueError("bad CPU list %r: no CPU in it (e.g. 0-3,5)" % (text,))
    return sorted(out)


def format_cpulist(cpus):
    """[0, 1, 2, 3, 8] -> '0-3,8' (the smp_affinity_list format)."""
    cpus = sorted(set(cpus))
    parts, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        parts.append(str(cpus[i]) if i == j else "%d-%d" % (cpus[i], cpus[j]))
        i = j + 1
    return ",".join(parts)


# ------------------------------------------------------------------ numbers
def si(v, digits=3):
    """1234567 -> '1.23M' (k, M, G)."""
    v = float(v)
    for p, s in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= p:
            return "%.*g%s" % (digits, v / p, s)
    return "%.*g" % (digits, v)


_COUNT_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+]?\d+))?\s*([kKmMgG]?)\s*$")


def parse_count(text):
    """'1000', '10k', '1.5M', '1e6' -> a whole number >= 0."""
    if isinstance(text, bool):
        raise ValueError("%r is not a packet count" % (text,))
    if isinstance(text, int):
        v = text
    else:
        m = _COUNT_RE.match(str(text))
        if not m:
            raise ValueError("%r is not a count (a whole number such as 1000, 10k or 1M)"
                             % (text,))
        f = float(m.group(1)) * (10.0 ** int(m.group(2)) if m.group(2) else 1.0) * \
            _SI[m.group(3)]
        if f != int(f):
            raise ValueError("%r is not a whole number" % (text,))
        v = int(f)
    if v < 0:
        raise ValueError("a count must be >= 0, not %d" % v)
    return v


# ------------------------------------------------------------------ rates
class Rate:
    """A rate: ``value`` per second in ``unit`` "pps" (packets) or "bps"
    (bits of frames, as the interface counts bytes x 8)."""
    __slots__ = ("value", "unit")

    def __init__(self, value, unit="pps"):
        if unit not in ("pps", "bps"):
            raise ValueError("rate unit must be pps or bps, not %r" % (unit,))
        value = float(value)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError("a rate must be a positive number, not %r" % (value,))
        self.value = value
        self.unit = unit

    def __repr__(self):
        return "Rate(%r, %r)" % (self.value, self.unit)

    def __str__(self):
        return "%s%s" % (si(self.value), self.unit)

    def __eq__(self, other):
        return isinstance(other, Rate) and (self.value, self.unit) == (other.value, other.unit)

    def __hash__(self):
        return hash((self.value, self.unit))

    def split(self, n):
        """This rate shared by n workers."""
        return Rate(self.value / n, self.unit)

    def pps(self):
        """The rate in packets per second (ValueError for a bit rate)."""
        if self.unit != "pps":
            raise ValueError("%s is a bit rate; packets per second are needed here "
                             "(e.g. 500k or 1.5Mpps)" % self)
        return self.value


_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?\s*([kKmMgG]?)\s*"
                      r"(pps|p/s|bps|b/s|bit/s|bits/s|bit|bits)?\s*$")


def parse_rate(text):
    """'100k', '1.5Mpps', '200Mbps', '10kbit', '2.5e5' -> Rate.  No unit
    means packets per second."""
    if isinstance(text, Rate):
        return text
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return Rate(text, "pps")
    m = _RATE_RE.match(str(text))
    if not m:
        raise ValueError("rate %r: expected a number with an optional k/M/G and an optional "
                         "unit pps or bps, such as 100k, 1.5Mpps or 200Mbps" % (text,))
    v = float(m.group(1)) * (10.0 ** int(m.group(2)) if m.group(2) else 1.0) * _SI[m.group(3)]
    unit = m.group(4) or "pps"
    unit = "pps" if unit in ("pps", "p/s") else "bps"
    if v <= 0:
        raise ValueError("rate %r: must be more than 0" % (text,))
    if unit == "pps" and v > 1e9:
        raise ValueError("rate %r: %s pps is beyond any interface (at most 1G pps)" % (text, si(v)))
    if unit == "bps" and v < 480:
        raise ValueError("rate %r: less than one minimum-size frame (480 bits) per second" % (text,))
    return Rate(v, unit)


# ------------------------------------------------------------------ sizes
class SizeSpec:
    """Frame sizes (bytes without FCS): ``fixed`` (one size), ``range``
    (uniform in [lo, hi]) or ``imix`` (sizes with integer weights, sent in
    a fixed interleaved cycle so that every cycle has the exact mix)."""
    __slots__ = ("kind", "sizes", "weights")

    def __init__(self, kind, sizes, weights=None):
        self.kind = kind
        self.sizes = tuple(int(s) for s in sizes)
        self.weights = tuple(int(w) for w in (weights or (1,) * len(self.sizes)))
        if kind not in ("fixed", "range", "imix"):
            raise ValueError("size kind must be fixed, range or imix")
        if kind == "fixed" and len(self.sizes) != 1 or kind == "range" and len(self.sizes) != 2:
            raise ValueError("a %s size takes %d value(s)" % (kind, 1 if kind == "fixed" else 2))
        if not self.sizes or len(self.weights) != len(self.sizes):
            raise ValueError("imix: as many weights as sizes are needed")
        for s in self.sizes:
            if s < MIN_FRAME:
                raise ValueError("frame size %d is below the %d-byte minimum (Ethernet "
                                 "without FCS)" % (s, MIN_FRAME))
            if s > MAX_FRAME:
                raise ValueError("frame size %d is above %d" % (s, MAX_FRAME))
        if kind == "range" and self.sizes[0] > self.sizes[1]:
            raise ValueError("size range %d-%d is empty: write the smaller size first"
                             % self.sizes)
        if any(w <= 0 for w in self.weights):
            raise ValueError("imix weights must be positive integers")
        if sum(self.weights) > 1000000:
            raise ValueError("imix weights add up to more than 1000000: divide them")

    @property
    def min(self):
        return min(self.sizes)

    @property
    def max(self):
        return max(self.sizes)

    def mean(self):
        if self.kind == "range":
            return (self.sizes[0] + self.sizes[1]) / 2.0
        return sum(s * w for s, w in zip(self.sizes, self.weights)) / float(sum(self.weights))

    def cycle(self):
        """The imix order: smooth weighted round robin over the sizes."""
        cur = [0] * len(self.sizes)
        tot = sum(self.weights)
        out = []
        for _ in range(tot):
            for i, w in enumerate(self.weights):
                cur[i] += w
            best = max(range(len(cur)), key=lambda i: cur[i])
            cur[best] -= tot
            out.append(self.sizes[best])
        return out

    def __str__(self):
        if self.kind == "fixed":
            return "%d bytes" % self.sizes[0]
        if self.kind == "range":
            return "%d-%d bytes (uniform)" % self.sizes
        return "imix %s of %s bytes" % (":".join(map(str, self.weights)),
                                         "/".join(map(str, self.sizes)))

    def __repr__(self):
        return "SizeSpec(%r, %r, %r)" % (self.kind, self.sizes, self.weights)

    def __eq__(self, other):
        return isinstance(other, SizeSpec) and (self.kind, self.sizes, self.weights) == \
            (other.kind, other.sizes, other.weights)

    def __hash__(self):
        return hash((self.kind, self.sizes, self.weights))


def _int(text, what):
    try:
        return int(text, 10)
    except ValueError:
        raise ValueError("%s: %r is not a number" % (what, text)) from None


def parse_sizes(text):
    """'60', '60-1500', 'imix' (7:4:1 of 60/566/1514: the 64/570/1518-byte
    wire frames), 'imix:64,570,1518:7,4,1' -> SizeSpec."""
    if isinstance(text, SizeSpec):
        return text
    if isinstance(text, int) and not isinstance(text, bool):
        return SizeSpec("fixed", (text,))
    t = str(text).strip()
    what = "size %r" % (text,)
    if t.lower() == "imix":
        return SizeSpec("imix", IMIX[0], IMIX[1])
    if t.lower().startswith("imix:"):
        parts = t[5:].split(":")
        if len(parts) > 2 or not parts[0]:
            raise ValueError("%s: expected imix:SIZE,SIZE,...[:WEIGHT,WEIGHT,...]" % what)
        sizes = [_int(x.strip(), what) for x in parts[0].split(",")]
        weights = [_int(x.strip(), what) for x in parts[1].split(",")] if len(parts) > 1 \
            else [1] * len(sizes)
        if len(weights) != len(sizes):
            raise ValueError("%s: %d sizes but %d weights" % (what, len(sizes), len(weights)))
        return SizeSpec("imix", sizes, weights)
    if "-" in t:
        lo, _, hi = t.partition("-")
        lo, hi = _int(lo.strip(), what), _int(hi.strip(), what)
        if lo == hi:
            return SizeSpec("fixed", (lo,))
        return SizeSpec("range", (lo, hi))
    if not t.isdigit():
        raise ValueError("%s: expected bytes (60), a range (60-1500), imix or "
                         "imix:SIZES:WEIGHTS" % what)
    return SizeSpec("fixed", (int(t),))

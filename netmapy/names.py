"""Port names: parse and print the strings that name a port.

A port name says which backend opens the port, which interface (or switch
port, pipe or capture file) it opens, and which rings of it.  The syntax
follows netmap's own port names (``libnetmap``'s ``nmport_parse`` and the
older ``nm_open`` in ``netmap_user.h``), plus a few netmapy additions.

Grammar (EBNF; ``{ x }`` means zero or more, ``[ x ]`` optional)::

    port-name   = backend ":" body ;
    backend     = "netmap" | "xdp" | "packet" | "pipe" | "pcap"
                | "vale" { id-char } ;              (* switch name, <= 15 chars *)
    id-char     = letter | digit | "_" ;

    body        = path                              (* after "pcap:" only *)
                | base [ suffix ] [ "/" flag { flag } ]
                       [ "@" memid ] { "@" option } ;
    path        = any-char-but-NUL { any-char-but-NUL } ;

    base        = ifname                            (* netmap:, xdp:, packet: *)
                | id-char { id-char }               (* vale: the port, <= 15 *)
                | pipe-char { pipe-char } ;         (* pipe: the parent, <= 64 *)
    ifname      = ifchar { ifchar } ;               (* 1..15 chars, not "." or ".." *)
    ifchar      = printable ASCII other than space and - * ^ { } ~ @ / : ;
    pipe-char   = letter | digit | "_" | "." ;

    suffix      = "-" number        (* ONE_NIC:   one NIC ring pair           *)
                | "~" number        (* SINGLE_RX: only RX queue N (netmapy)   *)
                | "*"               (* NIC_SW:    NIC and host rings          *)
                | "^" [ number ]    (* SW / ONE_SW: all / one host ring pair  *)
                | "{" number        (* PIPE_MASTER                            *)
                | "}" number ;      (* PIPE_SLAVE                             *)
    number      = digit { digit } ;                 (* 0..MAX_RING *)
    flag        = "x" | "z" | "t" | "r" | "R" | "T" ;
    memid       = digit { digit } ;                 (* 1..65535 *)

    option      = word                                   (* flag option  *)
                | word "=" value                         (* default key  *)
                | word ":" key "=" value { "," key "=" value } ;
    key         = word ;                    (* "_" and "-" are the same *)
    word        = word-char { word-char } ;
    word-char   = letter | digit | "_" | "-" ;
    value       = value-char { value-char } ;     (* then checked per key *)
    value-char  = any character but "," "@" NUL ;

Which parts each backend takes (``BACKEND_RULES``):

============  ==========================================  ======  =====
backend       suffixes                                    flags   @memid
============  ==========================================  ======  =====
netmap        none, - ~ * ^ ^N { }                        xztrRT  yes
vale          none, - { }                                 xztrRT  yes
xdp           none, - ~ ^ *                               R T     no
packet        none, - ~                                   R T     no
pipe          { or } (required)                           none    yes
pcap          (the whole rest is a file path)             --      --
============  ==========================================  ======  =====

What netmap does, and where netmapy differs (all checked against
luigirizzo/netmap ``libnetmap/nmreq.c``, ``nmport.c``, ``netmap_user.h``
and ``sys/dev/netmap/netmap_bdg.c``):

* Prefixes.  libnetmap knows ``netmap:`` (no identifier allowed before the
  colon) and ``vale`` followed by a possibly empty identifier of letters,
  digits and ``_`` (``vale:`` is the default switch, called ``vale``).  The
  kernel finds the switch name's colon within the first 16 characters, so
  switch names have at most 15.  ``xdp:``, ``packet:``, ``pipe:`` and
  ``pcap:`` are netmapy's.  Prefixes are case-sensitive.
* Interface names.  libnetmap takes everything after the colon up to the
  first of ``- * ^ / @`` as the interface name (the kernel then splits off a
  ``{``/``}`` pipe part).  So **a '-' always ends the interface name**: an
  interface called ``veth-a`` cannot be named in netmap (``netmap:veth-a``
  is interface ``veth`` with ring ``a``, an error).  netmapy keeps the same
  rule for every backend, so a string means the same thing everywhere.
  ``~``, ``{``, ``}``, ``:`` and whitespace are reserved as well.  Linux
  limits interface names to 15 characters (IFNAMSIZ 16) and forbids ``.``
  and ``..``; so do we.
* Interfaces whose names the string cannot carry.  Linux accepts any name
  of at most 15 bytes without '/', ':' or whitespace, so ``veth-a``,
  ``nb-mi0`` or docker's ``br-1a2b3c4d5e6f`` are real interfaces.  They are
  opened structurally, never by writing a string: ``PortName.interface
  ("nb-mi0", "xdp", queue=1)`` (or ``netmapy.open(iface="nb-mi0")``) builds
  the value directly, ``canonical()`` validates it (the interface name by
  the kernel's rules, everything else by the grammar), and every backend
  opens it.  ``str()`` of such a PortName is for display only (it does not
  parse back: ``spellable`` says whether it does); the commands take
  interface names and carry PortName values to their workers.
* VALE port names are identifiers (letters, digits, ``_``) of at most 15
  characters (the kernel's ``nm_bdg_name_validate``).
* Ring numbers.  libnetmap reads them with ``strtol`` and accepts
  ``0 <= N < NETMAP_RING_MASK`` (0xfff), so ``MAX_RING`` is 4094.  Leading
  zeros are accepted and normalised: ``netmap:eth0-007`` parses to ring 7
  and prints as ``netmap:eth0-7``.  (Printing is canonical: for every
  PortName ``p``, ``parse_name(str(p)) == p``; ``str(parse_name(s))`` may
  differ from ``s`` in such spelling details.)
* Pipes.  netmap spells a pipe endpoint ``netmap:eth0{1`` (master) and
  ``netmap:eth0}1`` (slave); libnetmap allows any identifier after the
  brace, netmapy only a number (as the older ``nm_open`` did).  Pipes are
  accepted for the ``netmap:``, ``vale`` and ``pipe:`` backends.
* ``~N`` is the single-RX-queue spelling of CloudFlare's netmap patch: only
  RX queue N is taken from the kernel.  Upstream netmap spells the same
  request ``-N/R`` (since December 2015, rings that are not requested stay
  with the host stack: docs/netmap-abi.md), which ``PortName.upstream()``
  gives.  ``~N`` rules out the ``T`` flag.
* Flags.  libnetmap knows exactly ``x`` (exclusive), ``z`` (zero-copy
  monitor), ``t`` / ``r`` (copy monitor of TX / RX), ``R`` / ``T`` (bind RX /
  TX rings only).  It ORs repeated letters together and so does netmapy:
  duplicates are accepted and vanish in the canonical form (flags print in
  the order ``xztrRT``).  ``R`` together with ``T`` is rejected (netmap would
  bind no ring at all).  A ``/`` must be followed by at least one flag.
* ``@N`` selects memory region N (libnetmap: ``N > 0``; nr_mem_id is 16
  bits).  libnetmap also tolerates flags after ``@N`` (``eth0@2/x``);
  netmapy wants the canonical order ``/flags`` first, then ``@N``, then the
  options, and at most one ``@N``.
* Options (libnetmap's ``nmreq_options_decode``): each starts with ``@``; the
  first ``@`` not followed by a digit starts the options.  An option is
  ``name`` (flag option), ``name=value`` (its default key) or
  ``name:key=value,key=value``.  Keys may be spelled with ``-`` or ``_``
  (libnetmap turns ``-`` into ``_``); netmapy stores the ``-`` spelling.
  Each key at most once; every key needs ``=value``; values end at ``,`` or
  ``@``.  netmapy also rejects an option given twice.  Options print in the
  order written, always in the ``name:key=value`` form (libnetmap accepts
  that form for every option with keys).
* libnetmap's options are ``conf`` (keys rings, host-rings, slots, tx-rings,
  rx-rings, host-tx-rings, host-rx-rings, tx-slots, rx-slots; no default
  key, although libnetmap.h's comment marks ``rings`` as one: the code does
  not), ``extmem`` (file, the default and mandatory key; if-num, if-size,
  ring-num, ring-size, buf-num, buf-size), ``offset`` (initial, default and
  mandatory; bits; disabled by default in libnetmap) and ``share`` (default
  and mandatory key ``port``: the name of another port whose memory region
  to use).  netmapy adds to ``share`` an optional key ``name`` (a sharing
  group name) and allows a bare ``@share``; and adds ``fanout`` for the
  packet backend (keys ``group``, a number and the default key, and
  ``mode``: hash, queue, cpu or lb).  The table is ``OPTIONS``; add an
  ``OptionSpec`` to it to teach the parser a new option.
* ``pcap:PATH``: everything after ``pcap:`` is the path, taken verbatim (any
  character but NUL, at least one); no suffixes are looked for.
"""

import enum
from dataclasses import dataclass, field, replace

from .errors import InterfaceNameError, PortNameError

__all__ = [
    "Mode", "PortName", "parse_name", "OptionSpec", "OPTIONS",
    "BACKENDS", "BACKEND_RULES", "BackendRules", "FLAGS", "MAX_RING",
    "MAX_MEMID", "MAX_IFNAME", "MAX_SWITCH", "MAX_PIPE_PARENT",
    "uint_value", "choice_value", "word_value", "path_value", "port_value",
    "check_ifname", "INTERFACE_BACKENDS",
]

#: Backends, as stored in ``PortName.backend``.
BACKENDS = ("netmap", "vale", "xdp", "packet", "pipe", "pcap")

#: Largest ring / queue / pipe number (libnetmap: N < NETMAP_RING_MASK).
MAX_RING = 0x0fff - 1
#: Largest memory region id (nr_mem_id is a uint16_t; 0 is not allowed).
MAX_MEMID = 0xffff
#: Longest interface name (Linux IFNAMSIZ - 1), also for VALE port names.
MAX_IFNAME = 15
#: Longest VALE switch name, "vale" included (kernel NM_BDG_IFNAMSIZ - 1).
MAX_SWITCH = 15
#: Longest parent name of a ``pipe:`` port.
MAX_PIPE_PARENT = 64

#: The flag letters, in canonical order, with their meaning.
FLAGS = {
    "x": "exclusive access",
    "z": "zero-copy monitor",
    "t": "copy monitor of TX",
    "r": "copy monitor of RX",
    "R": "RX rings only",
    "T": "TX rings only",
}
_FLAG_ORDER = "".join(FLAGS)

_DIGITS = "0123456789"
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" + _DIGITS
_ID_CHARS = frozenset(_ALNUM + "_")
_PIPE_CHARS = frozenset(_ALNUM + "_.")
_NAME_CHARS = frozenset(_ALNUM + "_-")         # option names and keys
_WORD_CHARS = frozenset(_ALNUM + "_.-")
_PATH_CHARS = frozenset(_ALNUM + "_.-/")
# Characters that end an interface name (libnetmap: "-*^/@", the kernel:
# "{}", netmapy: "~").
_SEPARATORS = frozenset("-*^{}~/@")
_RESERVED = _SEPARATORS | {":"}

#: Backends whose base name is a Linux interface name.
INTERFACE_BACKENDS = ("netmap", "xdp", "packet")


def _ifname_problem(ifname):
    """(index, what is wrong) if Linux would refuse ``ifname`` as an
    interface name, else None.  The kernel's rule (dev_valid_name): 1..15
    bytes, not '.' or '..', no '/', ':', NUL or whitespace."""
    if not isinstance(ifname, str) or not ifname:
        return 0, "a non-empty interface name"
    if ifname in (".", ".."):
        return 0, "an interface name other than '.' or '..'"
    for k, c in enumerate(ifname):
        if c in "/:\0" or c.isspace():
            return k, ("an interface name character (Linux allows anything but "
                       "'/', ':' and whitespace)")
    if len(ifname.encode("utf-8", "surrogateescape")) > MAX_IFNAME:
        return MAX_IFNAME, "at most %d bytes in an interface name" % MAX_IFNAME
    return None


def check_ifname(ifname):
    """Return ``ifname`` if Linux accepts it as an interface name (1..15
    bytes, not '.' or '..', no '/', ':' or whitespace; '-' and the other
    characters netmap's port names reserve are fine), else raise
    InterfaceNameError (a PortNameError) naming the offending character."""
    bad = _ifname_problem(ifname)
    if bad is not None:
        text = ifname if isinstance(ifname, str) else repr(ifname)
        raise InterfaceNameError(text, bad[0], bad[1])
    return ifname


def _spellable_ifname(ifname):
    """Whether the string grammar can carry this interface name."""
    return (0 < len(ifname) <= MAX_IFNAME and ifname not in (".", "..")
            and all("!" <= c <= "~" and c not in _RESERVED for c in ifname))


_PREFIX_HINT = ("a backend prefix such as netmap:, xdp:, packet:, pipe:, "
                "pcap: (or valeN: for a VALE switch)")


class Mode(enum.Enum):
    """Which rings of the interface a port binds (netmap's NR_REG_*)."""

    ALL_NIC = "all_nic"          # nothing written: all NIC rings
    NIC_SW = "nic_sw"            # '*'  NIC and host rings
    SW = "sw"                    # '^'  all host rings
    ONE_SW = "one_sw"            # '^N' host ring pair N
    ONE_NIC = "one_nic"          # '-N' NIC ring pair N
    SINGLE_RX = "single_rx"      # '~N' only RX queue N (CloudFlare patch)
    PIPE_MASTER = "pipe_master"  # '{N'
    PIPE_SLAVE = "pipe_slave"    # '}N'

    @property
    def symbol(self):
        """The suffix character(s) written for this mode ('' for ALL_NIC)."""
        return _MODE_SYMBOL[self]

    @property
    def has_ring(self):
        """Whether this mode carries a number (``PortName.ring``)."""
        return self in _NUMBERED


_MODE_SYMBOL = {
    Mode.ALL_NIC: "", Mode.NIC_SW: "*", Mode.SW: "^", Mode.ONE_SW: "^",
    Mode.ONE_NIC: "-", Mode.SINGLE_RX: "~", Mode.PIPE_MASTER: "{",
    Mode.PIPE_SLAVE: "}",
}
_NUMBERED = frozenset({Mode.ONE_SW, Mode.ONE_NIC, Mode.SINGLE_RX,
                       Mode.PIPE_MASTER, Mode.PIPE_SLAVE})
_SYMBOL_MODE = {"-": Mode.ONE_NIC, "~": Mode.SINGLE_RX, "*": Mode.NIC_SW,
                "{": Mode.PIPE_MASTER, "}": Mode.PIPE_SLAVE}
_NUMBER_WORD = {Mode.ONE_NIC: "a ring number", Mode.ONE_SW: "a host ring number",
                Mode.SINGLE_RX: "a queue number",
                Mode.PIPE_MASTER: "a pipe number",
                Mode.PIPE_SLAVE: "a pipe number"}


@dataclass(frozen=True)
class BackendRules:
    """What a backend accepts after its base name."""

    modes: frozenset
    flags: str            # allowed flag letters, canonical order
    memid: bool           # whether '@N' is allowed
    after: str            # English: what may follow the base name


BACKEND_RULES = {
    "netmap": BackendRules(
        frozenset(Mode), _FLAG_ORDER, True,
        "a ring suffix (-N ~N * ^ ^N {N }N), '/' flags, '@' or the end of "
        "the name"),
    "vale": BackendRules(
        frozenset({Mode.ALL_NIC, Mode.ONE_NIC, Mode.PIPE_MASTER,
                   Mode.PIPE_SLAVE}), _FLAG_ORDER, True,
        "a ring suffix (-N {N }N), '/' flags, '@' or the end of the name"),
    "xdp": BackendRules(
        frozenset({Mode.ALL_NIC, Mode.ONE_NIC, Mode.SINGLE_RX, Mode.SW, Mode.NIC_SW}),
        "RT", False,
        "a queue suffix (-N ~N), host rings (^ *), '/' flags, '@' options or "
        "the end of the name"),
    "packet": BackendRules(
        frozenset({Mode.ALL_NIC, Mode.ONE_NIC, Mode.SINGLE_RX}), "RT", False,
        "a queue suffix (-N ~N), '/' flags, '@' options or the end of the "
        "name"),
    "pipe": BackendRules(
        frozenset({Mode.PIPE_MASTER, Mode.PIPE_SLAVE}), "", True,
        "'{' or '}' and a pipe number after the pipe name"),
    "pcap": BackendRules(frozenset({Mode.ALL_NIC}), "", False, ""),
}


# ---------------------------------------------------------------- options

class _BadValue(Exception):
    """Raised by a value checker: offset into the value, expected phrase."""

    def __init__(self, offset, expected):
        super().__init__(expected)
        self.offset = offset
        self.expected = expected


def _charset_check(value, allowed, what):
    for k, c in enumerate(value):
        if c not in allowed:
            raise _BadValue(k, what)


def uint_value(maximum=0xffffffff):
    """Value kind: a decimal number 0..maximum, normalised (no leading 0s)."""

    def check(value):
        _charset_check(value, _DIGITS, "a decimal number (digits only)")
        digits = value.lstrip("0") or "0"
        if len(digits) > len(str(maximum)) or int(digits) > maximum:
            raise _BadValue(0, "a number from 0 to %d" % maximum)
        return digits
    check.kind = "number"
    check.maximum = maximum
    return check


def choice_value(*words):
    """Value kind: one of the given words."""

    def check(value):
        if value not in words:
            raise _BadValue(0, "one of %s" % ", ".join(words))
        return value
    check.kind = "choice"
    check.choices = words
    return check


def word_value(value):
    """Value kind: letters, digits, '_', '.', '-'."""
    _charset_check(value, _WORD_CHARS,
                   "a word of letters, digits, '_', '.' or '-'")
    return value


word_value.kind = "word"  # type: ignore[attr-defined]


def path_value(value):
    """Value kind: a file path of letters, digits, '_', '.', '-', '/'."""
    _charset_check(value, _PATH_CHARS,
                   "a file path of letters, digits, '_', '.', '-' or '/'")
    return value


path_value.kind = "path"  # type: ignore[attr-defined]


def port_value(value):
    """Value kind: another port name (checked, stored canonical)."""
    try:
        return str(parse_name(value))
    except PortNameError as e:
        raise _BadValue(e.pos, e.expected + " (in the port name %r)" % value)


port_value.kind = "port"  # type: ignore[attr-defined]

_RING_ONLY = frozenset({"netmap", "vale"})
_ALL_BUT_PCAP = frozenset(BACKENDS) - {"pcap"}


@dataclass(frozen=True)
class OptionSpec:
    """How to check one ``@option``.

    ``keys`` maps each key (canonical, '-' spelling) to a value checker: a
    callable taking the written value and returning its canonical spelling,
    or raising ``_BadValue``; its ``kind`` attribute is one of "number"
    (with ``maximum``), "choice" (with ``choices``), "word", "path", "port".
    Use ``uint_value(max)``, ``choice_value(*words)``, ``word_value``,
    ``path_value`` or ``port_value``.  ``default_key`` is the key ``@name=value``
    assigns; ``required`` keys must be given; ``bare`` allows a plain
    ``@name``; ``backends`` are those that accept the option.
    """

    keys: dict
    default_key: object = None
    required: tuple = ()
    bare: bool = False
    backends: frozenset = _ALL_BUT_PCAP
    doc: str = ""


_u16 = uint_value(0xffff)
_u32 = uint_value(0xffffffff)
_u64 = uint_value(0xffffffffffffffff)

#: The known options.  Others may add entries (``OPTIONS['x'] = OptionSpec(...)``).
OPTIONS = {
    "conf": OptionSpec(
        keys={"rings": _u16, "host-rings": _u16, "slots": _u32,
              "tx-rings": _u16, "rx-rings": _u16, "host-tx-rings": _u16,
              "host-rx-rings": _u16, "tx-slots": _u32, "rx-slots": _u32},
        backends=frozenset({"netmap", "vale", "pipe", "xdp", "packet"}),
        doc="ring and slot numbers of a port created by this open"),
    "extmem": OptionSpec(
        keys={"file": path_value, "if-num": _u32, "if-size": _u32,
              "ring-num": _u32, "ring-size": _u32, "buf-num": _u32,
              "buf-size": _u32},
        default_key="file", required=("file",), backends=_RING_ONLY,
        doc="use memory mmap()ed from a file"),
    "offset": OptionSpec(
        keys={"initial": _u64, "bits": uint_value(64)},
        default_key="initial", required=("initial",), backends=_RING_ONLY,
        doc="initial buffer offset"),
    "share": OptionSpec(
        keys={"port": port_value, "name": word_value},
        default_key="port", bare=True, backends=_ALL_BUT_PCAP,
        doc="share the memory of another port (port=) or of a named group"),
    "fanout": OptionSpec(
        keys={"group": _u16, "mode": choice_value("hash", "queue", "cpu",
                                                  "lb")},
        default_key="group", bare=True, backends=frozenset({"packet"}),
        doc="PACKET_FANOUT group for the packet backend"),
}


# ---------------------------------------------------------------- value

@dataclass(frozen=True)
class PortName:
    """A parsed port name.  ``str()`` gives its canonical spelling.

    Build one with ``parse_name`` (which validates everything).  The
    constructor only checks the structure (types, ring present iff the mode
    has one, switch iff VALE); ``canonical()`` validates a hand-built one.
    """

    backend: str
    ifname: str
    switch: object = None
    mode: Mode = Mode.ALL_NIC
    ring: object = None
    flags: frozenset = frozenset()
    memid: object = None
    options: tuple = ()

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError("unknown backend %r, expected one of %s"
                             % (self.backend, ", ".join(BACKENDS)))
        if not isinstance(self.ifname, str) or not self.ifname:
            raise ValueError("ifname must be a non-empty string")
        mode = self.mode if isinstance(self.mode, Mode) else Mode(self.mode)
        object.__setattr__(self, "mode", mode)
        if mode.has_ring != (self.ring is not None):
            raise ValueError("mode %s %s a ring number" % (
                mode.name, "needs" if mode.has_ring else "takes no"))
        if (self.backend == "vale") != (self.switch is not None):
            raise ValueError("switch must be set for vale and only for vale")
        flags = self.flags
        if isinstance(flags, str):
            flags = tuple(flags)
        object.__setattr__(self, "flags", frozenset(flags))
        opts = self.options
        if isinstance(opts, dict):
            opts = opts.items()
        norm = []
        for name, pairs in opts:
            if isinstance(pairs, dict):
                pairs = pairs.items()
            norm.append((name, tuple((k, v) for k, v in pairs)))
        object.__setattr__(self, "options", tuple(norm))

    @classmethod
    def parse(cls, name):
        """Same as ``parse_name(name)``."""
        return parse_name(name)

    @classmethod
    def interface(cls, ifname, backend="netmap", queue=None, *, single_rx=False,
                  host=False, rx_only=False, tx_only=False, options=()):
        """A port on the Linux interface ``ifname``, built structurally.

        ``ifname`` is the interface's own name: anything the kernel accepts
        ('-' included, e.g. ``nb-mi0``), no port-name string involved.
        ``backend``: "netmap" (the best available), "xdp" or "packet".
        ``queue=N``: ring pair N (``-N``); with ``single_rx=True`` only RX
        queue N (``~N``).  ``host=True``: the host rings instead (``^``, or
        host ring pair N with ``queue``).  ``rx_only`` / ``tx_only``: the
        ``R`` / ``T`` flags.  Returns a validated PortName (PortNameError
        if the backend does not take that combination).
        """
        if backend not in INTERFACE_BACKENDS:
            raise ValueError("an interface port's backend is one of %s, not %r"
                             % (", ".join(INTERFACE_BACKENDS), backend))
        check_ifname(ifname)
        if single_rx and (queue is None or host):
            raise ValueError("single_rx=True needs a queue number (and no host=True)")
        if queue is not None and (not isinstance(queue, int) or isinstance(queue, bool)):
            raise TypeError("queue must be an int, not %s" % type(queue).__name__)
        if host:
            mode = Mode.SW if queue is None else Mode.ONE_SW
        elif queue is None:
            mode = Mode.ALL_NIC
        else:
            mode = Mode.SINGLE_RX if single_rx else Mode.ONE_NIC
        flags = frozenset(("R",) if rx_only else ()) | frozenset(("T",) if tx_only else ())
        return cls(backend, ifname, None, mode, queue, flags, None,
                   options).canonical()

    @property
    def spellable(self):
        """True if ``str(self)`` parses back to this PortName: False for an
        interface whose name the string grammar cannot carry ('-', '~',
        '@' ... in it), which is opened as a value instead."""
        return self.backend not in INTERFACE_BACKENDS or _spellable_ifname(self.ifname)

    def __str__(self):
        if self.backend == "pcap":
            return "pcap:" + self.ifname
        out = [self.switch if self.backend == "vale" else self.backend, ":",
               self.ifname, self.mode.symbol]
        if self.ring is not None:
            out.append(str(self.ring))
        if self.flags:
            out.append("/")
            out.extend(f for f in _FLAG_ORDER if f in self.flags)
            out.extend(sorted(self.flags - set(_FLAG_ORDER)))
        if self.memid is not None:
            out.append("@%d" % self.memid)
        for name, pairs in self.options:
            out.append("@" + name)
            if pairs:
                out.append(":" + ",".join("%s=%s" % kv for kv in pairs))
        return "".join(out)

    # -- conveniences

    @property
    def queue(self):
        """Alias of ``ring`` (xdp/packet speak of queues)."""
        return self.ring

    @property
    def rx_only(self):
        """True if only RX rings are bound ('R' flag or '~N')."""
        return "R" in self.flags or self.mode is Mode.SINGLE_RX

    @property
    def tx_only(self):
        """True if only TX rings are bound ('T' flag)."""
        return "T" in self.flags

    @property
    def is_pipe(self):
        """True for a pipe endpoint ('{N' or '}N', any backend)."""
        return self.mode in (Mode.PIPE_MASTER, Mode.PIPE_SLAVE)

    def option(self, name):
        """The keys of option ``name`` as a dict ({} if bare), or None."""
        for n, pairs in self.options:
            if n == name:
                return dict(pairs)
        return None

    def canonical(self):
        """Validate a hand-built PortName; returns its canonical form.

        Every part is checked against the grammar (as
        ``parse_name(str(self))`` would); the interface name of a netmap:,
        xdp: or packet: port by the kernel's rules instead, so that an
        interface such as ``nb-mi0`` is a valid PortName even though the
        string grammar cannot spell it.  Raises PortNameError if it does not
        follow the grammar, or if it does not survive the round trip (a
        pcap: port with suffixes).
        """
        if not self.spellable:
            check_ifname(self.ifname)
            stand_in = replace(self, ifname="x")
            try:
                checked = stand_in.canonical()
            except PortNameError as e:
                head = len(self.backend) + 1
                pos = e.pos if e.pos <= head else e.pos + len(self.ifname) - 1
                raise PortNameError(str(self), pos, e.expected) from None
            return replace(checked, ifname=self.ifname)
        text = str(self)
        parsed = parse_name(text)
        if parsed != self and self.backend == "pcap":
            raise PortNameError(text, len(text),
                                "a pcap: port without a mode, flags, "
                                "memory region or options")
        return parsed

    def with_backend(self, backend):
        """A copy on another backend, validated.

        ``backend`` is one of BACKENDS or a VALE switch name such as
        ``'vale0'`` ('vale' keeps the current switch, else uses 'vale0').
        Raises PortNameError if the new backend does not accept the name.
        """
        switch = None
        if backend.startswith("vale"):
            switch = (self.switch or "vale0") if backend == "vale" else backend
            backend = "vale"
        elif backend not in BACKENDS:
            raise ValueError("unknown backend %r, expected one of %s"
                             % (backend, ", ".join(BACKENDS)))
        return replace(self, backend=backend, switch=switch).canonical()

    def upstream(self):
        """The spelling upstream netmap understands, as a string.

        ``~N`` (single RX queue, CloudFlare's patch) becomes ``-N/R``: ring
        pair N, RX side only.  Any other name is returned unchanged.
        """
        if self.mode is Mode.SINGLE_RX:
            return str(replace(self, mode=Mode.ONE_NIC,
                               flags=self.flags | {"R"}))
        return str(self)


# ---------------------------------------------------------------- parser

class _Parser:
    def __init__(self, text):
        self.s = text
        self.n = len(text)

    def fail(self, pos, expected):
        raise PortNameError(self.s, pos, expected)

    def peek(self, i):
        return self.s[i] if i < self.n else ""

    def digit_at(self, i):
        return i < self.n and self.s[i] in _DIGITS

    def number(self, i, what, sym, low, high):
        """Read digits at i; returns (value, new i)."""
        s, j = self.s, i
        while j < self.n and s[j] in _DIGITS:
            j += 1
        if j == i:
            hint = ""
            if sym == "-" and self.peek(i) and self.peek(i) not in _RESERVED \
                    and not self.peek(i).isspace():
                hint = (" (a '-' ends the interface name in a port name; "
                        "an interface whose name contains '-' is opened by "
                        "its name alone: netmapy.open(iface=NAME) or "
                        "PortName.interface(NAME), and every command takes "
                        "interface names as they are)")
            self.fail(i, "%s (digits) after '%s'%s" % (what, sym, hint))
        digits = s[i:j].lstrip("0") or "0"
        value = int(digits) if len(digits) <= 6 else high + 1
        if not low <= value <= high:
            self.fail(i, "%s from %d to %d" % (what, low, high))
        return value, j

    def prefix(self):
        s = self.s
        for word in ("netmap", "xdp", "packet", "pipe", "pcap"):
            if s.startswith(word):
                if self.peek(len(word)) != ":":
                    self.fail(len(word), "':' after '%s'" % word)
                return word, None, len(word) + 1
        if s.startswith("vale"):
            j = 4
            while j < self.n and s[j] in _ID_CHARS:
                if j >= MAX_SWITCH:
                    self.fail(j, "at most %d characters in a VALE switch "
                              "name" % MAX_SWITCH)
                j += 1
            if self.peek(j) != ":":
                self.fail(j, "a switch name character (letter, digit, '_') "
                          "or ':'")
            return "vale", s[:j], j + 1
        self.fail(0, _PREFIX_HINT)

    def base(self, backend, i):
        s, rules = self.s, BACKEND_RULES[backend]
        start = i
        if backend == "vale":
            allowed, limit, what = _ID_CHARS, MAX_IFNAME, "a VALE port name"
            charword = "a VALE port name character (letter, digit, '_')"
        elif backend == "pipe":
            allowed, limit, what = _PIPE_CHARS, MAX_PIPE_PARENT, "a pipe name"
            charword = "a pipe name character (letter, digit, '_', '.')"
        else:
            allowed, limit, what = None, MAX_IFNAME, "an interface name"
            charword = "an interface name character"
        while i < self.n and s[i] not in _SEPARATORS:
            c = s[i]
            ok = ("!" <= c <= "~" and c not in _RESERVED) if allowed is None \
                else c in allowed
            if not ok:
                if i == start:
                    self.fail(i, what)
                why = ""
                if c.isspace():
                    why = " (no whitespace in port names)"
                elif c == ":":
                    why = " (':' only ends the backend prefix)"
                elif not " " <= c <= "~":
                    why = " (printable ASCII only)"
                self.fail(i, "%s or %s%s" % (charword, rules.after, why))
            if i - start >= limit:
                self.fail(i, "at most %d characters in %s" % (limit, what))
            i += 1
        if i == start:
            self.fail(i, what if i == self.n else
                      "%s before %r" % (what, s[i]))
        name = s[start:i]
        if allowed is None and name in (".", ".."):
            self.fail(start, "an interface name other than '.' or '..'")
        return name, i

    def suffix(self, backend, i):
        rules = BACKEND_RULES[backend]
        c = self.peek(i)
        if c == "^":
            mode = Mode.ONE_SW if self.digit_at(i + 1) else Mode.SW
        else:
            mode = _SYMBOL_MODE.get(c, Mode.ALL_NIC)
        if mode not in rules.modes:
            if backend == "pipe":
                self.fail(i, rules.after)
            if mode in (Mode.PIPE_MASTER, Mode.PIPE_SLAVE):
                why = "pipes ('{N', '}N') need the pipe:, netmap: or valeN: " \
                      "backend"
            else:
                why = "the %s backend has no '%s' mode" % (backend, c)
            self.fail(i, "%s (%s)" % (rules.after, why))
        if mode is Mode.ALL_NIC:
            return mode, None, i
        if mode.has_ring:
            ring, i = self.number(i + 1, _NUMBER_WORD[mode], c, 0, MAX_RING)
            return mode, ring, i
        return mode, None, i + 1

    def flags(self, backend, mode, i):
        rules = BACKEND_RULES[backend]
        if not rules.flags:
            self.fail(i, "'@' or the end of the name (the %s backend takes "
                      "no '/' flags)" % backend)
        allowed = " ".join(rules.flags)
        i += 1
        start, seen = i, {}
        while i < self.n and self.s[i] != "@":
            c = self.s[i]
            if c not in rules.flags:
                if i == start:
                    self.fail(i, "a flag letter after '/' (one of %s)"
                              % allowed)
                self.fail(i, "a flag letter (one of %s), '@' or the end of "
                          "the name" % allowed)
            if c == "R" and "T" in seen or c == "T" and "R" in seen:
                self.fail(i, "either 'R' (RX rings only) or 'T' (TX rings "
                          "only), not both")
            if c == "T" and mode is Mode.SINGLE_RX:
                self.fail(i, "no 'T' flag ('~N' binds RX queue N only)")
            seen.setdefault(c, i)
            i += 1
        if i == start:
            self.fail(i, "a flag letter after '/' (one of %s)" % allowed)
        return frozenset(seen), i

    def option(self, backend, i, seen_opts):
        s = self.s
        nstart = i
        while i < self.n and s[i] not in ":=@":
            if s[i] not in _NAME_CHARS:
                if i == nstart:
                    break
                self.fail(i, "an option name character, ':', '=', '@' or the "
                          "end of the name")
            i += 1
        name = s[nstart:i]
        usable = [o for o, spec in OPTIONS.items() if backend in spec.backends]
        if not name:
            lead = ("a memory region number or an option name after '@'"
                    if BACKEND_RULES[backend].memid and not seen_opts
                    else "an option name after '@'")
            self.fail(nstart, "%s (options: %s)" % (lead, ", ".join(usable)))
        spec = OPTIONS.get(name)
        if spec is None:
            self.fail(nstart, "a known option name (%r is not one): one of %s"
                      % (name, ", ".join(usable) or "none"))
        if backend not in spec.backends:
            self.fail(nstart, "an option the %s backend accepts (%r is not "
                      "one): one of %s" % (backend, name,
                                           ", ".join(usable) or "none"))
        if name in seen_opts:
            self.fail(nstart, "each option at most once (%r is repeated)"
                      % name)
        keys_list = ", ".join(spec.keys)
        pairs = []
        c = self.peek(i)
        if c == "=":
            if spec.default_key is None:
                self.fail(i, "':' and key=value pairs after option %r (it has "
                          "no default key): keys %s" % (name, keys_list))
            value, i = self.value(name, spec.default_key, spec, i + 1)
            pairs.append((spec.default_key, value))
            if self.peek(i) == ",":
                self.fail(i, "'@' or the end of the name (the '=value' form "
                          "sets one key; write %s:key=value,key=value)"
                          % name)
        elif c == ":":
            i += 1
            while True:
                kstart = i
                while i < self.n and s[i] not in "=,@":
                    if s[i] not in _NAME_CHARS:
                        self.fail(i, "a key name character or '='")
                    i += 1
                key = s[kstart:i]
                if not key:
                    self.fail(kstart, "a key of option %r (one of %s)"
                              % (name, keys_list))
                canon = key.replace("_", "-")
                if canon not in spec.keys:
                    self.fail(kstart, "a key of option %r (%r is not one): "
                              "one of %s" % (name, key, keys_list))
                if any(k == canon for k, _ in pairs):
                    self.fail(kstart, "each key at most once (%r is already "
                              "set)" % key)
                if self.peek(i) != "=":
                    self.fail(i, "'=' and a value after key %r" % key)
                value, i = self.value(name, canon, spec, i + 1)
                pairs.append((canon, value))
                if self.peek(i) != ",":
                    break
                i += 1
        elif not spec.bare:
            self.fail(i, "%s after option %r (keys: %s)" % (
                "':' and key=value pairs" + (
                    " or '=' and a value" if spec.default_key else ""),
                name, keys_list))
        for k in spec.required:
            if not any(k == key for key, _ in pairs):
                self.fail(i, "key %r for option %r (it is mandatory)"
                          % (k, name))
        return (name, tuple(pairs)), i

    def value(self, optname, key, spec, i):
        start = i
        while i < self.n and self.s[i] not in ",@":
            i += 1
        raw = self.s[start:i]
        if not raw:
            self.fail(start, "a value for key %r of option %r"
                      % (key, optname))
        try:
            return spec.keys[key](raw), i
        except _BadValue as e:
            self.fail(start + e.offset, "%s as the value of key %r"
                      % (e.expected, key))

    def parse(self):
        backend, switch, i = self.prefix()
        if backend == "pcap":
            path = self.s[i:]
            if not path:
                self.fail(i, "a capture file path after 'pcap:'")
            if "\0" in path:
                self.fail(i + path.index("\0"),
                          "a capture file path without NUL characters")
            return PortName("pcap", path)
        rules = BACKEND_RULES[backend]
        ifname, i = self.base(backend, i)
        mode, ring, i = self.suffix(backend, i)
        c = self.peek(i)
        flags = frozenset()
        if c == "/":
            flags, i = self.flags(backend, mode, i)
        elif c and c != "@":
            self.fail(i, "'/' flags, '@' or the end of the name"
                      if rules.flags else "'@' or the end of the name")
        memid, options, names = None, [], set()
        while i < self.n:
            # here s[i] == '@'
            i += 1
            if self.digit_at(i):
                if not rules.memid:
                    self.fail(i, "an option name (the %s backend has no "
                              "memory regions '@N')" % backend)
                if memid is not None or options:
                    self.fail(i, "an option name ('@N' comes once, before "
                              "the options)")
                memid, i = self.number(i, "a memory region number", "@",
                                       1, MAX_MEMID)
                c = self.peek(i)
                if c == "/":
                    self.fail(i, "'@' or the end of the name (write the "
                              "'/' flags before '@N')")
                if c and c != "@":
                    self.fail(i, "'@' and an option, or the end of the name")
                continue
            opt, i = self.option(backend, i, names)
            names.add(opt[0])
            options.append(opt)
            if i < self.n and self.s[i] != "@":   # cannot happen; be safe
                self.fail(i, "'@' or the end of the name")
        return PortName(backend, ifname, switch, mode, ring, flags, memid,
                        tuple(options))


def parse_name(name):
    """Parse a port name; returns a PortName, raises PortNameError."""
    if not isinstance(name, str):
        raise TypeError("a port name is a str, not %s" % type(name).__name__)
    return _Parser(name).parse()

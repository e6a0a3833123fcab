"""Tests of netmapy.names: the port-name grammar."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netmapy.errors import PortNameError
from netmapy.names import (
    BACKEND_RULES, MAX_IFNAME, MAX_MEMID, MAX_PIPE_PARENT, MAX_RING, OPTIONS,
    Mode, PortName, parse_name)

# ------------------------------------------------------------------ valid

# (name, expected fields, canonical spelling or None if the same)
VALID = [
    ("netmap:eth0", dict(backend="netmap", ifname="eth0"), None),
    ("netmap:eth0-3", dict(mode=Mode.ONE_NIC, ring=3), None),
    ("netmap:eth0-0", dict(mode=Mode.ONE_NIC, ring=0), None),
    ("netmap:eth0-007", dict(mode=Mode.ONE_NIC, ring=7), "netmap:eth0-7"),
    ("netmap:eth0-000", dict(ring=0), "netmap:eth0-0"),
    ("netmap:eth0-%d" % MAX_RING, dict(ring=MAX_RING), None),
    ("netmap:eth0*", dict(mode=Mode.NIC_SW, ring=None), None),
    ("netmap:eth0^", dict(mode=Mode.SW, ring=None), None),
    ("netmap:eth0^2", dict(mode=Mode.ONE_SW, ring=2), None),
    ("netmap:eth0~5", dict(mode=Mode.SINGLE_RX, ring=5), None),
    ("netmap:eth0{1", dict(mode=Mode.PIPE_MASTER, ring=1), None),
    ("netmap:eth0}1", dict(mode=Mode.PIPE_SLAVE, ring=1), None),
    ("netmap:eth0/x", dict(flags=frozenset("x")), None),
    ("netmap:eth0/Rx", dict(flags=frozenset("xR")), "netmap:eth0/xR"),
    ("netmap:eth0/xxR", dict(flags=frozenset("xR")), "netmap:eth0/xR"),
    ("netmap:eth0/Tzrt", dict(flags=frozenset("ztrT")), "netmap:eth0/ztrT"),
    ("netmap:eth0-1/T@2", dict(ring=1, flags=frozenset("T"), memid=2), None),
    ("netmap:eth0@1", dict(memid=1), None),
    ("netmap:eth0@065535", dict(memid=MAX_MEMID), "netmap:eth0@65535"),
    ("netmap:eth0@conf:rings=4,slots=1024",
     dict(options=(("conf", (("rings", "4"), ("slots", "1024"))),)), None),
    ("netmap:eth0@conf:host_rings=2,tx_slots=08",
     dict(options=(("conf", (("host-rings", "2"), ("tx-slots", "8"))),)),
     "netmap:eth0@conf:host-rings=2,tx-slots=8"),
    ("netmap:eth0@extmem=/dev/shm/m.img",
     dict(options=(("extmem", (("file", "/dev/shm/m.img"),)),)),
     "netmap:eth0@extmem:file=/dev/shm/m.img"),
    ("netmap:eth0@extmem:buf-num=100,file=f",
     dict(options=(("extmem", (("buf-num", "100"), ("file", "f"))),)), None),
    ("netmap:eth0@offset=64", dict(options=(("offset", (("initial", "64"),)),)),
     "netmap:eth0@offset:initial=64"),
    ("netmap:eth0@share=netmap:eth1-02",
     dict(options=(("share", (("port", "netmap:eth1-2"),)),)),
     "netmap:eth0@share:port=netmap:eth1-2"),
    ("netmap:eth0@share", dict(options=(("share", ()),)), None),
    ("netmap:eth0@share:name=grp.1",
     dict(options=(("share", (("name", "grp.1"),)),)), None),
    ("netmap:eth0-1/R@3@conf:rings=1@share:name=g",
     dict(ring=1, memid=3, options=(("conf", (("rings", "1"),)),
                                    ("share", (("name", "g"),)))), None),
    ("netmap:eth0.100", dict(ifname="eth0.100"), None),
    ("netmap:a", dict(ifname="a"), None),
    ("netmap:" + "e" * MAX_IFNAME, dict(ifname="e" * MAX_IFNAME), None),
    ("netmap:br_lan%1", dict(ifname="br_lan%1"), None),
    ("vale0:p1", dict(backend="vale", switch="vale0", ifname="p1"), None),
    ("vale:p1", dict(backend="vale", switch="vale", ifname="p1"), None),
    ("valeSw_1:port_2-3", dict(switch="valeSw_1", ifname="port_2",
                               mode=Mode.ONE_NIC, ring=3), None),
    ("vale0:p1{3/x@2", dict(mode=Mode.PIPE_MASTER, ring=3,
                            flags=frozenset("x"), memid=2), None),
    ("xdp:eth0", dict(backend="xdp"), None),
    ("xdp:eth0-2", dict(mode=Mode.ONE_NIC, ring=2), None),
    ("xdp:eth0~3", dict(mode=Mode.SINGLE_RX, ring=3, flags=frozenset()),
     None),
    ("xdp:eth0~3/R", dict(mode=Mode.SINGLE_RX, flags=frozenset("R")), None),
    ("xdp:eth0/T", dict(flags=frozenset("T")), None),
    ("xdp:eth0@conf:slots=2048", dict(options=(("conf", (("slots", "2048"),)),)),
     None),
    ("packet:eth0@fanout", dict(backend="packet",
                                options=(("fanout", ()),)), None),
    ("packet:eth0-1@fanout=7", dict(options=(("fanout", (("group", "7"),)),)),
     "packet:eth0-1@fanout:group=7"),
    ("packet:eth0@fanout:mode=lb,group=3",
     dict(options=(("fanout", (("mode", "lb"), ("group", "3"))),)), None),
    ("pipe:p{0", dict(backend="pipe", ifname="p", mode=Mode.PIPE_MASTER,
                      ring=0), None),
    ("pipe:my.pipe_1}12@4", dict(ifname="my.pipe_1", mode=Mode.PIPE_SLAVE,
                                 ring=12, memid=4), None),
    ("pipe:" + "p" * MAX_PIPE_PARENT + "{1", dict(ifname="p" * 64), None),
    ("pipe:x{1@share:name=a", dict(options=(("share", (("name", "a"),)),)),
     None),
    ("pcap:/tmp/x.pcap", dict(backend="pcap", ifname="/tmp/x.pcap",
                              mode=Mode.ALL_NIC), None),
    ("pcap:odd name-1/x@2{}~ é", dict(ifname="odd name-1/x@2{}~ é",
                                      ring=None, memid=None), None),
]


@pytest.mark.parametrize("name,fields,canonical", VALID,
                         ids=[v[0] for v in VALID])
def test_valid(name, fields, canonical):
    p = parse_name(name)
    for k, v in fields.items():
        assert getattr(p, k) == v, k
    assert str(p) == (canonical or name)
    assert parse_name(str(p)) == p
    assert PortName.parse(name) == p
    hash(p)


def test_defaults():
    p = parse_name("netmap:eth0")
    assert p == PortName("netmap", "eth0")
    assert (p.switch, p.mode, p.ring, p.flags, p.memid, p.options) == (
        None, Mode.ALL_NIC, None, frozenset(), None, ())


# ---------------------------------------------------------------- invalid

LONG = "netmap:averyveryverylongifname0"

# (name, pos, substring of expected)
INVALID = [
    ("", 0, "a backend prefix"),
    ("eth0", 0, "a backend prefix such as netmap:, xdp:, packet:, pipe:, "
                "pcap:"),
    ("foo:eth0", 0, "a backend prefix"),
    ("Netmap:eth0", 0, "a backend prefix"),
    ("netmap", 6, "':' after 'netmap'"),
    ("netmap0:eth0", 6, "':' after 'netmap'"),
    ("vale", 4, "':'"),
    ("vale-0:p", 4, "switch name character"),
    ("vale0123456789ab:p", 15, "at most 15 characters in a VALE switch"),
    ("netmap:", 7, "an interface name"),
    ("netmap:-1", 7, "an interface name"),
    ("netmap: eth0", 7, "an interface name"),
    ("netmap:eth0-", 12, "a ring number (digits) after '-'"),
    ("netmap:eth0-x", 12, "a ring number (digits) after '-'"),
    ("netmap:veth-a", 12, "netmapy.open(iface=NAME)"),
    ("netmap:eth0--1", 12, "a ring number"),
    ("netmap:eth0-+1", 12, "a ring number"),
    ("netmap:eth0-%d" % (MAX_RING + 1), 12, "from 0 to %d" % MAX_RING),
    ("netmap:eth0-" + "9" * 5000, 12, "from 0 to"),
    ("netmap:eth0-\u0663", 12, "a ring number"),       # Arabic-Indic 3
    ("netmap:eth0-1x", 13, "'/' flags, '@' or the end"),
    ("netmap:eth0-1-2", 13, "'/' flags, '@' or the end"),
    ("netmap:eth0*1", 12, "'/' flags, '@' or the end"),
    ("netmap:eth0^x", 12, "'/' flags, '@' or the end"),
    ("netmap:eth0~", 12, "a queue number (digits) after '~'"),
    ("netmap:eth0~a", 12, "a queue number"),
    ("netmap:eth0{", 12, "a pipe number"),
    ("netmap:eth0}x", 12, "a pipe number"),
    ("netmap:eth0{1-2", 13, "'/' flags, '@' or the end"),
    ("netmap:eth0/Q", 12, "a flag letter after '/' (one of x z t r R T)"),
    ("netmap:eth0/", 12, "a flag letter"),
    ("netmap:eth0/x-", 13, "a flag letter"),
    ("netmap:eth0/RT", 13, "not both"),
    ("netmap:eth0/TxR", 14, "not both"),
    ("netmap:eth0~1/T", 14, "no 'T' flag"),
    ("netmap:eth0/x/", 13, "a flag letter"),
    ("netmap:eth0@", 12, "a memory region number or an option name"),
    ("netmap:eth0@@1", 12, "an option name"),
    ("netmap:eth0@0", 12, "a memory region number from 1 to 65535"),
    ("netmap:eth0@65536", 12, "from 1 to 65535"),
    ("netmap:eth0@1/x", 13, "write the '/' flags before '@N'"),
    ("netmap:eth0@1x", 13, "'@' and an option"),
    ("netmap:eth0@1@2", 14, "'@N' comes once"),
    ("netmap:eth0@share@1", 18, "'@N' comes once"),
    ("netmap:eth0@conf", 16, "':' and key=value pairs"),
    ("netmap:eth0@conf:", 17, "a key of option 'conf'"),
    ("netmap:eth0@conf:rings", 22, "'=' and a value after key 'rings'"),
    ("netmap:eth0@conf:rings=", 23, "a value for key 'rings'"),
    ("netmap:eth0@conf:rings=1,", 25, "a key of option 'conf'"),
    ("netmap:eth0@conf:bogus=1", 17, "a key of option 'conf' ('bogus' is "
                                     "not one)"),
    ("netmap:eth0@conf:rings=x", 23, "a decimal number"),
    ("netmap:eth0@conf:rings=4x", 24, "a decimal number"),
    ("netmap:eth0@conf:rings=65536", 23, "from 0 to 65535"),
    ("netmap:eth0@conf:rings=1,rings=2", 25, "each key at most once"),
    ("netmap:eth0@conf:rings=1,host_rings=1,host-rings=2", 38,
     "each key at most once"),
    ("netmap:eth0@conf=4", 16, "it has no default key"),
    ("netmap:eth0@conf:rings=1@conf:slots=2", 25, "each option at most once"),
    ("netmap:eth0@conf:ri ngs=1", 19, "a key name character"),
    ("netmap:eth0@foo", 12, "'foo' is not one"),
    ("netmap:eth0@foo", 12, "one of conf, extmem, offset, share"),
    ("netmap:eth0@conf;", 16, "an option name character"),
    ("netmap:eth0@extmem", 18, "':' and key=value pairs or '=' and a value"),
    ("netmap:eth0@extmem:if-num=1", 27, "key 'file' for option 'extmem'"),
    ("netmap:eth0@extmem=/tmp/f,if-num=3", 25, "sets one key"),
    ("netmap:eth0@extmem=/tmp/a b", 25, "a file path"),
    ("netmap:eth0@fanout", 12, "an option the netmap backend accepts"),
    ("netmap:eth0@share=eth1", 18, "a backend prefix"),
    ("netmap:eth0@share=netmap:eth1-x", 30, "a ring number"),
    ("netmap:eth0@share:name=a/b", 24, "a word"),
    ("netmap:eth0 ", 11, "no whitespace"),
    ("netmap:eth0\t-1", 11, "an interface name character"),
    ("netmap:eth0:1", 11, "':' only ends the backend prefix"),
    ("netmap:eth\u00e90", 10, "printable ASCII only"),
    ("netmap:eth\x000", 10, "an interface name character"),
    (LONG, 22, "at most 15 characters in an interface name"),
    ("netmap:.", 7, "other than '.' or '..'"),
    ("netmap:..", 7, "other than '.' or '..'"),
    ("vale0:", 6, "a VALE port name"),
    ("vale0:p.1", 7, "a VALE port name character"),
    ("vale0:" + "p" * 16, 21, "at most 15 characters in a VALE port name"),
    ("vale0:p1*", 8, "the vale backend has no '*' mode"),
    ("vale0:p1~1", 8, "the vale backend has no '~' mode"),
    ("xdp:eth0{1", 8, "pipes ('{N', '}N') need the pipe:, netmap:"),
    ("xdp:eth0}1", 8, "pipes"),
    ("packet:eth0*", 11, "the packet backend has no '*' mode"),
    ("packet:eth0^", 11, "the packet backend has no '^' mode"),
    ("xdp:eth0/x", 9, "one of R T"),
    ("xdp:eth0@1", 9, "the xdp backend has no memory regions"),
    ("xdp:eth0@extmem=f", 9, "an option the xdp backend accepts"),
    ("xdp:eth0@fanout", 9, "an option the xdp backend accepts"),
    ("packet:eth0@fanout:mode=rr", 24, "one of hash, queue, cpu, lb"),
    ("packet:eth0@fanout:group=-1", 25, "a decimal number"),
    ("pipe:x", 6, "'{' or '}' and a pipe number"),
    ("pipe:x-1", 6, "'{' or '}' and a pipe number"),
    ("pipe:x@1", 6, "'{' or '}'"),
    ("pipe:", 5, "a pipe name"),
    ("pipe:{1", 5, "a pipe name"),
    ("pipe:a:b{1", 6, "a pipe name character"),
    ("pipe:" + "p" * (MAX_PIPE_PARENT + 1) + "{1", 5 + MAX_PIPE_PARENT,
     "at most 64 characters in a pipe name"),
    ("pipe:x{", 7, "a pipe number"),
    ("pipe:x{1/x", 8, "takes no '/' flags"),
    ("pipe:x{1@fanout", 9, "an option the pipe backend accepts"),
    ("pcap:", 5, "a capture file path"),
    ("pcap:a\x00b", 6, "without NUL"),
]


@pytest.mark.parametrize("name,pos,expected", INVALID,
                         ids=[repr(v[0])[:40] for v in INVALID])
def test_invalid(name, pos, expected):
    with pytest.raises(PortNameError) as info:
        parse_name(name)
    e = info.value
    assert e.name == name
    assert e.pos == pos, str(e)
    assert expected in e.expected, str(e)
    assert e.found == (name[pos] if pos < len(name) else "")
    assert isinstance(e, ValueError)
    assert e.caret().splitlines()[1] == " " * pos + "^"


def test_error_message_names_char_and_expectation():
    with pytest.raises(PortNameError) as info:
        parse_name("netmap:eth0/Q")
    msg = str(info.value)
    assert "'Q'" in msg and "position 12" in msg and "one of x z t r R T" in msg


def test_not_a_string():
    with pytest.raises(TypeError):
        parse_name(b"netmap:eth0")


# ------------------------------------------------------------ properties

def test_properties():
    p = parse_name("xdp:eth0~3")
    assert p.queue == 3 and p.rx_only and not p.tx_only and not p.is_pipe
    assert p.upstream() == "xdp:eth0-3/R"
    n = parse_name("netmap:eth0~3/x@conf:rings=2")
    assert n.upstream() == "netmap:eth0-3/xR@conf:rings=2"
    assert parse_name(n.upstream()).mode is Mode.ONE_NIC
    assert parse_name("netmap:eth0/T").tx_only
    assert parse_name("netmap:eth0/R").rx_only
    assert parse_name("netmap:eth0-1").upstream() == "netmap:eth0-1"
    assert parse_name("netmap:eth0{2").is_pipe
    assert parse_name("pipe:a}2").is_pipe


def test_option_lookup():
    p = parse_name("netmap:eth0@conf:rings=2,tx-slots=64@share")
    assert p.option("conf") == {"rings": "2", "tx-slots": "64"}
    assert p.option("share") == {}
    assert p.option("extmem") is None


def test_mode_symbols():
    assert [m.symbol for m in Mode] == ["", "*", "^", "^", "-", "~", "{", "}"]
    assert {m for m in Mode if m.has_ring} == {
        Mode.ONE_SW, Mode.ONE_NIC, Mode.SINGLE_RX, Mode.PIPE_MASTER,
        Mode.PIPE_SLAVE}


def test_with_backend():
    p = parse_name("netmap:eth0-2/R")
    assert str(p.with_backend("xdp")) == "xdp:eth0-2/R"
    assert str(p.with_backend("packet")) == "packet:eth0-2/R"
    v = parse_name("netmap:p1-1").with_backend("vale3")
    assert (v.backend, v.switch, str(v)) == ("vale", "vale3", "vale3:p1-1")
    assert parse_name("netmap:p1").with_backend("vale").switch == "vale0"
    assert str(parse_name("netmap:eth0{1").with_backend("pipe")) == "pipe:eth0{1"
    assert str(parse_name("netmap:eth0").with_backend("pcap")) == "pcap:eth0"
    with pytest.raises(PortNameError):
        parse_name("netmap:eth0*").with_backend("packet")
    with pytest.raises(PortNameError):
        parse_name("netmap:eth0/x").with_backend("xdp")
    with pytest.raises(PortNameError):
        parse_name("netmap:eth0-1").with_backend("pcap")
    with pytest.raises(PortNameError):
        parse_name("pcap:/tmp/a").with_backend("netmap")
    with pytest.raises(ValueError):
        parse_name("netmap:eth0").with_backend("bogus")


def test_constructor_structure():
    p = PortName("netmap", "eth0", mode="one_nic", ring=1, flags="xR",
                 options={"conf": {"rings": "2"}})
    assert p == parse_name("netmap:eth0-1/xR@conf:rings=2")
    with pytest.raises(ValueError):
        PortName("bogus", "eth0")
    with pytest.raises(ValueError):
        PortName("netmap", "eth0", mode=Mode.ONE_NIC)      # ring missing
    with pytest.raises(ValueError):
        PortName("netmap", "eth0", ring=1)                 # ring not allowed
    with pytest.raises(ValueError):
        PortName("vale", "p1")                             # switch missing
    with pytest.raises(ValueError):
        PortName("netmap", "")


def test_canonical_normalises_hand_built():
    p = PortName("netmap", "eth0", options=(("conf", (("host_rings", "02"),)),))
    assert str(p.canonical()) == "netmap:eth0@conf:host-rings=2"


def test_options_table_is_extensible():
    from netmapy.names import OptionSpec, uint_value
    OPTIONS["zz-test"] = OptionSpec(keys={"n": uint_value(9)},
                                    backends=frozenset({"xdp"}))
    try:
        p = parse_name("xdp:eth0@zz-test:n=3")
        assert p.option("zz-test") == {"n": "3"}
        with pytest.raises(PortNameError):
            parse_name("xdp:eth0@zz-test:n=10")
    finally:
        del OPTIONS["zz-test"]
    with pytest.raises(PortNameError):
        parse_name("xdp:eth0@zz-test:n=3")


# ------------------------------------------------------------ hypothesis

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
IF_CHARS = "".join(c for c in map(chr, range(0x21, 0x7f))
                   if c not in "-*^{}~@/:")

ifnames = st.text(IF_CHARS, min_size=1, max_size=MAX_IFNAME).filter(
    lambda s: s not in (".", ".."))
# inside a share:port= value a ',' would end the value
nested_ifnames = st.text(IF_CHARS.replace(",", ""), min_size=1,
                         max_size=MAX_IFNAME).filter(
    lambda s: s not in (".", ".."))
vale_ports = st.text(ALNUM + "_", min_size=1, max_size=MAX_IFNAME)
switches = st.text(ALNUM + "_", max_size=11).map(lambda s: "vale" + s)
pipe_parents = st.text(ALNUM + "_.", min_size=1, max_size=MAX_PIPE_PARENT)
# Explicit alphabets (not st.text()'s default) keep hypothesis from building
# its Unicode table on a cold start: a few seconds.
ANY_CHARS = "".join(map(chr, range(0x20, 0x7f))) + "\t\n\0\u00e9\u4e2d\U0001f600"
pcap_paths = st.text(ANY_CHARS.replace("\0", ""), min_size=1, max_size=40)


def _value_strategy(checker, nested):
    kind = getattr(checker, "kind", None)
    if kind == "number":
        return st.integers(0, checker.maximum).map(str)
    if kind == "choice":
        return st.sampled_from(checker.choices)
    if kind == "word":
        return st.text(ALNUM + "_.-", min_size=1, max_size=12)
    if kind == "path":
        return st.text(ALNUM + "_.-/", min_size=1, max_size=20)
    if kind == "port" and nested:
        return port_names(nested=False).map(str)
    return None


@st.composite
def _option(draw, name, nested):
    spec = OPTIONS[name]
    strategies = {k: _value_strategy(c, nested) for k, c in spec.keys.items()}
    if any(strategies[k] is None for k in spec.required):
        return None
    usable = [k for k, s in strategies.items() if s is not None]
    keys = draw(st.permutations(usable))
    n = draw(st.integers(0, len(keys)))
    chosen = list(keys[:n])
    for k in spec.required:
        if k not in chosen:
            chosen.insert(draw(st.integers(0, len(chosen))), k)
    if not chosen and not spec.bare:
        if not usable:
            return None
        chosen = [keys[0]]
    return (name, tuple((k, draw(strategies[k])) for k in chosen))


@st.composite
def port_names(draw, nested=True):
    backend = draw(st.sampled_from(
        ["netmap", "vale", "xdp", "packet", "pipe", "pcap"] if nested else
        ["netmap", "vale", "xdp", "packet", "pipe"]))
    if backend == "pcap":
        return PortName("pcap", draw(pcap_paths))
    rules = BACKEND_RULES[backend]
    switch = None
    if backend == "vale":
        switch = draw(switches)
        ifname = draw(vale_ports)
    elif backend == "pipe":
        ifname = draw(pipe_parents)
    else:
        ifname = draw(ifnames if nested else nested_ifnames)
    mode = draw(st.sampled_from(sorted(rules.modes, key=lambda m: m.value)))
    ring = draw(st.integers(0, MAX_RING)) if mode.has_ring else None
    flags = set(draw(st.sets(st.sampled_from(rules.flags))
                     if rules.flags else st.just(set())))
    if {"R", "T"} <= flags:
        flags.discard(draw(st.sampled_from("RT")))
    if mode is Mode.SINGLE_RX:
        flags.discard("T")
    memid = None
    options = ()
    if nested:
        if rules.memid and draw(st.booleans()):
            memid = draw(st.integers(1, MAX_MEMID))
        usable = sorted(o for o, s in OPTIONS.items() if backend in s.backends)
        names = draw(st.lists(st.sampled_from(usable), unique=True,
                              max_size=3)) if usable else []
        opts = [draw(_option(n, nested)) for n in names]
        options = tuple(o for o in opts if o is not None)
    return PortName(backend, ifname, switch, mode, ring, frozenset(flags),
                    memid, options)


# database=None: do not write a .hypothesis/ directory into the tree.
FAST = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(port_names())
def test_roundtrip(p):
    text = str(p)
    q = parse_name(text)
    assert q == p
    assert str(q) == text
    assert hash(q) == hash(p)


FUZZ_CHARS = (ALNUM[:6] + "019" + "-*^{}~@/:,=_. " + "xztrRT" + "\0\t\u00e9")
prefixes = st.sampled_from(["netmap:", "vale0:", "vale:", "xdp:", "packet:",
                            "pipe:", "pcap:", "", "foo:", "netmap"])


def _check_any(text):
    try:
        p = parse_name(text)
    except PortNameError as e:
        assert e.name == text
        assert 0 <= e.pos <= len(text)
        assert isinstance(e.expected, str) and e.expected
        return
    assert isinstance(p, PortName)
    assert parse_name(str(p)) == p


@settings(max_examples=500, deadline=None, database=None)
@given(prefixes, st.text(FUZZ_CHARS, max_size=30))
def test_fuzz_grammar_chars(prefix, rest):
    _check_any(prefix + rest)


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(ANY_CHARS, max_size=40))
def test_fuzz_any_text(text):
    _check_any(text)


@FAST
@given(port_names(), st.data())
def test_fuzz_mutations(p, data):
    text = str(p)
    i = data.draw(st.integers(0, len(text)))
    op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
    c = data.draw(st.sampled_from(FUZZ_CHARS))
    if op == "insert":
        text = text[:i] + c + text[i:]
    elif op == "delete":
        text = text[:i] + text[i + 1:]
    else:
        text = text[:i] + c + text[i + 1:]
    _check_any(text)


# ------------------------------------------------- interfaces by their Linux names

@pytest.mark.parametrize("ifname", ["nb-mi0", "br-1a2b3c4d5e6f", "veth-a~b", "x@y", "a^b*c",
                                    "e{0}", "\u00e9th0", "a" * 15])
def test_interface_names_linux_accepts(ifname):
    from netmapy.names import INTERFACE_BACKENDS
    for backend in INTERFACE_BACKENDS:
        p = PortName.interface(ifname, backend, queue=3)
        assert (p.backend, p.ifname, p.mode, p.ring) == (backend, ifname, Mode.ONE_NIC, 3)
        assert p.canonical() == p
        assert not p.spellable or parse_name(str(p)) == p
    assert PortName.interface(ifname, "xdp", 2, single_rx=True).mode is Mode.SINGLE_RX
    assert PortName.interface(ifname, "xdp", host=True).mode is Mode.SW
    assert PortName.interface(ifname, "packet", rx_only=True).rx_only
    # another backend keeps the interface name as it is
    assert PortName.interface(ifname, "netmap", 1).with_backend("xdp").ifname == ifname


def test_spellable():
    assert PortName.interface("eth0").spellable
    assert not PortName.interface("nb-mi0").spellable
    assert parse_name("pipe:x{1").spellable and parse_name("pcap:/a-b").spellable


@pytest.mark.parametrize("ifname,pos,expected", [
    ("", 0, "a non-empty interface name"),
    (".", 0, "other than '.' or '..'"),
    ("a/b", 1, "Linux allows anything but '/', ':' and whitespace"),
    ("a:b", 1, "anything but '/', ':'"),
    ("a b", 1, "whitespace"),
    ("a\tb", 1, "whitespace"),
    ("a" * 16, 15, "at most 15 bytes"),
    ("\u00e9" * 8, 15, "at most 15 bytes"),       # 16 bytes in UTF-8
])
def test_interface_names_linux_refuses(ifname, pos, expected):
    from netmapy.errors import InterfaceNameError
    with pytest.raises(InterfaceNameError) as info:
        PortName.interface(ifname)
    assert info.value.pos == pos and expected in info.value.expected
    assert str(info.value).startswith("bad interface name")
    assert isinstance(info.value, PortNameError)


def test_interface_rest_still_checked_by_the_grammar():
    with pytest.raises(PortNameError) as info:
        PortName("xdp", "nb-mi0", flags="x").canonical()
    assert "one of R T" in info.value.expected and info.value.name == "xdp:nb-mi0/x"
    assert info.value.pos == 11                     # the 'x', past the real name
    with pytest.raises(PortNameError):
        PortName.interface("nb-mi0", "packet", host=True)    # packet: no host rings
    with pytest.raises(ValueError):
        PortName.interface("nb-mi0", "pipe")
    with pytest.raises(ValueError):
        PortName.interface("nb-mi0", single_rx=True)         # ~N needs N

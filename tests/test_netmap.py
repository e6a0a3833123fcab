"""The netmap backend (/dev/netmap, API 14).

Without the netmap module (this machine): every name form's translation
into the kernel request, the byte layouts of the requests (Python and C
agree, and match docs/netmap-abi.md), the compile-time ABI numbers, the
legacy encoding, the errors a user gets, and the preflight checks against
real veth interfaces in namespaces.

With /dev/netmap: the backend contract (over netmap pipes) and what only
netmap promises (single RX ring, host rings, memory shared once per region).
"""

import contextlib
import errno
import os
import struct
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, strategies as st

import netmapy
from netmapy.backends.netmap import req as nr
from netmapy.backends.netmap import preflight as pf
from netmapy.backends import BACKENDS, resolve
from netmapy.errors import (BackendError, BackendUnavailable, MemoryMismatch,
                            QueueOutOfRange)
from netmapy.names import Mode, parse_name
from netmapy.host.netns import netns

from backend_contract import (BackendContract, Channel, CythonExampleContract,
                              receive_all, send_all)
from conftest import IS_ROOT, frame_set, make_frame, needs_root

nm = pytest.importorskip("netmapy.backends.netmap",
                         reason="the netmap extension is not built")

HAVE_NETMAP = os.path.exists("/dev/netmap")
needs_netmap = pytest.mark.skipif(not HAVE_NETMAP, reason="/dev/netmap absent")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RX_ONLY, TX_ONLY, EXCL = nr.NR_RX_RINGS_ONLY, nr.NR_TX_RINGS_ONLY, nr.NR_EXCLUSIVE


# ------------------------------------------------------ name -> request

# (name, kw, expected RegisterRequest fields)
TRANSLATIONS = [
    ("netmap:eth0", {}, dict(nr_name="eth0", nr_mode=nr.NR_REG_ALL_NIC, nr_ringid=0,
                             nr_flags=0, nr_mem_id=0, kind="nic")),
    ("netmap:eth0-3", {}, dict(nr_mode=nr.NR_REG_ONE_NIC, nr_ringid=3, nr_flags=0)),
    ("netmap:eth0-0/T", {}, dict(nr_mode=nr.NR_REG_ONE_NIC, nr_ringid=0,
                                 nr_flags=TX_ONLY)),
    ("netmap:eth3~4", {}, dict(nr_name="eth3", nr_mode=nr.NR_REG_ONE_NIC, nr_ringid=4,
                               nr_flags=RX_ONLY, single_rx=True)),
    ("netmap:eth3~4/R", {}, dict(nr_mode=nr.NR_REG_ONE_NIC, nr_ringid=4,
                                 nr_flags=RX_ONLY, single_rx=True)),
    ("netmap:eth3~4/x@2", {}, dict(nr_mode=nr.NR_REG_ONE_NIC, nr_ringid=4,
                                   nr_flags=RX_ONLY | EXCL, nr_mem_id=2)),
    ("netmap:eth3-4/R", {}, dict(nr_mode=nr.NR_REG_ONE_NIC, nr_ringid=4,
                                 nr_flags=RX_ONLY, single_rx=False)),
    ("netmap:eth0^", {}, dict(nr_mode=nr.NR_REG_SW, nr_ringid=0)),
    ("netmap:eth0^2", {}, dict(nr_mode=nr.NR_REG_ONE_SW, nr_ringid=2)),
    ("netmap:eth0^0/R", {}, dict(nr_mode=nr.NR_REG_ONE_SW, nr_ringid=0, nr_flags=RX_ONLY)),
    ("netmap:eth0*", {}, dict(nr_mode=nr.NR_REG_NIC_SW)),
    ("netmap:eth0*/T", {}, dict(nr_mode=nr.NR_REG_NIC_SW, nr_flags=TX_ONLY)),
    ("netmap:eth0/x", {}, dict(nr_flags=EXCL)),
    ("netmap:eth0/z", {}, dict(nr_flags=nr.NR_ZCOPY_MON)),
    ("netmap:eth0/t", {}, dict(nr_flags=nr.NR_MONITOR_TX)),
    ("netmap:eth0/r", {}, dict(nr_flags=nr.NR_MONITOR_RX)),
    ("netmap:eth0/ztr", {}, dict(nr_flags=nr.NR_ZCOPY_MON | nr.NR_MONITOR_TX |
                                 nr.NR_MONITOR_RX)),
    ("netmap:eth0-1/xR", {}, dict(nr_mode=nr.NR_REG_ONE_NIC, nr_ringid=1,
                                  nr_flags=EXCL | RX_ONLY)),
    ("netmap:eth0@7", {}, dict(nr_mem_id=7)),
    ("netmap:eth0-4094", {}, dict(nr_ringid=4094)),
    ("netmap:x{1", {}, dict(nr_name="x{1", nr_mode=nr.NR_REG_ALL_NIC, nr_ringid=0,
                            kind="pipe", pipe=("{", 1))),
    ("netmap:x}1", {}, dict(nr_name="x}1", nr_mode=nr.NR_REG_ALL_NIC, kind="pipe",
                            pipe=("}", 1))),
    ("netmap:eth0{12/x", {}, dict(nr_name="eth0{12", nr_flags=EXCL, kind="pipe")),
    ("vale0:p1", {}, dict(nr_name="vale0:p1", nr_mode=nr.NR_REG_ALL_NIC, kind="vale",
                          ifname="p1")),
    ("vale:p", {}, dict(nr_name="vale:p", kind="vale")),
    ("valeSw_1:port_2-3", {}, dict(nr_name="valeSw_1:port_2", nr_mode=nr.NR_REG_ONE_NIC,
                                   nr_ringid=3, kind="vale")),
    ("vale0:p1{3/x@2", {}, dict(nr_name="vale0:p1{3", nr_flags=EXCL, nr_mem_id=2,
                                kind="pipe")),
    ("vale0:p1}0", {}, dict(nr_name="vale0:p1}0", kind="pipe")),
    ("netmap:eth0@conf:rings=4,slots=1024", {},
     dict(nr_tx_rings=4, nr_rx_rings=4, nr_tx_slots=1024, nr_rx_slots=1024,
          nr_host_tx_rings=0, nr_host_rx_rings=0)),
    ("netmap:eth0^@conf:host-rings=3", {},
     dict(nr_mode=nr.NR_REG_SW, nr_host_tx_rings=3, nr_host_rx_rings=3)),
    ("netmap:eth0*@conf:host-tx-rings=2,host-rx-rings=5", {},
     dict(nr_host_tx_rings=2, nr_host_rx_rings=5)),
    # the specific keys win over the aggregate ones whatever the order
    ("netmap:eth0@conf:tx-rings=2,rings=4,rx-slots=64,slots=512", {},
     dict(nr_tx_rings=2, nr_rx_rings=4, nr_tx_slots=512, nr_rx_slots=64)),
    ("vale0:p@conf:tx-slots=256,host-rings=1", {},
     dict(nr_tx_slots=256, nr_rx_slots=0, nr_host_tx_rings=1, nr_host_rx_rings=1)),
    # keyword overrides of @conf
    ("netmap:eth0@conf:slots=512", dict(slots=2048, rx_slots=128),
     dict(nr_tx_slots=2048, nr_rx_slots=128)),
    ("netmap:eth0^", dict(host_rings=4, extra_bufs=32),
     dict(nr_host_tx_rings=4, nr_host_rx_rings=4, nr_extra_bufs=32)),
    ("netmap:eth0", dict(no_tx_poll=True), dict(nr_flags=nr.NR_NO_TX_POLL)),
    # memory
    ("netmap:eth0@share=netmap:eth1-2", {},
     dict(share=nr.Share(port="eth1", port_spec="netmap:eth1-2"), nr_mem_id=0)),
    ("netmap:eth0@share:port=vale0:p3", {},
     dict(share=nr.Share(port="vale0:p3", port_spec="vale0:p3"))),
    ("netmap:eth0@share:name=grp", {}, dict(share=nr.Share(group="grp"))),
    ("netmap:eth0@share", {}, dict(share=nr.Share(group="default"))),
    ("netmap:eth0@extmem=/dev/shm/m.img", {},
     dict(extmem=nr.Extmem(file="/dev/shm/m.img"))),
    ("netmap:eth0@extmem:file=f,buf-num=100,buf-size=4096,ring-num=8", {},
     dict(extmem=nr.Extmem(file="f", buf_num=100, buf_size=4096, ring_num=8))),
    ("netmap:eth0@offset=64", {}, dict(offsets=nr.Offsets(64, 64, 0))),
    ("netmap:eth0@offset:initial=128,bits=10", {}, dict(offsets=nr.Offsets(128, 128, 10))),
]


@pytest.mark.parametrize("name,kw,fields", TRANSLATIONS,
                         ids=["%s%s" % (t[0], t[1] or "") for t in TRANSLATIONS])
def test_translate(name, kw, fields):
    req = nr.translate(name, **kw)
    for k, v in fields.items():
        assert getattr(req, k) == v, (k, req.describe())
    assert req.source == str(parse_name(name))
    assert req.describe().startswith("nr_name=%r" % req.nr_name)
    # a parsed name gives the same request as the string
    assert nr.translate(parse_name(name), **kw) == req


@pytest.mark.parametrize("n", [0, 1, 4, 63])
def test_single_rx_is_upstreams_dash_n_slash_r(n):
    """'~N' (CloudFlare's single RX queue) is sent exactly as upstream's
    '-N/R': ONE_NIC, ring N, NR_RX_RINGS_ONLY (no private mode number)."""
    a = nr.translate("netmap:eth3~%d" % n)
    b = nr.translate("netmap:eth3-%d/R" % n)
    c = nr.translate(parse_name("netmap:eth3~%d" % n).upstream())
    for r in (b, c):
        assert (a.nr_name, a.nr_mode, a.nr_ringid, a.nr_flags) == \
            (r.nr_name, r.nr_mode, r.nr_ringid, r.nr_flags)
    assert a.pack_body() == b.pack_body()
    assert a.nr_mode != nr.NR_REG_NULL           # 7: the fork's value clashes
    assert a.single_rx and not b.single_rx
    assert not a.binds_tx and a.binds_rx and a.binds_nic and not a.binds_host


@pytest.mark.parametrize("ifname", ["nb-mi0", "br-1a2b3c4d5e6f", "a~b@c"])
def test_interfaces_the_string_cannot_spell_translate(ifname):
    """A PortName built structurally for an interface with '-' (or '~', '@')
    in its name goes to the kernel with that name, in the request bytes too
    (libnetmap would have cut the name at the '-'); the rest of the request
    is what the same binding of a spellable name gives."""
    from netmapy import PortName
    p = PortName.interface(ifname, "netmap", queue=2, single_rx=True)
    req = nr.translate(p)
    ref = nr.translate("netmap:eth3~2")
    assert req.nr_name == req.ifname == ifname
    assert (req.nr_mode, req.nr_ringid, req.nr_flags, req.single_rx) == \
        (ref.nr_mode, ref.nr_ringid, ref.nr_flags, ref.single_rx)
    hdr, body, opts = nm.port._c_pack_register(req)
    name64 = struct.unpack("<HHI64sQQ", hdr)[3]
    assert name64.rstrip(b"\0").decode() == ifname
    assert body == ref.pack_body() and hdr == req.pack_header()
    host = nr.translate(PortName.interface(ifname, "netmap", host=True))
    assert host.nr_name == ifname and host.nr_mode == nr.NR_REG_SW


def test_binding_properties():
    assert nr.translate("netmap:eth0^").binds_host
    assert nr.translate("netmap:eth0*").binds_host
    assert nr.translate("netmap:eth0*").binds_nic
    assert not nr.translate("netmap:eth0^2").binds_nic
    assert nr.translate("netmap:eth0/T").binds_tx and not nr.translate("netmap:eth0/T").binds_rx
    assert nr.translate("netmap:eth0/t").is_monitor


TRANSLATE_ERRORS = [
    ("netmap:eth0@3@share=netmap:eth1", {}, "@share both choose"),
    ("netmap:eth0@share:name=g", dict(mem_id=4), "@share both choose"),
    ("netmap:eth0@2@extmem=f", {}, "@extmem makes its own memory region"),
    ("netmap:eth0@extmem=f@share", {}, "cannot be combined"),
    ("netmap:eth0@share=xdp:eth1", {}, "share the memory of another netmap port"),
    ("xdp:eth0", {}, "opens netmap: and valeX: ports"),
    ("pipe:x{1", {}, "opens netmap: and valeX: ports"),
    ("netmap:eth0", dict(rings=70000), "more than 65535"),
]


@pytest.mark.parametrize("name,kw,msg", TRANSLATE_ERRORS, ids=[t[0] for t in TRANSLATE_ERRORS])
def test_translate_errors(name, kw, msg):
    with pytest.raises(BackendError, match=msg):
        nr.translate(name, **kw)


# --------------------------------------------------- byte layouts and ABI

@pytest.mark.parametrize("name,kw,fields", TRANSLATIONS,
                         ids=["%s%s" % (t[0], t[1] or "") for t in TRANSLATIONS])
def test_c_and_python_build_the_same_bytes(name, kw, fields):
    req = nr.translate(name, **kw)
    hdr, body, opts = nm.port._c_pack_register(req)
    assert hdr == req.pack_header()
    assert body == req.pack_body()
    assert opts == req.pack_options()
    assert len(hdr) == 88 and len(body) == 56
    # the header: version 14, REGISTER, the kernel name NUL-padded
    ver, typ, res, name64, opt, bod = struct.unpack("<HHI64sQQ", hdr)
    assert (ver, typ, res, opt, bod) == (14, nr.REQ_REGISTER, 0, 0, 0)
    assert name64.rstrip(b"\0").decode() == req.nr_name
    back = nr.unpack_register(body)
    for f in ("nr_mode", "nr_ringid", "nr_flags", "nr_mem_id", "nr_tx_slots",
              "nr_rx_slots", "nr_tx_rings", "nr_rx_rings", "nr_host_tx_rings",
              "nr_host_rx_rings", "nr_extra_bufs"):
        assert back[f] == getattr(req, f), f


def test_option_layouts():
    req = nr.translate("netmap:eth0@extmem:file=f,if-num=3,if-size=1024,ring-num=9,"
                       "ring-size=33024,buf-num=777,buf-size=4096")
    (typ, raw), = req.pack_options(usrptr=0x7f0000001000, memsize=1 << 26)
    assert typ == nr.OPT_EXTMEM and len(raw) == 96
    nxt, rt, status, size, usr = struct.unpack_from("<QIIQQ", raw)
    assert (nxt, rt, status, size, usr) == (0, 1, 0, 0, 0x7f0000001000)
    assert struct.unpack_from("<Q", raw, 32)[0] == 1 << 26          # nr_memsize
    assert struct.unpack_from("<II", raw, 32 + 24) == (3, 1024)     # if pool
    assert struct.unpack_from("<II", raw, 32 + 40) == (9, 33024)    # ring pool
    assert struct.unpack_from("<II", raw, 32 + 56) == (777, 4096)   # buf pool
    _, _, opts = nm.port._c_pack_register(req, 0x7f0000001000, 1 << 26)
    assert opts == req.pack_options(usrptr=0x7f0000001000, memsize=1 << 26)
    req = nr.translate("netmap:eth0@offset:initial=64,bits=12")
    (typ, raw), = req.pack_options()
    assert typ == nr.OPT_OFFSETS and len(raw) == 56
    assert struct.unpack_from("<QQII", raw, 24) == (64, 64, 12, 0)


def test_abi_sizes_match_the_documented_layout(capsys):
    """The C structs the extension was compiled with (nm_ctrl.h, also
    pinned there by _Static_assert) against docs/netmap-abi.md."""
    sizes = nm.abi_sizes()
    cname = {"nmreq_header": "nmc_header", "nmreq_register": "nmc_register",
             "nmreq_port_info_get": "nmc_port_info", "nmreq_option": "nmc_option",
             "nmreq_pools_info": "nmc_pools_info", "nmreq_opt_extmem": "nmc_opt_extmem",
             "nmreq_opt_offsets": "nmc_opt_offsets", "nmreq": "nmc_legacy",
             "netmap_slot": "netmap_slot", "netmap_ring": "netmap_ring",
             "netmap_if": "netmap_if"}
    checked = 0
    with capsys.disabled():
        print()
        for doc, (size, fields) in nr.LAYOUTS.items():
            c = cname[doc]
            assert sizes["sizeof " + c] == size, doc
            print("  %-22s %4d bytes:" % (doc, size), ", ".join(
                "%s@%d" % (f, o) for f, o, _ in fields))
            for f, off, _ in fields:
                assert sizes["%s.%s" % (c, f)] == off, (doc, f)
                checked += 1
    assert checked > 80
    for k, v in nr.IOCTLS.items():
        assert sizes[k] == v, k
    assert nr.ioctl_numbers() == nr.IOCTLS


def test_python_struct_formats_match_layouts():
    for doc, fmt in [("nmreq_header", nr._HEADER), ("nmreq_register", nr._REGISTER),
                     ("nmreq_port_info_get", nr._PORT_INFO), ("nmreq_option", nr._OPTION),
                     ("nmreq_pools_info", nr._POOLS), ("nmreq_opt_extmem", nr._EXTMEM),
                     ("nmreq_opt_offsets", nr._OFFSETS), ("nmreq", nr._LEGACY)]:
        assert fmt.size == nr.LAYOUTS[doc][0], doc


def test_ring_dir_is_what_the_kernel_writes():
    from netmapy.includes import __file__ as inc
    text = open(os.path.join(os.path.dirname(inc), "nm_abi.h")).read()
    assert "#define NR_RX 0" in text and "#define NR_TX 1" in text


def test_port_info_layout_tells_api13_from_api14():
    """The probe's premise: API 14 puts nr_mem_id at offset 24 of the
    port-info body (API 13, without host-ring fields, had it at 20)."""
    raw = nr.pack_port_info(nr.PortInfo(mem_id=1))
    assert struct.unpack_from("<H", raw, 24)[0] == 1
    assert struct.unpack_from("<H", raw, 20)[0] == 0
    assert nr.unpack_port_info(raw).mem_id == 1


# ------------------------------------------------------------- legacy

LEGACY = [
    ("netmap:eth0", dict(nr_name="eth0", mode=nr.NR_REG_ALL_NIC, nr_ringid=0)),
    ("netmap:eth3~4", dict(nr_name="eth3", mode=nr.NR_REG_ONE_NIC,
                           nr_ringid=4 | nr.LEGACY_HW_RING,
                           nr_flags=nr.NR_REG_ONE_NIC | RX_ONLY)),
    ("netmap:eth0-2/x@3", dict(nr_ringid=2 | nr.LEGACY_HW_RING, nr_arg2=3,
                               nr_flags=nr.NR_REG_ONE_NIC | EXCL)),
    ("netmap:eth0^", dict(mode=nr.NR_REG_SW, nr_ringid=nr.LEGACY_SW_RING)),
    ("netmap:eth0*", dict(mode=nr.NR_REG_NIC_SW, nr_ringid=0)),
    ("netmap:x{5", dict(nr_name="x", mode=nr.NR_REG_PIPE_MASTER, nr_ringid=5)),
    ("vale0:p}9", dict(nr_name="vale0:p", mode=nr.NR_REG_PIPE_SLAVE, nr_ringid=9)),
    ("netmap:eth0@conf:slots=256,rings=2", dict(nr_tx_slots=256, nr_rx_slots=256,
                                                nr_tx_rings=2, nr_rx_rings=2)),
]


@pytest.mark.parametrize("name,fields", LEGACY, ids=[x[0] for x in LEGACY])
def test_legacy_encoding(name, fields):
    lreq = nr.translate(name).legacy()
    assert lreq.nr_version == 11 and lreq.nr_cmd == 0
    for k, v in fields.items():
        assert getattr(lreq, k) == v, k
    raw = lreq.pack()
    assert len(raw) == 60
    assert nm.port._c_pack_legacy(lreq) == raw
    assert raw[:16].rstrip(b"\0").decode() == lreq.nr_name


def test_legacy_no_tx_poll_moves_to_ringid():
    lreq = nr.translate("netmap:eth0", no_tx_poll=True).legacy()
    assert lreq.nr_ringid & nr.LEGACY_NO_TX_POLL
    assert not lreq.nr_flags & nr.NR_NO_TX_POLL


@pytest.mark.parametrize("name,msg", [
    ("netmap:eth0^1", "one host ring"),
    ("netmap:eth0^@conf:host-rings=2", "host ring counts"),
    ("netmap:eth0@extmem=f", "@extmem"),
    ("netmap:eth0@offset=64", "@offset"),
    ("vale0:averylongport{1", "15 characters"),
])
def test_legacy_refuses_what_it_cannot_say(name, msg):
    with pytest.raises(BackendError, match=msg):
        nr.translate(name).legacy()


# ------------------------------------------------- property: any name

_ifname = st.text("abcdefgh0123456789_.", min_size=1, max_size=12).filter(
    lambda s: s not in (".", ".."))
_flags = st.sets(st.sampled_from("xztrR")).map(lambda s: "/" + "".join(sorted(s)) if s else "")


@st.composite
def netmap_names(draw):
    ifn = draw(_ifname)
    kind = draw(st.sampled_from(["", "-", "~", "^", "^N", "*", "{", "}", "vale"]))
    n = draw(st.integers(0, 4094))
    suffix = {"": "", "-": "-%d" % n, "~": "~%d" % n, "^": "^", "^N": "^%d" % n,
              "*": "*", "{": "{%d" % n, "}": "}%d" % n, "vale": ""}[kind]
    flags = draw(_flags)
    if kind == "~":
        flags = flags.replace("T", "")
    mem = draw(st.one_of(st.just(""), st.integers(1, 65535).map(lambda m: "@%d" % m)))
    conf = draw(st.one_of(st.just(""), st.tuples(
        st.sampled_from(["rings", "slots", "host-rings", "tx-slots", "rx-rings"]),
        st.integers(0, 65535)).map(lambda kv: "@conf:%s=%d" % kv)))
    if kind == "vale":
        return "vale0:%s%s%s%s" % (ifn.replace(".", "_")[:15], flags, mem, conf)
    return "netmap:%s%s%s%s%s" % (ifn, suffix, flags, mem, conf)


@given(netmap_names())
def test_every_name_translates_and_packs_alike(name):
    p = parse_name(name)
    req = nr.translate(p)
    hdr, body, opts = nm.port._c_pack_register(req)
    assert (hdr, body, opts) == (req.pack_header(), req.pack_body(), req.pack_options())
    assert req.nr_mode in (1, 2, 3, 4, 8)         # never the deprecated pipe modes
    if p.mode is Mode.SINGLE_RX:
        assert req.nr_flags & RX_ONLY and req.nr_mode == nr.NR_REG_ONE_NIC
    if p.is_pipe:
        assert req.nr_name.endswith(("{%d" % p.ring, "}%d" % p.ring))
    try:
        lreq = req.legacy()
    except BackendError:
        return
    assert nm.port._c_pack_legacy(lreq) == lreq.pack()


# ------------------------------------------------- errors without the module

@pytest.mark.skipif(HAVE_NETMAP, reason="/dev/netmap exists here")
class TestWithoutModule:
    def test_open_port_says_how_to_load_the_module(self):
        with pytest.raises(OSError) as ei:
            nm.open_port(parse_name("netmap:eth0"))
        e = ei.value
        assert e.errno == errno.ENOENT
        msg = str(e)
        assert "/dev/netmap does not exist" in msg
        assert "insmod netmap.ko" in msg and "modprobe netmap" in msg
        assert "netmap:eth0" in msg

    def test_probe_says_the_same(self):
        with pytest.raises(OSError, match="insmod netmap.ko") as ei:
            nm.probe_api()
        assert ei.value.errno == errno.ENOENT
        with pytest.raises(OSError, match="/dev/netmap"):
            nm.port_info("netmap:eth0")

    def test_vale_needs_the_module(self):
        with pytest.raises(BackendUnavailable, match="/dev/netmap does not exist"):
            netmapy.open("vale0:p1")

    def test_explicit_netmap_backend_is_unavailable(self):
        with pytest.raises(BackendUnavailable,
                           match="netmap backend is not available here.*/dev/netmap"):
            BACKENDS["netmap"].open(parse_name("netmap:eth0"))

    def test_netmap_names_fall_back(self):
        assert resolve(parse_name("netmap:nmfb{1")).name == "pipe"
        with netmapy.open("netmap:nmfb{1") as a, netmapy.open("netmap:nmfb}1") as b:
            assert a.backend == b.backend == "pipe"

    def test_no_memory_without_ports(self):
        with pytest.raises(TypeError, match="made by opening netmap ports"):
            nm.NetmapMemory()
        assert nm.memories() == {}


def test_offset_option_is_refused_before_any_system_call():
    port = nm.NetmapPort(parse_name("netmap:eth0@offset=64"))
    with pytest.raises(BackendError, match="drop @offset"):
        port._open()
    port.close()


def test_unknown_options_are_refused():
    port = nm.NetmapPort(parse_name("vale0:p"))
    with pytest.raises(TypeError, match="unknown option.*bogus"):
        port._open(bogus=1)
    port.close()


# ------------------------------------------------------------ preflight

def test_parse_ethtool_k():
    text = """Features for eth9:
rx-checksumming: on
tx-checksumming: on
\ttx-checksum-ipv4: off [fixed]
\ttx-checksum-ip-generic: on
tcp-segmentation-offload: on
\ttx-tcp-segmentation: on
generic-segmentation-offload: off [requested on]
generic-receive-offload: on
large-receive-offload: off [fixed]
rx-vlan-offload: on
rx-gro-hw: off [fixed]
"""
    f = pf.parse_ethtool_k(text)
    assert f["rx-checksum"].active and not f["rx-checksum"].fixed
    assert f["tx-checksum-ipv4"].fixed and not f["tx-checksum-ipv4"].active
    assert f["tx-tcp-segmentation"].active
    assert f["tx-generic-segmentation"] == pf.Feature(True, True, False, False)
    assert f["rx-gro"].active and f["rx-lro"].fixed
    assert f["rx-vlan-hw-parse"].active
    assert "tx-checksumming" not in f and "tcp-segmentation-offload" not in f


def _state(loaded=True, admode=0, holders=(), **params):
    p = dict(params)
    if loaded:
        p["admode"] = admode
    return pf.ModuleState(loaded, loaded, p, frozenset(holders))


@pytest.mark.parametrize("driver,state,kind,sev,text", [
    ("ixgbe", _state(holders=["ixgbe"]), "native", None, None),
    ("mlx5_core", _state(holders=["mlx5_core"]), "native", None, None),
    ("st_gmac", _state(holders=["stmmac"]), "native", None, None),
    ("ixgbe", _state(), "emulated", "warning", "not netmap's patched build"),
    ("ixgbe", _state(admode=1), "emulated", "error", "admode=1"),
    ("ixgbe", _state(admode=2, holders=["ixgbe"]), "emulated", "warning", "admode=2"),
    ("bnxt_en", _state(), "emulated", "warning", "no native netmap support"),
    ("bnxt_en", _state(admode=1), "emulated", "error", "makes the open fail"),
    ("veth", _state(loaded=False), "unknown", "info", "native netmap patch"),
    ("tun", _state(loaded=False), "emulated", "warning", "emulated (generic) adapter"),
])
def test_classify_adapter(driver, state, kind, sev, text):
    k, f = pf.classify_adapter(driver, state)
    assert k == kind
    if sev is None:
        assert f is None
    else:
        assert f[0] == sev and text in f[1]
        if sev != "info" and "admode" in f[1]:
            assert "admode" in f[2]


def test_pool_findings_name_the_parameter_to_raise():
    st_small = _state(buf_num=4096, ring_num=4, ring_size=8192)
    req = nr.translate("vale0:p@conf:rings=4,slots=2048")
    fs = pf._pool_findings(req, st_small, None, None, "p")
    text = "\n".join(str(f) for f in fs)
    assert "16384 buffers" in text and "buf_num" in text
    assert "the port needs 8 rings" in text and "ring_num" in text
    assert "ring_size is 8192" in text and "echo 36864 > /sys/module/netmap/parameters/ring_size" in text
    assert all(f.severity == "error" for f in fs)
    # a private memory region (@N) is not the global pools
    assert pf._pool_findings(req.with_mem_id(5), st_small, None, None, "p") == []
    # defaults when the module is not loaded
    fs = pf._pool_findings(nr.translate("vale0:p@conf:slots=4096"),
                           _state(loaded=False), None, None, "p")
    assert fs and "netmap's defaults" in str(fs[0])


def test_link_timeout_error_is_an_interface_error():
    e = pf.LinkTimeout("eth3", 2.0, 1, "do something")
    assert isinstance(e, OSError) and e.errno == errno.ENOLINK
    assert "eth3" in str(e) and "do something" in str(e)


def _nsrun(ns, *argv):
    subprocess.run(["ip", "netns", "exec", ns] + list(argv), check=True,
                   capture_output=True)


def _by_check(findings, check):
    return [f for f in findings if f.check == check]


@pytest.fixture(scope="module")
def veth():
    if not IS_ROOT:
        pytest.skip("needs root (creates network namespaces)")
    from tools.lab import SingleNsVeth
    with SingleNsVeth(queues=2) as v:
        yield v


@pytest.fixture
def clean_veth(veth):
    """The veth with the lab's settings restored after each test."""
    yield veth
    _nsrun(veth.ns, "ethtool", "-K", veth.if_a, "gro", "off", "gso", "off", "tso", "off",
           "tx", "off", "rx", "off")
    for i in (veth.if_a, veth.if_b):
        subprocess.run(["ip", "-n", veth.ns, "link", "set", "dev", i, "up", "promisc", "off"],
                       check=True)


@needs_root
class TestPreflightOnVeth:
    def test_ioctl_features_equal_ethtool_k(self, clean_veth):
        v = clean_veth
        _nsrun(v.ns, "ethtool", "-K", v.if_a, "gro", "on", "tso", "on", "tx", "on")
        with netns(v.ns):
            a = pf.features(v.if_a)
        b = pf.features_via_ethtool(v.if_a, v.ns)
        common = set(a) & set(b)
        assert len(common) > 30
        assert {k for k in common if a[k].active} == {k for k in common if b[k].active}
        assert a["rx-gro"].active and a["tx-tcp-segmentation"].active

    def test_offloads_breaking_the_host_path(self, clean_veth):
        v = clean_veth
        name = "netmap:%s^" % v.if_a
        # the lab leaves UDP GSO to the kernel's default (on in some kernels)
        subprocess.run(["ip", "netns", "exec", v.ns, "ethtool", "-K", v.if_a,
                        "tx-udp-segmentation", "off"], capture_output=True)
        assert _by_check(pf.check(name, netns=v.ns), "offload") == []
        _nsrun(v.ns, "ethtool", "-K", v.if_a, "gro", "on", "gso", "on", "tso", "on",
               "tx", "on", "rx", "on")
        fs = _by_check(pf.check(name, netns=v.ns), "offload")
        assert len(fs) == 1 and fs[0].severity == "error"
        f = fs[0]
        assert "host rings" in f.message
        for w in ("tx", "rx", "gso", "tso", "gro"):
            assert "%s off" % w in f.fix
        assert f.fix.startswith("ip netns exec %s ethtool -K %s " % (v.ns, v.if_a))
        # the fix, run as printed, fixes it
        subprocess.run(f.fix, shell=True, check=True, capture_output=True)
        assert _by_check(pf.check(name, netns=v.ns), "offload") == []

    def test_same_checks_through_the_ethtool_command(self, clean_veth):
        v = clean_veth
        _nsrun(v.ns, "ethtool", "-K", v.if_a, "tso", "on", "tx", "on")
        a = _by_check(pf.check("netmap:%s*" % v.if_a, netns=v.ns), "offload")
        b = _by_check(pf.check("netmap:%s*" % v.if_a, netns=v.ns, use_ethtool_cli=True),
                      "offload")
        assert a == b and a and "tso off" in a[0].fix and "tx off" in a[0].fix

    def test_forwarding_counts_as_host_path(self, clean_veth):
        v = clean_veth
        _nsrun(v.ns, "ethtool", "-K", v.if_a, "tso", "on", "tx", "on")
        assert _by_check(pf.check("netmap:%s~1" % v.if_a, netns=v.ns), "offload") == []
        fs = _by_check(pf.check("netmap:%s~1" % v.if_a, netns=v.ns, forward=True),
                       "offload")
        assert fs and "transparent forwarding" in fs[0].message

    def test_gro_breaks_nic_rings_of_the_emulated_adapter(self, clean_veth):
        v = clean_veth
        _nsrun(v.ns, "ethtool", "-K", v.if_a, "gro", "on")
        fs = _by_check(pf.check("netmap:%s-0" % v.if_a, netns=v.ns), "offload")
        assert len(fs) == 1 and "gro off" in fs[0].fix and "emulated" in fs[0].message

    def test_interface_down(self, clean_veth):
        v = clean_veth
        subprocess.run(["ip", "-n", v.ns, "link", "set", "dev", v.if_a, "down"], check=True)
        fs = _by_check(pf.check("netmap:%s" % v.if_a, netns=v.ns), "link")
        assert [f.severity for f in fs] == ["error"]
        assert fs[0].fix == "ip netns exec %s ip link set dev %s up" % (v.ns, v.if_a)
        subprocess.run(fs[0].fix, shell=True, check=True)
        pf.wait_for_link(v.if_a, timeout=5, netns=v.ns)
        assert _by_check(pf.check("netmap:%s" % v.if_a, netns=v.ns), "link") == []

    def test_no_carrier(self, clean_veth):
        v = clean_veth
        subprocess.run(["ip", "-n", v.ns, "link", "set", "dev", v.if_b, "down"], check=True)
        fs = _by_check(pf.check("netmap:%s" % v.if_a, netns=v.ns), "link")
        assert [f.severity for f in fs] == ["warning"] and "no carrier" in fs[0].message

    def test_promiscuous_mode_for_bridging(self, clean_veth):
        v = clean_veth
        assert _by_check(pf.check("netmap:%s" % v.if_a, netns=v.ns), "promisc") == []
        fs = _by_check(pf.check("netmap:%s" % v.if_a, netns=v.ns, bridge=True), "promisc")
        assert len(fs) == 1 and fs[0].severity == "error"
        assert fs[0].fix == "ip netns exec %s ip link set dev %s promisc on" % (v.ns, v.if_a)
        subprocess.run(fs[0].fix, shell=True, check=True)
        assert _by_check(pf.check("netmap:%s" % v.if_a, netns=v.ns, bridge=True),
                         "promisc") == []

    def test_missing_queue(self, clean_veth):
        v = clean_veth
        assert _by_check(pf.check("netmap:%s~1" % v.if_a, netns=v.ns), "queue") == []
        fs = _by_check(pf.check("netmap:%s~5" % v.if_a, netns=v.ns), "queue")
        assert len(fs) == 1 and "2 RX queue(s)" in fs[0].message
        assert "ethtool -L %s combined 6" % v.if_a in fs[0].fix

    def test_adapter_of_a_veth(self, clean_veth):
        v = clean_veth
        fs = _by_check(pf.check("netmap:%s" % v.if_a, netns=v.ns), "adapter")
        text = " ".join(f.message for f in fs)
        if pf.module_state().loaded:
            # netmap loaded: the stock veth module is not netmap's build
            kind, _ = pf.classify_adapter("veth", pf.module_state())
            assert kind == "native" or "emulated (generic) adapter" in text
        else:
            assert "veth" in text and "peer" in text

    def test_conf_counts_on_a_nic(self, clean_veth):
        v = clean_veth
        fs = _by_check(pf.check("netmap:%s@conf:rings=4" % v.if_a, netns=v.ns), "rings")
        assert fs and "ignored for a NIC" in fs[0].message
        assert "ethtool -L %s combined 4" % v.if_a in fs[0].fix

    def test_missing_interface(self, clean_veth):
        fs = pf.check("netmap:nosuch0", netns=clean_veth.ns)
        assert any(f.check == "link" and "no network interface 'nosuch0'" in f.message
                   for f in fs)

    def test_module_finding_here(self, clean_veth):
        fs = _by_check(pf.check("netmap:%s" % clean_veth.if_a, netns=clean_veth.ns),
                       "module")
        if HAVE_NETMAP:
            assert fs == []
        else:
            assert fs[0].severity == "error" and "insmod netmap.ko" in fs[0].fix

    def test_wait_for_link_comes_back(self, clean_veth):
        v = clean_veth
        subprocess.run(["ip", "-n", v.ns, "link", "set", "dev", v.if_b, "down"], check=True)
        t = threading.Timer(0.4, subprocess.run, (["ip", "-n", v.ns, "link", "set", "dev",
                                                   v.if_b, "up"],))
        t.start()
        try:
            res = pf.wait_for_link(v.if_a, timeout=10, settle=0.2, netns=v.ns)
        finally:
            t.join()
        assert res.up and 0.4 <= res.waited < 10

    def test_wait_for_link_counts_flaps(self, clean_veth):
        v = clean_veth

        def flap():
            time.sleep(0.1)
            subprocess.run(["ip", "-n", v.ns, "link", "set", "dev", v.if_b, "down"])
            time.sleep(0.3)
            subprocess.run(["ip", "-n", v.ns, "link", "set", "dev", v.if_b, "up"])
        t = threading.Thread(target=flap)
        t.start()
        try:
            res = pf.wait_for_link(v.if_a, timeout=10, settle=1.0, netns=v.ns)
        finally:
            t.join()
        assert res.up and res.flaps >= 1 and res.waited >= 1.0

    def test_wait_for_link_times_out_with_the_fix(self, clean_veth):
        v = clean_veth
        subprocess.run(["ip", "-n", v.ns, "link", "set", "dev", v.if_b, "down"], check=True)
        t0 = time.monotonic()
        with pytest.raises(pf.LinkTimeout) as ei:
            pf.wait_for_link(v.if_a, timeout=0.5, netns=v.ns)
        assert 0.5 <= time.monotonic() - t0 < 3
        e = ei.value
        assert e.errno == errno.ENOLINK and "no carrier" in str(e)
        assert "ethtool %s" % v.if_a in e.fix and "link_timeout" in e.fix

    def test_command_line(self, clean_veth):
        v = clean_veth
        _nsrun(v.ns, "ethtool", "-K", v.if_a, "tso", "on", "tx", "on")
        out = subprocess.run([sys.executable, "-m", "netmapy.preflight", "--netns", v.ns,
                              "netmap:%s^" % v.if_a], cwd=REPO, capture_output=True,
                             text=True)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "ethtool -K %s tx off tso off" % v.if_a in out.stdout
        assert "Traceback" not in out.stderr


# ------------------------------------------------------- with /dev/netmap

_seq = [0]


def _unique():
    _seq[0] += 1
    return "nmpy%d_%d" % (os.getpid() % 100000, _seq[0])


@needs_netmap
class TestNetmapContract(BackendContract, CythonExampleContract):
    """The backend contract over netmap pipes (the parent is created by the
    kernel as a persistent VALE port): no NIC needed."""

    backend = "netmap"
    leak_rounds = 2000

    @contextlib.contextmanager
    def channel(self, **kw):
        name = _unique()
        tx = netmapy.open("netmap:%s{1" % name, **kw)
        rx = netmapy.open("netmap:%s}1" % name, **kw)
        ch = Channel(tx, lambda: rx)
        ch.rx()
        try:
            yield ch
        finally:
            ch.close()

    def same_memory_tx(self, port):
        return netmapy.open("netmap:%s{77" % port.name.ifname)

    def open_close_once(self):
        with netmapy.open("netmap:nmpyleak{1"), netmapy.open("netmap:nmpyleak}1"):
            pass


@needs_netmap
class TestNetmapOnly:
    def test_api_probe(self):
        api = nm.probe_api()
        assert api.control == "NIOCCTRL" and api.version >= 14

    def test_memory_is_mapped_once_per_region(self):
        name = _unique()
        with netmapy.open("netmap:%s{1" % name) as a, netmapy.open("netmap:%s}1" % name) as b:
            assert a.mem is b.mem
            assert nm.memories()[a.mem.memid] is a.mem
            assert a.mem.users == 2
            c = netmapy.open("netmap:%s{2" % name)
            assert c.mem is a.mem
            # closing the port whose fd backs the mapping moves the mapping
            a.close()
            with netmapy.open("netmap:%s}2" % name) as d:
                send_all(c, [make_frame(1)])
                assert receive_all(d, 1) == [make_frame(1)]
            c.close()
        assert a.mem.memid not in nm.memories() and not a.mem.mapped

    def test_swap_refused_across_regions(self):
        n1, n2 = _unique(), _unique()
        with netmapy.open("netmap:%s{1" % n1) as a, netmapy.open("netmap:%s{1" % n2) as b:
            if a.mem is b.mem:
                pytest.skip("both VALE parents got the same memory region")
            with pytest.raises(MemoryMismatch, match="copy"):
                a.tx_ring[a.tx_ring.head].swap(b.tx_ring[b.tx_ring.head])

    def test_share_group_puts_ports_in_one_region(self):
        g = _unique()
        with netmapy.open("vale0:%sa@share:name=%s" % (g, g)) as a, \
                netmapy.open("vale0:%sb@share:name=%s" % (g, g)) as b:
            assert a.mem is b.mem

    def test_host_rings_and_ring_ids(self, veth):
        with netmapy.open("netmap:%s*" % veth.if_a, netns=veth.ns, link_timeout=0) as p:
            assert len(p.host_tx_rings) >= 1 and len(p.host_rx_rings) >= 1
            assert p.tx_ids[len(p.tx_rings)] == p.info()["adapter_tx_rings"]

    def test_single_rx_ring(self, veth):
        with netmapy.open("netmap:%s~1" % veth.if_a, netns=veth.ns, link_timeout=0) as p:
            assert p.rx_ids == (1,) and p.tx_ids == ()
            assert len(p.rx_rings) == 1 and len(p.tx_rings) == 0
            assert p.request.nr_flags & RX_ONLY

    def test_single_rx_ring_leaves_the_rest_to_the_kernel(self, veth):
        """~1 takes RX ring 1 only: the kernel keeps transmitting on the
        interface, and frames it receives on other queues still reach its
        own sockets; together the two see every frame sent."""
        import socket
        v = veth
        with netns(v.ns):
            ksock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B5))
            ksock.bind((v.if_a, 0))
            ksock.settimeout(0.2)
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            tx.bind((v.if_b, 0))
            out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            out.bind((v.if_a, 0))
            sink = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B5))
            sink.bind((v.if_b, 0))
            sink.settimeout(2)
        with ksock, tx, out, sink, \
                netmapy.open("netmap:%s~1" % v.if_a, netns=v.ns, link_timeout=0) as p:
            # TX stays with the kernel: a frame sent on va arrives on vb
            out.send(make_frame(999))
            assert sink.recv(2048) == make_frame(999)
            frames = frame_set(40, sizes=(60,))
            for i, f in enumerate(frames):
                os.sched_setaffinity(0, {i % 2})
                tx.send(f)
            os.sched_setaffinity(0, set(range(os.cpu_count())))
            got_nm = []
            end = time.monotonic() + 3
            while time.monotonic() < end and len(got_nm) < 40:
                b = p.recv(timeout=0.2)
                got_nm.extend(x for x in b.tobytes() if x[12:14] == b"\x88\xb5")
            got_k = []
            while True:
                try:
                    got_k.append(ksock.recv(2048))
                except socket.timeout:
                    break
            assert got_k, "nothing reached the kernel: the other queues were taken too"
            assert sorted(got_nm + got_k) == sorted(frames)

    def test_missing_ring_is_a_clear_error(self, veth):
        with pytest.raises(QueueOutOfRange, match="no queue 9"):
            netmapy.open("netmap:%s~9" % veth.if_a, netns=veth.ns)

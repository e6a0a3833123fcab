"""NIC control plane (middlebox.nic, netmapy-nic) on real veth interfaces in
network namespaces, checked against ethtool(8) run inside the namespace.

veth can change its channel counts and offloads; it has no RSS indirection
table, no ntuple rules and no IRQs, so those steps must fail with
NicUnsupported naming the software alternative.  Their byte encodings are
checked against the C compiler (struct layouts, field by field).
"""

import glob
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from conftest import IS_ROOT, unprivileged

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from middlebox import nic as nicmod                      # noqa: E402
from middlebox.nic import (Journal, Nic, NicBusy, NicError,  # noqa: E402
                           NicUnsupported, build_indir, encode_flow_spec,
                           format_cpulist, parse_cpulist, decode_flow_spec)
from netmapy.errors import InterfaceNotFound, NetmapyError  # noqa: E402

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (veth in namespaces)")
needs_ethtool = pytest.mark.skipif(shutil.which("ethtool") is None, reason="needs ethtool")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or
                               not os.path.exists("/usr/include/linux/ethtool.h"),
                               reason="needs gcc and linux uapi headers")


# --------------------------------------------------------------------------
# fixtures and helpers

@pytest.fixture(autouse=True)
def journal_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMAPY_RUNDIR", str(tmp_path / "run"))
    return tmp_path / "run" / "nic"


@pytest.fixture(scope="module")
def _veth():
    if not IS_ROOT or shutil.which("ethtool") is None:
        pytest.skip("needs root and ethtool")
    from tools.lab import SingleNsVeth
    # offloads=True: only GRO is turned off by the lab, TSO & co stay on
    with SingleNsVeth(queues=4, offloads=True) as v:
        yield v


@pytest.fixture
def veth(_veth):
    """The module's veth pair, put back to its initial state after each test
    whatever the test did (gro off, tso on, 4 rx / 4 tx channels)."""
    yield _veth
    for ifname in (_veth.if_a, _veth.if_b):
        ethtool(_veth.ns, "-K", ifname, "gro", "off", "tso", "on", check=False)
        ethtool(_veth.ns, "-L", ifname, "rx", "4", "tx", "4", check=False)


def ethtool(ns, *args, check=True):
    p = subprocess.run(["ip", "netns", "exec", ns, "ethtool"] + list(args),
                       capture_output=True, text=True)
    if check:
        assert p.returncode == 0, p.stderr
    return p.stdout


_LEGACY = {"rx-checksumming": "rx-checksum", "generic-segmentation-offload":
           "tx-generic-segmentation", "generic-receive-offload": "rx-gro",
           "large-receive-offload": "rx-lro", "rx-vlan-offload": "rx-vlan-hw-parse",
           "tx-vlan-offload": "tx-vlan-hw-insert", "ntuple-filters": "rx-ntuple-filter",
           "receive-hashing": "rx-hashing"}
_GROUPS = {"tx-checksumming", "scatter-gather", "tcp-segmentation-offload",
           "udp-fragmentation-offload"}


def ethtool_k(ns, ifname):
    """{kernel feature name: (on, fixed)} from `ethtool -k`."""
    out = {}
    for line in ethtool(ns, "-k", ifname).splitlines()[1:]:
        name, sep, rest = line.strip().partition(": ")
        if not sep or name in _GROUPS:
            continue
        out[_LEGACY.get(name, name)] = (rest.split()[0] == "on", "[fixed]" in rest)
    return out


def ethtool_l(ns, ifname):
    """{'max': {...}, 'current': {...}} from `ethtool -l` (n/a -> 0)."""
    res, cur = {}, None
    for line in ethtool(ns, "-l", ifname).splitlines():
        if line.startswith("Pre-set"):
            cur = res.setdefault("max", {})
        elif line.startswith("Current"):
            cur = res.setdefault("current", {})
        elif cur is not None and ":" in line:
            k, v = line.split(":", 1)
            v = v.strip()
            cur[k.strip().lower()] = 0 if v == "n/a" else int(v)
    return res


def gro_tso(ns, ifname):
    k = ethtool_k(ns, ifname)
    return k["rx-gro"][0], k["tx-tcp-segmentation"][0]


def py(code, *args, **kw):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable, "-c", code] + list(args), env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def cli(*argv, wrap=None):
    cmd = [sys.executable, "-m", "middlebox.nic_cli"] + list(argv)
    if wrap:
        cmd = wrap(cmd)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60,
                          env=dict(os.environ, PYTHONPATH=REPO))


def one_error_line(out, *needles):
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("netmapy-nic: error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# --------------------------------------------------------------------------
# struct layouts and encodings against the C compiler

LAYOUT_C = r"""
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/ethtool.h>
#define S(t) printf("sizeof %s %zu\n", #t, sizeof(struct t));
#define U(t) printf("sizeof %s %zu\n", #t, sizeof(union t));
#define O(t, f) printf("offsetof %s.%s %zu\n", #t, #f, offsetof(struct t, f));
static void hex(const char *tag, const void *p, size_t n) {
    printf("%s ", tag);
    for (size_t i = 0; i < n; i++) printf("%02x", ((const unsigned char *)p)[i]);
    printf("\n");
}
int main(void) {
    %(body)s
    struct ethtool_rx_flow_spec fs;
    /* udp4 src 10.0.0.0/8 dport 53 -> queue 4 at location 7 */
    memset(&fs, 0, sizeof(fs));
    fs.flow_type = UDP_V4_FLOW;
    fs.h_u.udp_ip4_spec.ip4src = htonl(0x0a000000);
    fs.m_u.udp_ip4_spec.ip4src = htonl(0xff000000);
    fs.h_u.udp_ip4_spec.pdst = htons(53);
    fs.m_u.udp_ip4_spec.pdst = 0xffff;
    fs.ring_cookie = 4;
    fs.location = 7;
    hex("udp4", &fs, sizeof(fs));
    /* tcp6 dst 2001:db8::1 sport 22 -> drop at location 3 */
    memset(&fs, 0, sizeof(fs));
    fs.flow_type = TCP_V6_FLOW;
    inet_pton(AF_INET6, "2001:db8::1", fs.h_u.tcp_ip6_spec.ip6dst);
    memset(fs.m_u.tcp_ip6_spec.ip6dst, 0xff, 16);
    fs.h_u.tcp_ip6_spec.psrc = htons(22);
    fs.m_u.tcp_ip6_spec.psrc = 0xffff;
    fs.ring_cookie = RX_CLS_FLOW_DISC;
    fs.location = 3;
    hex("tcp6", &fs, sizeof(fs));
    /* ip4 src 203.0.113.7 -> queue 6 at location 12 */
    memset(&fs, 0, sizeof(fs));
    fs.flow_type = IPV4_USER_FLOW;
    fs.h_u.usr_ip4_spec.ip4src = htonl(0xcb007107);
    fs.m_u.usr_ip4_spec.ip4src = 0xffffffff;
    fs.h_u.usr_ip4_spec.ip_ver = ETH_RX_NFC_IP4;
    fs.ring_cookie = 6;
    fs.location = 12;
    hex("ip4", &fs, sizeof(fs));
    struct ethtool_channels ch = {ETHTOOL_SCHANNELS, 1, 2, 3, 4, 5, 6, 7, 8};
    hex("channels", &ch, sizeof(ch));
    return 0;
}
"""


@needs_gcc
def test_struct_layouts_match_the_c_compiler(tmp_path):
    """Every size and offset the ioctl code relies on equals what gcc says
    for include/uapi/linux/ethtool.h, and rules encoded here are byte for
    byte what C code filling the fields by name produces."""
    from netmapy.host.ethtool import LAYOUT as lay      # the one ethtool codec
    assert nicmod.LAYOUT is lay
    body = []
    for name in lay["sizeof"]:
        body.append(("U(%s)" if name.endswith("_union") else "S(%s)") % name)
    for key in lay["offsetof"]:
        t, f = key.split(".")
        body.append("O(%s, %s)" % (t, f))
    src = tmp_path / "layout.c"
    src.write_text(LAYOUT_C.replace("%(body)s", "\n    ".join(body)))
    exe = tmp_path / "layout"
    p = subprocess.run(["gcc", "-O0", "-o", str(exe), str(src)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    c, hexes = {}, {}
    for line in subprocess.run([str(exe)], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        w = line.split()
        if w[0] in ("sizeof", "offsetof"):
            c[(w[0], w[1])] = int(w[2])
        else:
            hexes[w[0]] = w[1]
    for name, size in lay["sizeof"].items():
        assert c[("sizeof", name)] == size, name
    for name, off in lay["offsetof"].items():
        assert c[("offsetof", name)] == off, name

    import struct
    loc_off = lay["offsetof"]["ethtool_rx_flow_spec.location"]

    def at(fs, loc):
        b = bytearray(fs)
        struct.pack_into("=I", b, loc_off, loc)
        return bytes(b).hex()

    fs, args = encode_flow_spec("udp4", src="10.0.0.0/8", dport=53, queue=4)
    assert at(fs, 7) == hexes["udp4"]
    assert args == ["flow-type", "udp4", "src-ip", "10.0.0.0", "m", "0.255.255.255",
                    "dst-port", "53", "action", "4"]
    fs, args = encode_flow_spec("tcp6", dst="2001:db8::1", sport=22, queue=-1)
    assert at(fs, 3) == hexes["tcp6"]
    assert args == ["flow-type", "tcp6", "dst-ip", "2001:db8::1", "src-port", "22",
                    "action", "-1"]
    fs, _ = encode_flow_spec("ip4", src="203.0.113.7", queue=6)
    assert at(fs, 12) == hexes["ip4"]
    from netmapy.host import ethtool
    assert struct.pack(ethtool.CHANNELS, ethtool.ETHTOOL_SCHANNELS,
                       *range(1, 9)).hex() == hexes["channels"]
    d = decode_flow_spec(bytes.fromhex(hexes["udp4"]))
    assert (d["flow_type"], d["src"], d["dport"], d["queue"], d["loc"]) == \
        ("udp4", "10.0.0.0/8", 53, 4, 7)
    d = decode_flow_spec(bytes.fromhex(hexes["tcp6"]))
    assert (d["flow_type"], d["dst"], d["sport"], d["queue"]) == ("tcp6", "2001:db8::1", 22, -1)


def test_build_indir_is_ethtools_weight_table():
    # ethtool -X IF weight 1 1 0 1 on a 8-entry table
    assert build_indir(8, [1, 1, 0, 1]) == [0, 0, 1, 1, 1, 3, 3, 3]
    assert build_indir(128, [1] * 8) == [q for q in range(8) for _ in range(16)]
    t = build_indir(128, [1, 1, 1, 1, 0, 1, 1, 1])
    assert 4 not in t and len(t) == 128 and set(t) == {0, 1, 2, 3, 5, 6, 7}
    assert all(abs(t.count(q) - 128 / 7) < 1.01 for q in set(t))
    for bad in ([0, 0], [-1, 2], [200]):
        with pytest.raises(NicError):
            build_indir(128, bad)


def test_cpulists():
    assert parse_cpulist("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert format_cpulist([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    assert parse_cpulist(5) == [5] and parse_cpulist([3, 1]) == [1, 3]
    with pytest.raises(NicError, match="bad CPU list"):
        parse_cpulist("2-x")


def test_flow_spec_errors():
    with pytest.raises(NicError, match="unknown flow type"):
        encode_flow_spec("udp5", dport=53, queue=1)
    with pytest.raises(NicError, match="IPv6"):
        encode_flow_spec("udp4", src="2001:db8::1", queue=1)
    with pytest.raises(NicError, match="0..65535"):
        encode_flow_spec("udp4", dport=70000, queue=1)


# --------------------------------------------------------------------------
# reading

@needs_root
@needs_ethtool
def test_show_agrees_with_ethtool(veth):
    with Nic(veth.if_a, netns=veth.ns, journal=False) as nic:
        d = nic.show()
    assert d["driver"] == "veth" and d["ifname"] == veth.if_a and d["netns"] == veth.ns
    assert d["channels"] == ethtool_l(veth.ns, veth.if_a)
    assert d["channels"]["current"]["rx"] == 4 and d["channels"]["max"]["combined"] == 0
    theirs = ethtool_k(veth.ns, veth.if_a)
    ours = d["features"]
    common = [k for k in theirs if k in ours]
    assert len(common) >= 40, common
    for k in common:
        assert (ours[k]["active"], ours[k]["fixed"]) == theirs[k], k
    assert ours["rx-gro"]["active"] is False and ours["rx-lro"]["fixed"] is True
    # what veth cannot do is reported, with the software alternative
    for key in ("rss", "ntuple", "irqs"):
        assert "EOPNOTSUPP" in d["unsupported"][key], key
    assert d["rss"] is None and d["ntuple"] is None and d["irqs"] == []
    assert "--steer" in d["unsupported"]["ntuple"]
    assert d["numa_node"] is None and d["numa_cpus"] == nicmod.online_cpus()
    json.dumps(d)                   # JSON-clean


@needs_root
def test_missing_interface_and_namespace(veth):
    with pytest.raises(InterfaceNotFound, match="no network interface 'nosuch0'.*%s"
                       % veth.ns):
        Nic("nosuch0", netns=veth.ns)
    with pytest.raises(NetmapyError, match="no network namespace"):
        Nic(veth.if_a, netns="nmt-no-such-ns")


# --------------------------------------------------------------------------
# changing and restoring

@needs_root
@needs_ethtool
def test_set_channels_and_restore(veth, journal_dir):
    ns, ifname = veth.ns, veth.if_a
    nic = Nic(ifname, netns=ns)
    assert nic.set_channels(rx=2, tx=3) == \
        "ip netns exec %s ethtool -L %s rx 2 tx 3" % (ns, ifname)
    assert ethtool_l(ns, ifname)["current"] == {"rx": 2, "tx": 3, "other": 0, "combined": 0}
    assert nic.channels()["current"]["rx"] == 2
    # journaled, private
    path = nicmod.journal_path(ifname, ns)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(journal_dir).st_mode) == 0o700
    data = json.load(open(path))
    assert data["owner"]["pid"] == os.getpid() and data["ifname"] == ifname
    assert data["netns"] == ns and data["records"][0]["prev"] == {"rx": 4, "tx": 4}
    # more than the device has, and combined on a device without combined channels
    with pytest.raises(NicError, match="at most 4 rx channels"):
        nic.set_channels(rx=5)
    with pytest.raises(NicUnsupported, match="no combined channels.*rx N tx N"):
        nic.set_channels(combined=2)
    assert nic.restore() == ["ip netns exec %s ethtool -L %s rx 4 tx 4" % (ns, ifname)]
    assert ethtool_l(ns, ifname)["current"]["rx"] == 4
    assert ethtool_l(ns, ifname)["current"]["tx"] == 4
    assert not os.path.exists(path)
    assert nic.commands()[-1].endswith("-L %s rx 4 tx 4" % ifname)
    nic.close()


@needs_root
@needs_ethtool
def test_features_toggle_and_restore(veth):
    ns, ifname = veth.ns, veth.if_a
    assert gro_tso(ns, ifname) == (False, True)
    with Nic(ifname, netns=ns) as nic:
        nic.set_feature("gro", True)                 # ethtool -K short name
        assert gro_tso(ns, ifname) == (True, True)
        nic.set_feature("tx-tcp-segmentation", False)   # kernel name
        assert gro_tso(ns, ifname) == (True, False)
        nic.set_features({"tso": False, "generic-receive-offload": True})  # no-op
        f = nic.features()
        assert f["rx-gro"]["active"] and not f["tx-tcp-segmentation"]["active"]
        with pytest.raises(NicUnsupported, match="lro.*fixed off"):
            nic.set_feature("lro", True)
        with pytest.raises(NicError, match="unknown feature 'bogus'"):
            nic.set_feature("bogus", True)
        assert nic.commands() == [
            "ip netns exec %s ethtool -K %s gro on" % (ns, ifname),
            "ip netns exec %s ethtool -K %s tx-tcp-segmentation off" % (ns, ifname),
            "ip netns exec %s ethtool -K %s tso off generic-receive-offload on" % (ns, ifname)]
    # leaving the with block restored both
    assert gro_tso(ns, ifname) == (False, True)
    # tso as a group, restored as a group
    nic = Nic(ifname, netns=ns)
    nic.set_features({"tso": False, "gro": True})
    k = ethtool_k(ns, ifname)
    assert not any(v[0] for n, v in k.items() if n.startswith("tx-tcp") and
                   n.endswith("segmentation"))
    assert nic.restore() == ["ip netns exec %s ethtool -K %s tso on gro off" % (ns, ifname)]
    assert gro_tso(ns, ifname) == (False, True)
    nic.close()


@needs_root
@needs_ethtool
def test_unsupported_steps_name_device_errno_and_alternative(veth):
    with Nic(veth.if_a, netns=veth.ns) as nic:
        steps = {
            "isolating RX queue 1": (lambda: nic.isolate_queue(1), "--steer"),
            "setting RSS weights": (lambda: nic.set_rss_weights([1, 0, 1, 1]), "--steer"),
            "adding an ntuple rule": (lambda: nic.add_ntuple("udp4", dport=53, queue=1),
                                      "veth has no ntuple flow steering: use the xdp "
                                      "backend's software steering (--steer EXPR)"),
            "deleting ntuple rule 3": (lambda: nic.del_ntuple(3), "--steer"),
            "spreading IRQ affinity": (lambda: nic.spread_irqs(), "RPS"),
            "setting the affinity of IRQ 1": (lambda: nic.set_irq_affinity(1, [0]), "RPS"),
        }
        for step, (fn, alt) in steps.items():
            with pytest.raises(NicUnsupported) as ei:
                fn()
            msg = str(ei.value)
            assert msg.startswith("%s (veth): %s" % (veth.if_a, step)), msg
            assert "EOPNOTSUPP" in msg and alt in msg, msg
            assert ei.value.driver == "veth" and ei.value.alternative
        assert nic._records == [] and nic.commands() == []
    # nothing changed, nothing journaled
    assert not os.path.exists(nicmod.journal_path(veth.if_a, veth.ns))


@needs_root
@needs_ethtool
def test_dry_run_changes_nothing_and_prints_the_commands(veth, journal_dir):
    ns, ifname = veth.ns, veth.if_a
    before_k, before_l = ethtool_k(ns, ifname), ethtool_l(ns, ifname)
    out = io.StringIO()
    nic = Nic(ifname, netns=ns, dry_run=True, echo=out)
    assert nic.set_channels(rx=2) == "ip netns exec %s ethtool -L %s rx 2" % (ns, ifname)
    nic.set_feature("gro", False)           # already off: still the command
    nic.set_features({"gro": True, "tso": False})
    with pytest.raises(NicUnsupported, match="ntuple"):
        nic.add_ntuple("udp4", dport=53, queue=3)
    pre = "ip netns exec %s " % ns
    assert out.getvalue().splitlines() == [
        pre + "ethtool -L %s rx 2" % ifname,
        pre + "ethtool -K %s gro off" % ifname,
        pre + "ethtool -K %s gro on tso off" % ifname]
    assert nic.commands() == out.getvalue().splitlines()
    assert nic.restore() == [pre + "ethtool -K %s gro off tso on" % ifname,
                             pre + "ethtool -L %s rx 4" % ifname]
    assert ethtool_k(ns, ifname) == before_k and ethtool_l(ns, ifname) == before_l
    assert not journal_dir.exists() or not os.listdir(journal_dir)
    # without a namespace the commands are plain ethtool
    nic.netns = None
    assert nic._cmd(["ethtool", "-K", "eth3", "gro", "off"]) == "ethtool -K eth3 gro off"
    nic.close()


@needs_root
def test_irq_code_paths_read_only():
    """veth has no IRQs: borrow the bus address of a PCI device that has
    MSI vectors (never a network device of the host's namespace) and run
    the IRQ code in dry-run mode: the IRQs, their affinities and the
    spread are read from /proc and sysfs, nothing is written."""
    dev = None
    for d in sorted(os.listdir("/sys/bus/pci/devices")) if \
            os.path.isdir("/sys/bus/pci/devices") else []:
        p = "/sys/bus/pci/devices/%s" % d
        if os.path.isdir(p + "/msi_irqs") and os.listdir(p + "/msi_irqs") and \
                not glob.glob(p + "/net") and not glob.glob(p + "/*/net"):
            dev = d
            break
    if dev is None:
        pytest.skip("no PCI device with MSI interrupts to read")
    from tools.lab import SingleNsVeth
    with SingleNsVeth() as v:
        nic = Nic(v.if_a, netns=v.ns, dry_run=True, echo=io.StringIO())
        nic.bus_info = dev
        irqs = nic.irqs()
        want = sorted(int(x) for x in os.listdir("/sys/bus/pci/devices/%s/msi_irqs" % dev))
        assert sorted(i["irq"] for i in irqs) == want
        names = nicmod.read_interrupts()
        before = {}
        for i in irqs:
            assert i["name"] == names[i["irq"]]
            before[i["irq"]] = open("/proc/irq/%d/smp_affinity_list" % i["irq"]).read()
            assert i["affinity"] == parse_cpulist(before[i["irq"]])
        cmds = nic.spread_irqs()
        cpus = nicmod.online_cpus()
        spread = nic.irqs(queues_only=True)
        assert cmds == ["echo %d > /proc/irq/%d/smp_affinity_list" % (cpus[k % len(cpus)],
                                                                     i["irq"])
                        for k, i in enumerate(spread)]
        assert nic.spread_irqs(str(cpus[-1]))[0].startswith("echo %d > " % cpus[-1])
        with pytest.raises(NicError, match="not one of its interrupts"):
            nic.set_irq_affinity(max(names) + 1000, [0])
        for irq, aff in before.items():
            assert open("/proc/irq/%d/smp_affinity_list" % irq).read() == aff
        nic.close()


# --------------------------------------------------------------------------
# journal: crashes, repair, live owners

CHANGER = textwrap.dedent("""
    import sys, time
    from middlebox.nic import Nic
    ns, ifname = sys.argv[1:3]
    nic = Nic(ifname, netns=ns)
    nic.set_feature("gro", True)
    nic.set_channels(rx=2, tx=2)
    print("ready", flush=True)
    time.sleep(60)
""")


def _start_changer(veth):
    p = py(CHANGER, veth.ns, veth.if_a)
    line = p.stdout.readline()
    assert line.strip() == "ready", (line, p.stderr.read() if p.poll() is not None else "")
    return p


@needs_root
@needs_ethtool
def test_journal_left_by_killed_process_is_repaired(veth):
    ns, ifname = veth.ns, veth.if_a
    p = _start_changer(veth)
    assert gro_tso(ns, ifname)[0] is True and ethtool_l(ns, ifname)["current"]["rx"] == 2
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = Journal.repair(ifname, netns=ns)
    pre = "ip netns exec %s ethtool " % ns
    assert done == [pre + "-L %s rx 4 tx 4" % ifname, pre + "-K %s gro off" % ifname]
    assert gro_tso(ns, ifname)[0] is False and ethtool_l(ns, ifname)["current"]["rx"] == 4
    assert not os.path.exists(nicmod.journal_path(ifname, ns))
    assert Journal.repair(ifname, netns=ns) == []          # nothing left


@needs_root
@needs_ethtool
def test_next_nic_start_repairs_a_crashed_one(veth):
    ns, ifname = veth.ns, veth.if_a
    p = _start_changer(veth)
    p.kill()
    p.wait()
    nic = Nic(ifname, netns=ns)            # a new start repairs
    assert len(nic.repaired) == 2
    assert gro_tso(ns, ifname)[0] is False and ethtool_l(ns, ifname)["current"]["tx"] == 4
    nic.set_feature("gro", True)           # and then works normally
    nic.restore()
    nic.close()


@needs_root
@needs_ethtool
def test_live_owner_is_refused(veth):
    ns, ifname = veth.ns, veth.if_a
    p = _start_changer(veth)
    try:
        with pytest.raises(NicBusy, match=r"controlled by another running netmapy "
                                          r"instance, pid %d" % p.pid):
            Nic(ifname, netns=ns).set_feature("tso", False)
        with pytest.raises(NicBusy, match="pid %d" % p.pid):
            Nic(ifname, netns=ns).claim()
        with pytest.raises(NicBusy, match="stop it"):
            Journal.repair(ifname, netns=ns)
        out = cli("restore", ifname, "--netns", ns)
        one_error_line(out, "pid %d" % p.pid)
        assert gro_tso(ns, ifname) == (True, True)          # untouched
        # read-only access is fine meanwhile
        with Nic(ifname, netns=ns, journal=False) as ro:
            assert ro.channels()["current"]["rx"] == 2
    finally:
        p.kill()
        p.wait()
    assert len(Journal.repair(ifname, netns=ns)) == 2


@needs_root
@needs_ethtool
def test_second_nic_in_same_process_is_refused(veth):
    a = Nic(veth.if_a, netns=veth.ns)
    a.set_feature("gro", True)
    with pytest.raises(NicBusy, match="another Nic of this process"):
        Nic(veth.if_a, netns=veth.ns).set_feature("gro", False)
    a.restore()
    a.close()
    b = Nic(veth.if_a, netns=veth.ns)
    b.claim()
    b.close()


@needs_root
@needs_ethtool
def test_journal_of_a_recreated_interface_is_discarded(journal_dir):
    from tools.lab import SingleNsVeth
    with SingleNsVeth() as v:
        nic = Nic(v.if_a, netns=v.ns)
        nic.set_feature("gro", True)
        path = nic.journal.path
        data = json.load(open(path))
        data["owner"]["pid"] = 2 ** 22 + 1          # a dead owner
        data["ifindex"] = data["ifindex"] + 1000    # of an older interface
        open(path, "w").write(json.dumps(data))
        done = Journal.repair(path)
        assert len(done) == 1 and done[0].startswith("# ") and "recreated" in done[0]
        assert gro_tso(v.ns, v.if_a)[0] is True     # not touched
        assert not os.path.exists(path)
        nic.close()


# --------------------------------------------------------------------------
# command line

@needs_root
@needs_ethtool
def test_cli_show(veth):
    out = cli("show", veth.if_a, "--netns", veth.ns, "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["channels"] == ethtool_l(veth.ns, veth.if_a)
    assert d["features"]["rx-gro"]["active"] is False
    out = cli("show", veth.if_a, "--netns", veth.ns)
    assert out.returncode == 0, out.stderr
    assert "driver veth" in out.stdout and "rx-gro: off" in out.stdout
    assert "ntuple     unsupported:" in out.stdout


@needs_root
@needs_ethtool
def test_cli_changes_persist_until_restore(veth):
    ns, ifname = veth.ns, veth.if_a
    out = cli("offload", ifname, "gro", "on", "tso", "off", "--netns", ns)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ip netns exec %s ethtool -K %s gro on tso off" % (ns, ifname)
    assert "netmapy-nic restore %s --netns %s" % (ifname, ns) in out.stderr
    out = cli("channels", ifname, "--rx", "1", "--netns", ns)
    assert out.returncode == 0, out.stderr
    # the CLI exited; the changes stay
    assert gro_tso(ns, ifname) == (True, False) and ethtool_l(ns, ifname)["current"]["rx"] == 1
    # a library Nic starting meanwhile leaves the CLI's changes alone
    Nic(ifname, netns=ns).close()
    assert gro_tso(ns, ifname) == (True, False)
    out = cli("restore", ifname, "--netns", ns, "--dry-run")
    assert out.stdout.splitlines() == [
        "ip netns exec %s ethtool -L %s rx 4" % (ns, ifname),
        "ip netns exec %s ethtool -K %s gro off tso on" % (ns, ifname)]
    assert gro_tso(ns, ifname) == (True, False)
    out = cli("restore", ifname, "--netns", ns)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].endswith("-L %s rx 4" % ifname)
    assert gro_tso(ns, ifname) == (False, True) and ethtool_l(ns, ifname)["current"]["rx"] == 4
    out = cli("restore", ifname, "--netns", ns)
    assert out.returncode == 0 and "nothing to restore" in out.stdout


@needs_root
@needs_ethtool
def test_cli_dry_run(veth):
    ns, ifname = veth.ns, veth.if_a
    out = cli("offload", ifname, "gro", "on", "--netns", ns, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ip netns exec %s ethtool -K %s gro on" % (ns, ifname)
    out = cli("channels", ifname, "--rx", "2", "--tx", "2", "--netns", ns, "--dry-run")
    assert out.stdout.strip() == "ip netns exec %s ethtool -L %s rx 2 tx 2" % (ns, ifname)
    assert gro_tso(ns, ifname) == (False, True) and ethtool_l(ns, ifname)["current"]["rx"] == 4
    assert not os.path.exists(nicmod.journal_path(ifname, ns, persistent=True))


@needs_root
@needs_ethtool
def test_cli_errors_are_one_line(veth):
    ns, ifname = veth.ns, veth.if_a
    one_error_line(cli("ntuple", ifname, "add", "--flow-type", "udp4", "--dst-port", "53",
                       "--queue", "1", "--netns", ns),
                   "%s (veth): adding an ntuple rule" % ifname, "EOPNOTSUPP",
                   "software steering (--steer EXPR)")
    one_error_line(cli("rss", ifname, "--isolate", "1", "--netns", ns), "--steer")
    one_error_line(cli("rss", ifname, "--weights", "1", "0", "--netns", ns, "--dry-run"),
                   "RSS indirection table")
    one_error_line(cli("irqs", ifname, "--spread", "--netns", ns), "no interrupts", "RPS")
    one_error_line(cli("channels", ifname, "--combined", "2", "--netns", ns),
                   "no combined channels")
    one_error_line(cli("offload", ifname, "gro", "maybe", "--netns", ns), "on or off")
    one_error_line(cli("offload", ifname, "warp", "on", "--netns", ns), "unknown feature")
    one_error_line(cli("show", "nosuch0", "--netns", ns), "no network interface 'nosuch0'")
    one_error_line(cli("show", ifname, "--netns", "nmt-no-such-ns"), "no network namespace")
    out = cli("rss", ifname, "--netns", ns)                 # usage: exit 2, one line
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "give either --weights W... or --isolate Q" in out.stderr
    out = cli("ntuple", ifname, "add", "--queue", "x", "--netns", ns)
    assert out.returncode == 2 and "Invalid value for '--queue': 'x'" in out.stderr
    out = cli("rss", "a/b", "--isolate", "1")
    assert out.returncode == 2 and "bad interface name 'a/b'" in out.stderr
    out = cli("--help")
    assert out.returncode == 0 and "examples:" in out.stdout and "restore" in out.stdout
    assert gro_tso(ns, ifname) == (False, True)


@needs_root
@needs_ethtool
def test_cli_no_privilege(veth):
    ns, ifname = veth.ns, veth.if_a
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv")
    # entering the namespace needs CAP_SYS_ADMIN
    one_error_line(cli("offload", ifname, "gro", "on", "--netns", ns, wrap=unprivileged),
                   "CAP_SYS_ADMIN")
    # already inside it, changing an offload needs CAP_NET_ADMIN
    out = cli("offload", ifname, "gro", "on",
              wrap=lambda c: ["ip", "netns", "exec", ns] + unprivileged(c))
    one_error_line(out, "CAP_NET_ADMIN", "changing offloads")
    assert gro_tso(ns, ifname) == (False, True)
    # the journal record written before the attempt was taken back
    assert not os.path.exists(nicmod.journal_path(ifname, None, persistent=True))

"""The pcap backend: the contract (write a capture, read it back), files
that tcpdump reads and writes, and broken files."""

import contextlib
import os
import shutil
import struct
import subprocess

import pytest

import netmapy
from netmapy.errors import CaptureFileError

from backend_contract import BackendContract, CythonExampleContract, Channel, receive_all, send_all
from conftest import frame_set, make_frame

TCPDUMP = shutil.which("tcpdump")


class TestPcapContract(BackendContract, CythonExampleContract):
    backend = "pcap"

    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path):
        self.dir = tmp_path
        self.n = 0

    @contextlib.contextmanager
    def channel(self, **kw):
        self.n += 1
        path = str(self.dir / ("c%d.pcap" % self.n))
        tx = netmapy.open("pcap:" + path, mode="w")
        ch = Channel(tx, lambda: netmapy.open("pcap:" + path), flush=tx.close, live=False)
        try:
            yield ch
        finally:
            ch.close()

    def same_memory_tx(self, port):
        # ports of one process share the default memory (id 1)
        return netmapy.open("pcap:%s" % (self.dir / "mate.pcap"), mode="w")

    def open_close_once(self):
        if not hasattr(self, "_leakfile"):
            self._leakfile = str(self.dir / "leak.pcap")
            with netmapy.open("pcap:" + self._leakfile, mode="w") as w:
                w.send([make_frame(1)])
        with netmapy.open("pcap:" + self._leakfile) as r:
            r.recv(timeout=0)


def write_pcap(path, frames, snaplen=65535, linktype=1, cut=None):
    """A classic pcap written by hand (independent of libpcap)."""
    out = struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, snaplen, linktype)
    for i, f in enumerate(frames):
        out += struct.pack("<IIII", 1700000000 + i, i, len(f), len(f)) + f
    if cut:
        out = out[:cut]
    with open(path, "wb") as fh:
        fh.write(out)


def test_reads_a_handwritten_capture_with_timestamps(tmp_path):
    p = str(tmp_path / "h.pcap")
    frames = frame_set(50)
    write_pcap(p, frames)
    with netmapy.open("pcap:" + p) as r:
        b = r.recv(max=50)
        assert b.tobytes() == frames
        ts = r.timestamps(b)
        assert ts[3] == (1700000000 + 3) * 10**9 + 3 * 1000
        assert len(r.recv(timeout=0)) == 0
        assert r.eof
        assert r.stats()["rx_packets"] == 50


@pytest.mark.skipif(TCPDUMP is None, reason="needs tcpdump")
def test_tcpdump_reads_what_we_write(tmp_path):
    p = str(tmp_path / "w.pcap")
    frames = frame_set(20, sizes=(60, 90))
    with netmapy.open("pcap:" + p, mode="w") as w:
        send_all(w, frames)
    out = subprocess.run([TCPDUMP, "-n", "-r", p, "-xx"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if not ln.startswith("\t")]
    assert len(lines) == 20
    assert "length 60" in lines[0] and "length 90" in lines[1]
    hexdump = "".join(ln.split(":", 1)[1] for ln in out.stdout.splitlines()
                      if ln.startswith("\t"))
    assert bytes.fromhex(hexdump.replace(" ", "")) == b"".join(frames)


@pytest.mark.skipif(TCPDUMP is None, reason="needs tcpdump")
def test_reads_what_tcpdump_writes_and_pcapng(tmp_path):
    src = str(tmp_path / "src.pcap")
    frames = frame_set(30)
    write_pcap(src, frames)
    copy = str(tmp_path / "copy.pcap")
    subprocess.run([TCPDUMP, "-r", src, "-w", copy], check=True, capture_output=True)
    with netmapy.open("pcap:" + copy) as r:
        assert receive_all(r, 100) == frames
    tshark = shutil.which("editcap")
    if tshark:
        ng = str(tmp_path / "x.pcapng")
        subprocess.run([tshark, "-F", "pcapng", src, ng], check=True, capture_output=True)
        with netmapy.open("pcap:" + ng) as r:
            assert receive_all(r, 100) == frames


def test_truncated_file_delivers_then_raises(tmp_path):
    p = str(tmp_path / "t.pcap")
    frames = frame_set(10, sizes=(100,))
    write_pcap(p, frames, cut=24 + 5 * 116 + 50)   # cut inside record 6
    with netmapy.open("pcap:" + p) as r:
        got = []
        with pytest.raises(CaptureFileError, match="truncated"):
            while True:
                b = r.recv(timeout=0)
                got.extend(b.tobytes())
                if not b and r.eof:
                    r.rxsync()
        assert got == frames[:5]


def test_snaplen_truncated_frames_are_delivered_as_captured(tmp_path):
    p = str(tmp_path / "s.pcap")
    big = make_frame(1, 3000)
    out = struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1)
    out += struct.pack("<IIII", 1, 0, 96, 3000) + big[:96]
    out += struct.pack("<IIII", 1, 0, 3000, 3000) + big      # longer than a buffer
    open(p, "wb").write(out)
    with netmapy.open("pcap:" + p) as r:
        b = r.recv()
        assert b.lengths() == [96, r.rx_ring.buf_size]
        assert b[0].tobytes() == big[:96]
        assert r.stats()["rx_truncated"] == 2


@pytest.mark.parametrize("content, match", [
    (b"", "not a readable capture"),
    (b"hello, I am not a capture file at all....", "not a readable capture"),
])
def test_unreadable_files(tmp_path, content, match):
    p = tmp_path / "bad.pcap"
    p.write_bytes(content)
    with pytest.raises(CaptureFileError, match=match) as ei:
        netmapy.open("pcap:%s" % p)
    assert str(p) in str(ei.value)


def test_missing_file_and_wrong_link_type(tmp_path):
    with pytest.raises(CaptureFileError, match="no such capture file.*mode='w'"):
        netmapy.open("pcap:%s" % (tmp_path / "nope.pcap"))
    p = str(tmp_path / "raw.pcap")
    write_pcap(p, [b"\x45" + bytes(19)], linktype=101)
    with pytest.raises(CaptureFileError, match="Ethernet"):
        netmapy.open("pcap:" + p)
    with pytest.raises(ValueError, match="mode"):
        netmapy.open("pcap:" + p, mode="a")


def test_permission_denied(tmp_path):
    p = tmp_path / "locked.pcap"
    write_pcap(str(p), frame_set(1))
    os.chmod(p, 0)
    import subprocess, sys
    from conftest import unprivileged
    code = "import netmapy\ntry:\n    netmapy.open('pcap:%s')\nexcept OSError as e:\n    print(type(e).__name__, e.errno)\n" % p
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(unprivileged([sys.executable, "-c", code]), capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=repo))
    if os.geteuid() == 0 and "setpriv" not in unprivileged(["x"])[0]:
        pytest.skip("cannot drop privilege here")
    assert out.stdout.strip() == "CaptureFileError 13", out.stderr

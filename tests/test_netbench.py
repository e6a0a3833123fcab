"""netmapy-bench end to end: two short middleboxes on the lab produce a
table, JSON and a PNG (a valid image that names its series), and bad input
is one clear line."""

import json
import os
import struct
import subprocess
import sys
import zlib

import pytest

from conftest import needs_root

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, timeout=300):
    return subprocess.run([sys.executable, "-m", "tools.netbench"] + argv, capture_output=True,
                          text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                          timeout=timeout)


def png_text(path):
    """tEXt chunks of a PNG, checking its structure and CRCs."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    off, text, kinds = 8, {}, []
    while off < len(data):
        n, kind = struct.unpack(">I4s", data[off:off + 8])
        body = data[off + 8:off + 8 + n]
        crc = struct.unpack(">I", data[off + 8 + n:off + 12 + n])[0]
        assert zlib.crc32(kind + body) == crc
        kinds.append(kind)
        if kind == b"tEXt":
            k, v = body.split(b"\0", 1)
            text[k.decode()] = v.decode()
        off += 12 + n
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    w, h = struct.unpack(">II", data[16:24])
    return text, (w, h)


@needs_root
def test_two_middleboxes_end_to_end(tmp_path):
    out = run(["-m", "linux-bridge", "-m", "tc-mirred", "--lines", "1,2", "--seconds", "1",
               "--rate", "20k", "--rounds", "1", "--trial-seconds", "1", "--trials", "2",
               "--prefix", "tnb%d" % (os.getpid() % 1000), "--out", str(tmp_path)])
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.load(open(tmp_path / "results.json"))
    assert [(r["middlebox"], r["lines"]) for r in res] == [
        ("linux-bridge", 1), ("linux-bridge", 2), ("tc-mirred", 1), ("tc-mirred", 2)]
    for r in res:
        assert len(r["per_line"]) == r["lines"]
        for pl in r["per_line"]:
            assert pl["offered"] > 0
            # kernel forwarding at 20 kpps per line loses nothing (a bridge
            # may add a frame or two of its own: interface counters count all)
            assert pl["offered"] <= pl["delivered"] <= pl["offered"] + 3
        # the zero-loss search starts at the full-speed run's rate (20 kpps a
        # line here), which the kernel carries: one lossless trial
        assert r["zero_loss_mpps"] == pytest.approx(0.02 * r["lines"], rel=0.15)
        assert r["curve"] and all(c["loss"] <= 0 for c in r["curve"])
        assert r["softirq_ns_per_packet"] > 0 and r["cpu_ns_per_packet"] is None
    text, (w, h) = png_text(tmp_path / "delivered.png")
    assert w > 400 and h > 200
    assert text["Description"] == "series: linux-bridge, tc-mirred"
    import matplotlib.image
    assert matplotlib.image.imread(str(tmp_path / "delivered.png")).shape[:2] == (h, w)
    report = (tmp_path / "report.md").read_text()
    assert "| linux-bridge | 2 |" in report and "delivered.png" in report
    assert "linux-bridge" in out.stdout and "zero-loss" in out.stdout
    assert "x Linux bridge" in report


@pytest.mark.parametrize("argv, needle", [
    (["-m", "teleporter"], "Invalid value for '-m' / '--middlebox': 'teleporter' is not one of"),
    (["--lines", "99"], "Invalid value for '--lines': 99: this machine can host 1..8 lines"),
    (["--rate", "fast"], "Invalid value for '--rate': rate 'fast': expected a number"),
    (["--rate", "1000M"], "not a rate this lab can offer"),
    (["--rate", "200Mbps"], "packets per second are needed here"),
    (["-m", "custom"], "-m custom needs --custom"),
])
def test_bad_input_one_line(argv, needle, tmp_path):
    out = run(argv + ["--seconds", "1", "--out", str(tmp_path)], timeout=120)
    assert out.returncode == 2
    lines = [l for l in out.stderr.strip().splitlines() if not l.startswith("[")]
    assert len(lines) == 1 and needle in lines[0], out.stderr

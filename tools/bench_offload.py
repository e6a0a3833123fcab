"""nm-offload scrubbing rate: 90 % flood / 10 % valid traffic, a 1,000-rule
filter, a real UDP server behind it.

    python -m tools.bench_offload --rates 50k,100k,200k,400k --seconds 4

A veth pair in two namespaces: the sender (its own namespace) offers the
mix at each rate -- flood: UDP to port 53 from spoofed 198.18.0.0/15
sources; valid: UDP to port 53 from the client's real address, numbered;
nm-offload bypasses the receiver's RX queue with the xdp backend, runs
the 1,000 rules (998 that match nothing, then allow the client, deny the
rest of port 53) and reinjects what passes; a UDP server in the receiving
namespace counts the valid packets.  The scrubbing rate is the highest
offered rate at which no valid packet was lost.  nm-offload's own CPU time
per packet is reported, and the test server's own socket-buffer drops
(UdpRcvbufErrors) are counted so that losses above the scrubbing rate can
be told apart from nm-offload's.
"""

import ipaddress
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import click

from netmapy import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def frame(src_mac, dst_mac, src, dst, sport, dport, payload):
    l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, 17, 0,
                      ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    c = sum(struct.unpack("!10H", hdr))
    c = (c >> 16) + (c & 0xffff)
    hdr = hdr[:10] + struct.pack("!H", ~((c >> 16) + c) & 0xffff) + hdr[12:]
    mac = lambda m: bytes.fromhex(m.replace(":", ""))
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + hdr + l4


def rules(nrules, client, linear=False):
    # linear: port ranges (two ports each), which the rule index leaves to
    # the in-order walk -- the cost of 1,000 rules without the index
    port = (lambda i: "%d-%d" % (1000 + 2 * i, 1001 + 2 * i)) if linear else (lambda i: str(1000 + i))
    lines = ["deny udp from 203.%d.%d.0/24 to any port %s" % (i // 250, i % 250, port(i))
             for i in range(nrules - 2)]
    lines += ["allow udp from %s to any port 53" % client, "deny udp to port 53", "default allow"]
    return "\n".join(lines) + "\n"


def parse_rates(ctx, param, value):
    """'50k,100k' -> [50000.0, 100000.0] packets per second (netmapy.units)."""
    from netmapy.units import parse_rate
    try:
        return [parse_rate(r).pps() for r in value.split(",")]
    except ValueError as e:
        raise click.BadParameter(str(e))


def sender(v, rate, seconds, out):
    """Offer the 90/10 mix at `rate` pps for `seconds` (paced per 10 ms)."""
    import netmapy
    os.sched_setaffinity(0, {0})
    flood = [frame(v.mac_a, v.mac_b, "198.18.%d.%d" % (i // 250, i % 250 + 1), v.ip_b,
                   1024 + i, 53, b"F" * 18) for i in range(900)]
    valid_n = 0
    sent = 0
    with netmapy.open(netmapy.PortName.interface(v.if_a, "packet", tx_only=True),
                      netns=v.ns_a) as tx:
        t0 = time.monotonic()
        tick = 0.01
        per_tick = max(10, int(rate * tick))
        k = 0
        while time.monotonic() - t0 < seconds:
            batch = []
            for j in range(per_tick):
                if (k + j) % 10 == 0:
                    batch.append(frame(v.mac_a, v.mac_b, v.ip_a, v.ip_b, 40000, 53,
                                       b"V" + struct.pack("!I", valid_n) + b"x" * 13))
                    valid_n += 1
                else:
                    batch.append(flood[(k + j) % 900])
            k += per_tick
            sent += tx.send(batch)
            nxt = t0 + tick * (k // per_tick)
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)
    out.update(sent=sent, valid=valid_n, seconds=time.monotonic() - t0)


def udp_rcvbuf_errors(ns):
    """UdpRcvbufErrors of namespace ns: datagrams the stack dropped because
    a socket's receive buffer was full (here: the Python test server
    falling behind, not nm-offload)."""
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"],
                          capture_output=True, text=True, check=True).stdout
    head, vals = [l.split() for l in text.splitlines() if l.startswith("Udp:")][:2]
    return int(vals[head.index("RcvbufErrors")])


def measure(v, rate, seconds, rules_path):
    from netmapy.netns import netns
    with netns(v.ns_b):
        srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    srv.bind((v.ip_b, 53))
    srv.settimeout(0.2)
    got = set()
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                d = srv.recv(2048)
            except socket.timeout:
                continue
            if d[:1] == b"V":
                got.add(struct.unpack("!I", d[1:5])[0])
    th = threading.Thread(target=serve)
    th.start()
    p = subprocess.Popen([sys.executable, "-m", "middlebox.offload", v.if_b, "0", "--netns", v.ns_b,
                          "--rules", rules_path, "--backend", "xdp", "--cpus", "1",
                          "--stats-json", "--interval", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    seen = []
    while True:
        line = p.stderr.readline()
        seen.append(line)
        if not line:
            p.wait()
            stop.set()
            th.join()
            srv.close()
            raise cli.CliError("nm-offload did not start (exit %s): %s" % (
                p.returncode, "".join(seen).strip()[-300:] or "no output"))
        if ": running," in line:
            break
    import psutil
    kids = psutil.Process(p.pid).children(recursive=True)
    cpu0 = sum(sum(k.cpu_times()[:2]) for k in kids)
    res = {}
    rcvbuf0 = udp_rcvbuf_errors(v.ns_b)
    sender(v, rate, seconds, res)
    time.sleep(0.5)
    cpu1 = sum(sum(k.cpu_times()[:2]) for k in kids if k.is_running())
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    rcvbuf1 = udp_rcvbuf_errors(v.ns_b)
    stop.set()
    th.join()
    srv.close()
    summ = json.loads([l for l in out.splitlines() if l.startswith('{"summary"')][0])["summary"]
    return dict(offered_pps=res["sent"] / res["seconds"], sent=res["sent"], valid_sent=res["valid"],
                valid_received=len(got), valid_lost=res["valid"] - len(got),
                server_overflow=rcvbuf1 - rcvbuf0,
                offload_rx=summ["rx"], reinjected=summ["reinjected"], dropped=summ["dropped"],
                cpu_ns_per_packet=1e9 * (cpu1 - cpu0) / max(1, summ["rx"]))


@cli.command("bench_offload", epilog=__doc__.split("\n\n", 1)[1])
@click.option("--rates", default="50k,100k,200k,300k,400k", show_default=True,
              callback=parse_rates, metavar="RATE,...", help="offered packets per second")
@click.option("--seconds", type=cli.SECONDS, default=4, show_default=True, help="per rate")
@click.option("--rules", type=cli.IntRange(min=1), default=1000, show_default=True,
              help="rules in the rule file")
@click.option("--linear", is_flag=True,
              help="write the non-matching rules as port ranges, which the rule index does not "
                   "cover: measures the plain in-order walk")
@click.option("--json", metavar="FILE", type=click.Path(dir_okay=False),
              help="also write the results as JSON")
@cli.common_options(version=False)
@cli.pass_args
def command(args):
    """nm-offload scrubbing rate benchmark."""
    return run(args)


def run(args):
    from netmapy.tools.lab import VethPair
    rates = args.rates
    results = []
    with VethPair(queues=1) as v:
        f = tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False)
        f.write(rules(args.rules, v.ip_a, args.linear))
        f.close()
        try:
            for r in rates:
                m = measure(v, r, args.seconds, f.name)
                m["rate"] = r
                results.append(m)
                print("offered %8.0f pps: valid %d/%d received (%d lost, %d of them in the test "
                      "server's socket buffer), nm-offload rx %d, reinjected %d, dropped %d, "
                      "%.0f ns CPU/packet" % (
                          m["offered_pps"], m["valid_received"], m["valid_sent"], m["valid_lost"],
                          m["server_overflow"],
                          m["offload_rx"], m["reinjected"], m["dropped"], m["cpu_ns_per_packet"]),
                      flush=True)
        finally:
            os.unlink(f.name)
    ok = [m for m in results if m["valid_lost"] == 0]
    best = max((m["offered_pps"] for m in ok), default=0)
    own = max((m["offered_pps"] for m in results if m["reinjected"] >= m["valid_sent"]), default=0)
    print("scrubbing rate (no valid packet lost), %d rules: %.0f pps" % (args.rules, best))
    print("nm-offload reinjected every valid packet up to: %.0f pps offered" % own)
    if args.json:
        json.dump(dict(results=results, scrubbing_rate=best, reinjected_all_up_to=own), open(args.json, "w"), indent=1)
    return 0


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Rule files: allow/deny by prefix, protocol and port, per-source rate
limits.  Parsed here (pure Python, errors with line and column), evaluated
in C (middlebox/includes/mb_filter.h).

Grammar, one rule per line, ``#`` starts a comment, first match wins::

    allow|deny [PROTO] [from ADDR [port PORTS]] [to ADDR [port PORTS]] [ip4|ip6]
    ratelimit RATE [burst N] [PROTO] [from ...] [to ...]
    default allow|deny

    PROTO  tcp | udp | icmp | icmp6 | sctp | proto N | any
    ADDR   any | 192.0.2.0/24 | 2001:db8::/32 | 10.1.2.3
    PORTS  53 | 1024-65535 | 53,853,5353
    RATE   100 | 100pps | 2kpps | 1.5Mpps          (packets per second per source)

``ratelimit`` keeps a token bucket per source address (and rule): packets
above RATE (after a burst of ``burst``, default RATE) are dropped and
counted as rate-limited; packets within the rate go on to the next rule.
The default action is ``allow`` unless a ``default`` line says otherwise.

Example (a DNS scrubber)::

    allow udp from 10.0.0.0/8 to any port 53
    ratelimit 100pps burst 200 udp to port 53
    deny udp to port 53 from 192.0.2.0/24
    default allow
"""

import ipaddress
import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from netmapy.errors import NetmapyError

PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58, "ipv6-icmp": 58, "sctp": 132,
          "gre": 47, "esp": 50, "ah": 51}
ACTIONS = {"allow": "allow", "accept": "allow", "pass": "allow",
           "deny": "deny", "drop": "deny", "block": "deny"}
MAX_RATE = 100_000_000


class RuleError(NetmapyError, ValueError):
    """A rule file line that does not parse: names file, line, column."""

    def __init__(self, source, line, col, msg, text=""):
        self.source, self.line, self.col, self.msg, self.text = source, line, col, msg, text
        super().__init__("%s:%d:%d: %s" % (source, line, col, msg))


@dataclass
class Rule:
    action: str                     # allow | deny | ratelimit
    line: int
    text: str
    proto: Optional[int] = None
    src: Optional[ipaddress._BaseNetwork] = None
    dst: Optional[ipaddress._BaseNetwork] = None
    sports: List[Tuple[int, int]] = field(default_factory=list)
    dports: List[Tuple[int, int]] = field(default_factory=list)
    family: Optional[int] = None    # 4, 6 or None
    rate: int = 0
    burst: int = 0

    def __str__(self):
        return self.text


@dataclass
class RuleSet:
    rules: List[Rule]
    default: str = "allow"
    source: str = "<rules>"

    def __len__(self):
        return len(self.rules)


_TOKEN = re.compile(r"\S+")


def _parse_rate(tok):
    """A packet rate (netmapy.units' parser: 100, 100pps, 2kpps, 1.5Mpps) as
    whole packets per second, or None."""
    from netmapy.units import parse_rate
    try:
        r = parse_rate(tok)
    except ValueError:
        return None
    return int(r.value) if r.unit == "pps" else None


def _parse_ports(tok):
    out = []
    for part in tok.split(","):
        m = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", part)
        if not m:
            return None, part
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if lo > 65535 or hi > 65535 or lo > hi:
            return None, part
        out.append((lo, hi))
    return out, None


def parse(text, source="<rules>"):
    """Parse rule-file text into a RuleSet (raises RuleError)."""
    rules = []
    default = "allow"
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        toks = [(m.group(0), m.start() + 1) for m in _TOKEN.finditer(line)]
        if not toks:
            continue

        def err(col, msg):
            raise RuleError(source, lineno, col, msg, raw)
        i = 0

        def peek():
            return toks[i][0].lower() if i < len(toks) else None

        def col():
            return toks[i][1] if i < len(toks) else len(line.rstrip()) + 1

        word = peek()
        if word == "default":
            i += 1
            act = peek()
            if act not in ACTIONS:
                err(col(), "expected allow or deny after 'default'")
            default = ACTIONS[act]
            i += 1
            if i < len(toks):
                err(col(), "unexpected %r after the default action" % toks[i][0])
            continue
        if word == "ratelimit":
            r = Rule("ratelimit", lineno, raw.strip())
            i += 1
            if i >= len(toks):
                err(col(), "expected a rate (e.g. 100pps) after 'ratelimit'")
            rate = _parse_rate(toks[i][0])
            if rate is None or rate < 1 or rate > MAX_RATE:
                err(col(), "expected a rate between 1 and %d packets per second "
                           "(e.g. 100pps, 2kpps), found %r" % (MAX_RATE, toks[i][0]))
            r.rate = rate
            r.burst = rate
            i += 1
            if peek() == "burst":
                i += 1
                if i >= len(toks) or not toks[i][0].isdigit() or int(toks[i][0]) < 1:
                    err(col(), "expected a positive packet count after 'burst'")
                r.burst = int(toks[i][0])
                i += 1
        elif word in ACTIONS:
            r = Rule(ACTIONS[word], lineno, raw.strip())
            i += 1
        else:
            err(col(), "expected allow, deny, ratelimit or default, found %r" % toks[i][0])
        # protocol
        w = peek()
        if w in PROTOS:
            r.proto = PROTOS[w]
            i += 1
        elif w == "proto":
            i += 1
            if i >= len(toks) or not toks[i][0].isdigit() or int(toks[i][0]) > 255:
                err(col(), "expected a protocol number 0..255 after 'proto'")
            r.proto = int(toks[i][0])
            i += 1
        elif w == "any":
            i += 1
        # from / to clauses, family
        seen = set()
        while i < len(toks):
            w = peek()
            if w in ("from", "to"):
                if w in seen:
                    err(col(), "a second %r clause" % w)
                seen.add(w)
                i += 1
                if i >= len(toks):
                    err(col(), "expected an address or prefix (or 'any', or 'port') after %r" % w)
                net = None
                if peek() == "any":
                    i += 1
                elif peek() != "port":
                    tok, c = toks[i]
                    try:
                        net = ipaddress.ip_network(tok, strict=False)
                    except ValueError:
                        err(c, "expected an IPv4/IPv6 address or prefix, found %r" % tok)
                    i += 1
                ports = []
                if peek() == "port":
                    i += 1
                    if i >= len(toks):
                        err(col(), "expected a port, range or list after 'port'")
                    ports, bad = _parse_ports(toks[i][0])
                    if ports is None:
                        err(toks[i][1], "expected a port (0..65535), a range lo-hi or a "
                                        "comma list, found %r" % bad)
                    if r.proto not in (None, 6, 17, 132):
                        err(toks[i][1], "ports need tcp, udp or sctp (or no protocol)")
                    i += 1
                if w == "from":
                    r.src, r.sports = net, ports
                else:
                    r.dst, r.dports = net, ports
            elif w in ("ip4", "ipv4", "ip6", "ipv6"):
                r.family = 4 if w.endswith("4") else 6
                i += 1
            else:
                err(col(), "expected 'from', 'to', 'ip4' or 'ip6', found %r" % toks[i][0])
        fams = {n.version for n in (r.src, r.dst) if n is not None}
        if len(fams) > 1 or (r.family and fams and r.family not in fams):
            err(1, "the rule mixes IPv4 and IPv6")
        if fams and not r.family:
            r.family = fams.pop()
        rules.append(r)
    return RuleSet(rules, default, source)


def load(path):
    """Parse a rule file (RuleError names the file, line and column)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise RuleError(path, 0, 0, "cannot read the rule file: %s" % e.strerror) from None
    return parse(text, path)

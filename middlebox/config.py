"""The configuration file of the middlebox services (nm-offload,
netmapy-bridge): TOML, saying everything their command lines say.

    # /etc/netmapy/eth3.toml
    [nm-offload]
    interface = "eth3"
    queues = [4]
    backend = "xdp"
    cpus = "2-3"
    rules-in = "auto"
    rss = true                     # --no-rss is rss = false

    [filters]
    rules = ["dns.rules"]          # relative to this file
    drop = ["udp[8:2] = 0xffff"]

    [output]
    interval = 10
    prometheus = "127.0.0.1:9100"
    attack-sample = 64

A key is an option's long name without the dashes (``--rules-in`` is
``rules-in``; a flag that turns something off, like ``--no-rss``, is the
setting it turns off: ``rss = false``); the command's own options are in a
table named after the command, the filter options in ``[filters]``, the
counter and output options in ``[output]``.  The positional arguments are
``interface`` and ``queues`` (nm-offload), ``interfaces = ["eth6",
"eth7"]`` (netmapy-bridge).  Values are checked by the same click types as
the command line's; file names are relative to the configuration file's
directory.

**The command line overrides the file**: an option given on the command
line replaces the file's value (a repeatable one, like ``--rules``,
replaces the whole list).  A reload re-reads the file and every file it
names; options given on the command line keep overriding it.

Every problem is reported as ``FILE:LINE: KEY: what is wrong`` (the line of
the key, or of the list element), all of them at once with ``--check``.
"""

import os
import re
import sys
from types import SimpleNamespace

import click

from netmapy.errors import NetmapyError

try:
    import tomllib
except ImportError:                     # Python < 3.11: the backport
    import tomli as tomllib

__all__ = ["ConfigError", "Problem", "ServiceConfig", "locate", "SECTION_FILTERS",
           "SECTION_OUTPUT"]

SECTION_FILTERS = "filters"
SECTION_OUTPUT = "output"
#: command-line-only parameters (what to do, not what to run)
NOT_IN_FILE = {"config", "check", "reload", "status", "dry_run", "debug", "verbose", "version",
               "help"}
#: values that are file names, resolved against the file's directory
PATH_KEYS = {"rules", "bpf", "sample-drops"}


class Problem:
    """One thing wrong: where (file, line, key) and what."""

    def __init__(self, path, line, key, message):
        self.path, self.line, self.key, self.message = path, line, key, message

    def __str__(self):
        where = self.path or "command line"
        if self.line:
            where += ":%d" % self.line
        return "%s: %s%s" % (where, "%s: " % self.key if self.key else "", self.message)

    def __repr__(self):
        return "Problem(%r)" % str(self)


class ConfigError(NetmapyError, ValueError):
    """A configuration that does not load; ``problems`` lists every one.
    Its message is the first problem (and how many more there are)."""

    def __init__(self, problems):
        self.problems = list(problems)
        first = str(self.problems[0]) if self.problems else "invalid configuration"
        more = len(self.problems) - 1
        super().__init__(first + ("" if not more else " (and %d more problem%s: run with "
                                  "--check to see them all)" % (more, "s" if more > 1 else "")))


# ---------------------------------------------------------------- where keys are

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _scan_key(text, i):
    """A dotted key starting at text[i] -> (parts, index after it)."""
    parts = []
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in "\"'":
            q = text[i]
            j = i + 1
            buf = []
            while j < n and text[j] != q and text[j] != "\n":
                if q == '"' and text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            parts.append("".join(buf))
            i = j + 1
        else:
            m = _BARE.match(text, i)
            if not m:
                return parts, i
            parts.append(m.group(0))
            i = m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ".":
            i += 1
            continue
        return parts, i


def locate(text):
    """{key path (a tuple): line} for the tables, keys and list elements of
    a TOML document (``("filters", "rules", 1)``: the second element of
    ``rules`` in ``[filters]``).  Only where things are: tomllib parses."""
    where = {}
    n = len(text)
    i = 0
    line = 1
    table = ()
    stack = []              # open [ / { of a value: (kind, path, element count)

    def skip_string(i, line):
        q = text[i]
        if text.startswith(q * 3, i):
            end = text.find(q * 3, i + 3)
            while end != -1 and q == '"' and text[end - 1] == "\\" and text[end - 2] != "\\":
                end = text.find(q * 3, end + 1)
            end = n if end == -1 else end + 3
            while end < n and text[end] == q:
                end += 1
        else:
            j = i + 1
            while j < n and text[j] != q and text[j] != "\n":
                j += 2 if (q == '"' and text[j] == "\\") else 1
            end = min(j + 1, n)
        return end, line + text.count("\n", i, end)

    at_line_start = True
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            at_line_start = not stack
            continue
        if c in " \t\r":
            i += 1
            continue
        if c == "#":
            j = text.find("\n", i)
            i = n if j == -1 else j
            continue
        if not stack and at_line_start:
            at_line_start = False
            if c == "[":
                double = text.startswith("[[", i)
                parts, j = _scan_key(text, i + (2 if double else 1))
                table = tuple(parts)
                if double:
                    k = where.get(("#count",) + table, 0)
                    where[("#count",) + table] = k + 1
                    table = table + (k,)
                where.setdefault(table, line)
                j = text.find("\n", j)
                i = n if j == -1 else j
                continue
            parts, j = _scan_key(text, i)
            if parts and j < n and text[j] == "=":
                key = table + tuple(parts)
                where[key] = line
                i = j + 1
                # the value: a list gets its elements' lines
                while i < n and text[i] in " \t":
                    i += 1
                if i < n and text[i] == "[":
                    stack.append([key, 0, True])
                    i += 1
                continue
            i = j if j > i else i + 1
            continue
        if stack:
            top = stack[-1]
            if c == "]" or c == "}":
                stack.pop()
                i += 1
                continue
            if c == ",":
                top[2] = True
                i += 1
                continue
            if top[2]:                       # an element starts here
                top[2] = False
                where.setdefault(top[0] + (top[1],), line)
                top[1] += 1
                if c == "[":
                    stack.append([top[0] + (top[1] - 1,), 0, True])
                    i += 1
                    continue
                if c == "{":
                    stack.append([top[0] + (top[1] - 1,), 0, False])
                    i += 1
                    continue
        if c in "\"'":
            i, line = skip_string(i, line)
            continue
        if c in "[{":
            stack.append([(), 0, False])
        i += 1
    return where


def load(path):
    """(data, lines) of a TOML file; ConfigError (with the line) when it
    does not parse."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError([Problem(path, 0, None, "cannot read the configuration file: %s"
                                   % e.strerror)]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([Problem(path, raw.count(b"\n", 0, e.start) + 1, None,
                                   "not UTF-8 text")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(m.group(1)) if m else 0
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        if m:
            msg += " (column %s)" % m.group(2)
        elif "end of document" in msg:
            line = text.count("\n") + (0 if text.endswith("\n") else 1)
        raise ConfigError([Problem(path, line, None, "not valid TOML: %s" % msg)]) from None
    return data, locate(text)


# ---------------------------------------------------------------- one command's settings

class _Key:
    """A setting of the file: its section and key, and the click
    parameter(s) it sets."""

    def __init__(self, section, key, params, spread=False):
        self.section, self.key, self.params, self.spread = section, key, params, spread

    @property
    def dotted(self):
        return "%s.%s" % (self.section, self.key)


class ServiceConfig:
    """A command's parameters from ``--config FILE`` and its command line
    (the command line wins).  Built in the command from click's context;
    ``resolve()`` reads the file (again, for a reload) and returns the
    parameters as an args namespace, or raises ConfigError."""

    def __init__(self, ctx, path, section, arguments, live=()):
        """``section``: the command's table; ``arguments``: {key: (param
        names...)} for the positional arguments (several names: a list
        spread over them); ``live``: the parameters a reload may change."""
        self.command = ctx.command
        self.path = os.path.abspath(path) if path else None
        self.section = section
        self.live = set(live)
        self.ctx = ctx
        params = {p.name: p for p in self.command.params}
        self.params = params
        self.keys = {}
        taken = set()
        for key, names in arguments.items():
            self.keys[(section, key)] = _Key(section, key, [params[n] for n in names],
                                            spread=len(names) > 1 or params[names[0]].nargs == -1)
            taken.update(names)
        for p in self.command.params:
            if p.name in taken or p.name in NOT_IN_FILE or not isinstance(p, click.Option):
                continue
            group = getattr(p, "group", None) or ""
            sec = SECTION_FILTERS if group.startswith("Filters") else \
                SECTION_OUTPUT if group.startswith("Counters") else section
            if group == "General":
                continue
            self.keys[(sec, p.name.replace("_", "-"))] = _Key(sec, p.name.replace("_", "-"), [p])
        # what the command line said, and what it left to the file
        from click.core import ParameterSource
        self.given = {n: ctx.params[n] for n in params
                      if n in ctx.params and
                      ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE}
        self.defaults = dict(ctx.params)

    def sections(self):
        out = {}
        for (sec, key) in self.keys:
            out.setdefault(sec, []).append(key)
        return out

    # ------------------------------------------------------------ values
    def _convert(self, k, value, lines, problems):
        """The click value(s) of one setting, or None (a problem noted)."""
        where = lines.get((k.section, k.key), 0)
        ctx = click.Context(self.command)

        def bad(msg, index=None):
            line = lines.get((k.section, k.key, index), where) if index is not None else where
            key = k.dotted + ("[%d]" % index if index is not None else "")
            problems.append(Problem(self.path, line, key, msg))
            return None

        def one(p, v, index=None):
            """One scalar for parameter p (converted as the command line's
            text would be)."""
            if isinstance(v, bool) or isinstance(v, (dict, list)) or v is None:
                kind = {bool: "true/false", dict: "a table", list: "a list"}.get(type(v), "?")
                return bad("expected %s, found %s" % (_what(p), kind), index), False
            if isinstance(v, float) and not _takes_float(p):
                return bad("expected %s, found %r" % (_what(p), v), index), False
            text = str(v)
            if k.key in PATH_KEYS or (k.key == "python" and ".py:" in text):
                text = self._path(text)
            if isinstance(p.type, click.types.IntParamType) and not isinstance(v, int):
                return bad("expected a whole number, found %r" % (v,), index), False
            try:
                return p.type.convert(text, p, ctx), True
            except click.BadParameter as e:
                return bad(_click_msg(e), index), False

        p = k.params[0]
        if k.spread:                                   # a list over the positional params
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, list):
                return bad("expected a list, e.g. %s" % _example(k))
            if len(k.params) > 1 and not 1 <= len(value) <= len(k.params):
                return bad("expected 1 to %d values, found %d" % (len(k.params), len(value)))
            out = []
            for i, v in enumerate(value):
                pi = k.params[min(i, len(k.params) - 1)]
                cv, ok = one(pi, v, i)
                if not ok:
                    return None
                out.append(cv)
            if len(k.params) > 1:
                out += [None] * (len(k.params) - len(out))
                return dict(zip((q.name for q in k.params), out))
            return {p.name: tuple(out)}
        if getattr(p, "multiple", False):
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                return bad("expected a list, e.g. %s" % _example(k))
            out = []
            for i, v in enumerate(value):
                cv, ok = one(p, v, i)
                if not ok:
                    return None
                out.append(cv)
            return {p.name: tuple(out)}
        if getattr(p, "is_flag", False):
            if not isinstance(value, bool):
                return bad("expected true or false, found %r" % (value,))
            return {p.name: value}          # rss = false is --no-rss
        if p.name == "cpus" and isinstance(value, list):
            value = ",".join(str(x) for x in value)
        cv, ok = one(p, value)
        if not ok:
            return None
        if getattr(p, "callback", None) is not None:
            try:
                cv = p.callback(ctx, p, cv)
            except click.BadParameter as e:
                return bad(_click_msg(e))
        return {p.name: cv}

    def _path(self, text):
        if not self.path or os.path.isabs(text):
            return text
        return os.path.normpath(os.path.join(os.path.dirname(self.path), text))

    def read(self, problems=None):
        """{param name: value} the file sets (ConfigError: every problem;
        or, given a list, the problems are added to it and the values that
        are right returned)."""
        if not self.path:
            return {}
        data, lines = load(self.path)
        collect = problems is not None
        problems = problems if collect else []
        values = {}
        sections = self.sections()
        for sec, table in data.items():
            if sec not in sections:
                problems.append(Problem(self.path, lines.get((sec,), 0), sec, _unknown(
                    "table", sec, sections, "tables: [%s]" % "], [".join(sections))))
                continue
            if not isinstance(table, dict):
                problems.append(Problem(self.path, lines.get((sec,), 0), sec,
                                        "expected a table ([%s])" % sec))
                continue
            for key, value in table.items():
                k = self.keys.get((sec, key))
                if k is None:
                    problems.append(Problem(self.path, lines.get((sec, key), 0),
                                            "%s.%s" % (sec, key),
                                            _unknown("key", key, {sec: sections[sec]}, None)))
                    continue
                got = self._convert(k, value, lines, problems)
                if got is not None:
                    values.update(got)
        if problems and not collect:
            raise ConfigError(problems)
        return values

    def resolve(self, problems=None):
        """The parameters: the file's, overridden by the command line's,
        defaulted as the command line defaults them.  An args namespace.
        ``problems``: a list to add the file's problems to instead of
        raising ConfigError (the wrong values are left at their defaults)."""
        values = dict(self.defaults)
        values.update(self.read(problems))
        values.update(self.given)
        values["config"] = self.path
        return SimpleNamespace(**values)

    def fixed_changes(self, old, new):
        """The settings a reload cannot apply that differ between two
        resolved configurations: ["backend (xdp -> packet)", ...]."""
        out = []
        for (sec, key), k in self.keys.items():
            for p in k.params:
                if p.name in self.live:
                    continue
                a, b = getattr(old, p.name, None), getattr(new, p.name, None)
                if a != b:
                    out.append("%s.%s (%s -> %s)" % (sec, key, _show(a), _show(b)))
        return sorted(set(out))

    def problem(self, param_name, message, index=None):
        """A Problem about a parameter: where the file sets it, or the
        command line."""
        if param_name in self.given or not self.path:
            p = self.params.get(param_name)
            opt = (max(p.opts, key=len) if isinstance(p, click.Option) else
                   p.human_readable_name) if p is not None else param_name
            return Problem(None, 0, opt, message)
        for (sec, key), k in self.keys.items():
            if any(p.name == param_name for p in k.params):
                try:
                    _, lines = load(self.path)
                except ConfigError:
                    lines = {}
                idx = (index,) if index is not None else ()
                line = lines.get((sec, key) + idx) or lines.get((sec, key), 0)
                return Problem(self.path, line, "%s.%s%s" % (
                    sec, key, "[%d]" % index if index is not None else ""), message)
        return Problem(self.path, 0, param_name, message)


def _show(v):
    if isinstance(v, (list, tuple)):
        return "[%s]" % ", ".join(_show(x) for x in v)
    if v is None:
        return "unset"
    return str(v)


def _what(p):
    t = p.type
    if isinstance(t, click.Choice):
        return "one of %s" % ", ".join(t.choices)
    if isinstance(t, click.IntRange) or t is click.INT:
        return "a whole number"
    return "a %s" % (getattr(t, "name", "value") or "value").lower()


def _takes_float(p):
    return p.type.name in ("SEC", "float", "RATE")


def _click_msg(e):
    return " ".join(str(e.message).split())


def _example(k):
    return {"rules": '["dns.rules"]', "filter": '["udp port 53"]', "drop": '["udp port 19"]',
            "bpf": '["p0f.bpf"]', "queues": "[4]", "interfaces": '["eth6", "eth7"]'}.get(
        k.key, "[...]")


def _unknown(what, name, sections, known_tables):
    import difflib
    if what == "table":
        near = difflib.get_close_matches(name, list(sections), 1)
        return "unknown table%s (%s)" % (
            "; did you mean [%s]?" % near[0] if near else "", known_tables)
    (sec, keys), = sections.items()
    near = difflib.get_close_matches(name, keys, 1)
    return "unknown key%s (in [%s]: %s)" % ("; did you mean %r?" % near[0] if near else "",
                                            sec, ", ".join(sorted(keys)))

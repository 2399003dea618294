"""Installation as a system service.

``meson install --destdir`` from the test's build tree stages the binary,
the man pages, the sample configurations, the systemd unit and the
sysusers.d entry where the build's install directories say, and never
touches a live configuration; ``systemd-analyze verify`` accepts the
staged unit; each man page renders without a groff warning and documents
every key of gateway/config.c and every option of gateway/main.c; dotsgw
sends READY=1 to $NOTIFY_SOCKET once its listeners answer, and STOPPING=1
when told to stop.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import time
from pathlib import Path, PurePosixPath

from harness import Skip, TestFailure

TIMEOUT = 120

LIVE_CONFIG = b'# the operator\'s live configuration: never overwritten\n'


# --------------------------------------------------------------------------
# Staging

class Staged:
    """A destdir install of ctx.build: where each installed file landed
    (dest + the absolute install path) and the paths it was built for."""

    def __init__(self, dest, opts):
        self.dest = dest
        self.prefix = opts['prefix']

        def absolute(value):
            p = PurePosixPath(value)
            return str(p if p.is_absolute() else PurePosixPath(self.prefix) / p)

        self.sbindir = absolute(opts['sbindir'])
        self.mandir = absolute(opts['mandir'])
        self.datadir = absolute(opts['datadir'])
        self.sysconfdir = absolute(opts['sysconfdir'])
        # Empty: the defaults of systemd/meson.build.
        self.unitdir = absolute(opts.get('systemdunitdir') or
                                'lib/systemd/system')
        self.sysusersdir = absolute(opts.get('sysusersdir') or 'lib/sysusers.d')

    def staged(self, path):
        """Where an installed absolute path is in the destdir."""
        return self.dest / str(path).lstrip('/')

    @property
    def binary(self):
        return self.staged(f'{self.sbindir}/dotsgw')

    @property
    def unit(self):
        return self.staged(f'{self.unitdir}/dotsgw.service')

    def man_page(self, name, section):
        return self.staged(f'{self.mandir}/man{section}/{name}.{section}')


def build_options(ctx):
    """The build's option values, by name (meson introspect)."""
    res = ctx.run(['meson', 'introspect', '--buildoptions', ctx.build],
                  name='meson-introspect')
    if res.rc != 0:
        raise TestFailure(f'meson introspect failed: {res.stderr}')
    return {o['name']: o['value'] for o in json.loads(res.stdout)}


def stage(ctx, live=False):
    """Installs ctx.build into ctx.tmp/dest; with live, a live
    configuration is put in place first, as on an installed machine."""
    dest = ctx.path('dest')
    staged = Staged(dest, build_options(ctx))
    live_path = staged.staged(f'{staged.sysconfdir}/dotsgw/dotsgw.conf')
    if live:
        live_path.parent.mkdir(parents=True)
        live_path.write_bytes(LIVE_CONFIG)
        live_path.chmod(0o640)
    # --no-rebuild: test what was built, as every other test does.
    res = ctx.run(['meson', 'install', '-C', ctx.build, '--no-rebuild',
                   '--destdir', dest], timeout=120, name='meson-install')
    if res.rc != 0:
        raise TestFailure(f'meson install failed ({res.rc}):\n'
                          f'{res.stdout[-2000:]}{res.stderr[-2000:]}')
    return staged


def built_with_systemd(ctx):
    """HAVE_SYSTEMD of the build (dotsgw_build.h)."""
    header = (ctx.build / 'dotsgw_build.h').read_text()
    m = re.search(r'^#define HAVE_SYSTEMD (\d+)', header, re.M)
    if not m:
        raise TestFailure('dotsgw_build.h does not define HAVE_SYSTEMD')
    return m.group(1) == '1'


def unit_settings(path):
    """(section, key, value) of each setting of a unit file, in order."""
    out, section = [], None
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in '#;':
            continue
        if line.startswith('['):
            section = line.strip('[]')
            continue
        key, _, value = line.partition('=')
        out.append((section, key.strip(), value.strip()))
    return out


def same_bytes(a, b, what):
    if Path(a).read_bytes() != Path(b).read_bytes():
        raise TestFailure(f'{what}: {a} differs from {b}')


# --------------------------------------------------------------------------
# meson install

def test_install_puts_files_in_place(ctx):
    s = stage(ctx, live=True)

    if not os.access(s.binary, os.X_OK):
        raise TestFailure(f'{s.binary} not installed or not executable')
    res = ctx.run([s.binary, '--version'], name='staged-dotsgw')
    if res.rc != 0 or not res.stdout.startswith('dotsgw '):
        raise TestFailure(f'staged dotsgw --version: {res.rc} {res.stdout!r}')

    pages = [('dotsgw', 8), ('dotsgw.conf', 5)]
    # dotsctl(8) arrives with the control CLI: installed when it exists.
    if (ctx.src / 'man' / 'dotsctl.8').exists():
        pages.append(('dotsctl', 8))
    for name, section in pages:
        same_bytes(s.man_page(name, section),
                   ctx.src / 'man' / f'{name}.{section}', f'{name}({section})')

    samples = sorted((ctx.src / 'config').glob('*.conf'))
    if not samples:
        raise TestFailure('no config/*.conf in the source tree')
    examples = s.staged(f'{s.datadir}/doc/dotsgw/examples')
    for sample in samples:
        same_bytes(examples / sample.name, sample, 'sample configuration')

    # The live configuration is the operator's: left alone, and nothing
    # else is put next to it.
    etc = s.staged(f'{s.sysconfdir}/dotsgw')
    live = etc / 'dotsgw.conf'
    if live.read_bytes() != LIVE_CONFIG or (live.stat().st_mode & 0o777) != 0o640:
        raise TestFailure(f'meson install changed the live {live}')
    extra = sorted(p.name for p in etc.iterdir() if p.name != 'dotsgw.conf')
    if extra:
        raise TestFailure(f'installed into {etc}: {extra}')

    sysusers = s.staged(f'{s.sysusersdir}/dotsgw.conf')
    if not re.search(r'^u dotsgw\s', sysusers.read_text(), re.M):
        raise TestFailure(f'{sysusers} does not create the dotsgw user')

    text = s.unit.read_text()
    if re.search(r'@\w+@', text):
        raise TestFailure(f'unconfigured @variable@ left in {s.unit}')
    settings = {(sec, k): v for sec, k, v in unit_settings(s.unit)}
    conf = f'{s.sysconfdir}/dotsgw/dotsgw.conf'
    want = {
        ('Service', 'Type'): 'notify' if built_with_systemd(ctx) else 'exec',
        ('Service', 'ExecStartPre'): f'{s.sbindir}/dotsgw --check-config {conf}',
        ('Service', 'ExecStart'): f'{s.sbindir}/dotsgw -c {conf} --syslog',
        ('Service', 'ExecReload'): '/bin/kill -HUP $MAINPID',
    }
    for key, value in want.items():
        if settings.get(key) != value:
            raise TestFailure(f'{s.unit}: {key[1]}={settings.get(key)!r}, '
                              f'expected {value!r}')


# --------------------------------------------------------------------------
# systemd unit

# The hardening the unit promises (README, dotsgw(8)); each must be there
# exactly, so that weakening one fails here and not only in production.
HARDENING = [
    ('User', 'dotsgw'),
    ('NoNewPrivileges', 'yes'),
    ('ProtectSystem', 'strict'),
    ('ProtectHome', 'yes'),
    ('PrivateTmp', 'yes'),
    ('PrivateDevices', 'yes'),
    ('RuntimeDirectory', 'dotsgw'),
    ('StateDirectory', 'dotsgw'),
    ('CapabilityBoundingSet', ''),
    ('AmbientCapabilities', ''),
    ('RestrictAddressFamilies', 'AF_INET AF_INET6 AF_UNIX'),
    ('SystemCallFilter', '@system-service'),
]


def test_unit_passes_systemd_analyze(ctx):
    analyze = shutil.which('systemd-analyze')
    if not analyze:
        raise Skip('systemd-analyze is not installed (Debian package systemd; '
                   'scripts/setup installs it)')
    s = stage(ctx)
    settings = unit_settings(s.unit)
    for key, value in HARDENING:
        if ('Service', key, value) not in settings:
            raise TestFailure(f'{s.unit}: no {key}={value}')

    # verify checks that ExecStart binaries exist: point the copy at the
    # staged binary, and man at the staged pages for Documentation=.
    installed = f'{s.sbindir}/dotsgw'
    copy_dir = ctx.path('unit')
    copy_dir.mkdir()
    copy = copy_dir / 'dotsgw.service'
    text = s.unit.read_text()
    if installed not in text:
        raise TestFailure(f'{s.unit} does not run {installed}')
    copy.write_text(text.replace(installed, str(s.binary)))
    env = {'MANPATH': s.staged(s.mandir), 'SYSTEMD_LOG_COLOR': '0'}

    res = ctx.run([analyze, 'verify', copy], env=env, name='verify')
    # verify exits 0 on unknown keys and bad values too: any output at all
    # is a finding.
    out = (res.stdout + res.stderr).strip()
    if res.rc != 0 or out:
        raise TestFailure(f'systemd-analyze verify (exit {res.rc}):\n{out}')

    # Exposure 0.0 (locked down) .. 10.0 (unprotected): the unit scores
    # 1.4; 2.0 leaves room for systemd versions that weigh differently.
    res = ctx.run([analyze, 'security', '--offline=true', '--threshold=20',
                   '--no-pager', copy], env=env, name='security')
    m = re.search(r'Overall exposure level for \S+: ([\d.]+)', res.stdout)
    if res.rc != 0 or not m:
        raise TestFailure(f'systemd-analyze security (exit {res.rc}):\n'
                          f'{res.stdout[-3000:]}{res.stderr[-2000:]}')
    print(f'exposure level {m.group(1)}')


# --------------------------------------------------------------------------
# man pages

def man_source_text(path):
    """The page's source with roff escapes for '-' and hyphenation
    suppression undone, for looking words up."""
    return path.read_text().replace('\\-', '-').replace('\\%', '')


def config_keys(src):
    """Rows of the key tables of gateway/config.c: (name, row text)."""
    text = (src / 'gateway' / 'config.c').read_text()
    rows = []
    for table in re.finditer(r'static const struct cf_key cf_\w+_keys\[\] = '
                             r'\{\n(.*?)\n\};', text, re.S):
        # One row per "\t{ ..." chunk (a comment line joins the row above).
        for chunk in re.split(r'\n(?=\t\{)', table.group(1)):
            m = re.match(r'\t\{\s*(?:\.name\s*=\s*)?"([^"]+)"', chunk)
            if m:
                rows.append((m.group(1), chunk))
    return rows


def decimal(hundredths, fixed):
    """A CF_DECIMAL value as the page writes it: 0.10 for ranges (fixed),
    1.0 or 1.5 for defaults."""
    text = f'{hundredths / 100:.2f}'
    if fixed:
        return text
    text = text.rstrip('0')
    return text + '0' if text.endswith('.') else text


def symbol_value(src, config_c, row, symbol):
    """The page's spelling of a default given by name: an enum row's
    string ("map" for GW_MODE_MAP) or a #define's number."""
    enums = re.search(r'\.enums = (\w+)', row)
    if enums:
        table = re.search(r'cf_enum ' + enums.group(1) + r'\[\] = \{(.*?)\};',
                          config_c, re.S)
        m = table and re.search(r'\{ "([^"]+)", ' + symbol + r' \}',
                                table.group(1))
        if m:
            return f'\\(dq{m.group(1)}\\(dq'
    for header in sorted((src / 'common').glob('*.h')):
        m = re.search(r'^#define ' + symbol + r'\s+(\d+)\b',
                      header.read_text(), re.M)
        if m:
            return re.compile(r'(?<![\w.-])' + m.group(1) + r'(?![\w-])')
    raise TestFailure(f'cannot resolve the default {symbol} of row {row!r}')


def row_facts(src, config_c, row):
    """What the page must say about one key table row: its bounds and
    default, as the page writes them."""
    facts = []
    sym = re.search(r'\.def = ([A-Z][A-Z0-9_]+)\b', row)
    if sym:
        facts.append(symbol_value(src, config_c, row, sym.group(1)))
    lo = re.search(r'\.lo = (\d+), \.hi = (\d+)', row)
    dec = 'CF_DECIMAL' in row
    if lo and re.search(r'CF_(INT|STRING|PSK|STRLIST|TRIPLE)\b', row):
        lo_v, hi_v = int(lo.group(1)), int(lo.group(2))
        facts.append(f'{decimal(lo_v, True)}..{decimal(hi_v, True)}' if dec
                     else f'{lo_v}..{hi_v}')
    tdef = re.search(r'\.tdef = \{ (\d+), (\d+), (\d+) \}', row)
    if tdef:
        shown = [decimal(int(v), False) if dec else v for v in tdef.groups()]
        facts.append('[' + ', '.join(shown) + ']')
    d = re.search(r'\.def = (\d+|true|false)\b', row)
    if d:
        facts.append(re.compile(r'(?<![\w.-])' + d.group(1) + r'(?![\w-])'))
    sdef = re.search(r'\.sdef = "([^"]*)"', row)
    if sdef:
        facts.append(f'\\(dq{sdef.group(1)}\\(dq')
    return facts


def page_paragraphs(text):
    """(tag, body) of each .TP/.TQ paragraph and .SS section heading of a
    man page source."""
    paras, cur = [], None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(('.TP', '.TQ')):
            cur = [lines[i + 1] if i + 1 < len(lines) else '', []]
            paras.append(cur)
        elif line.startswith('.SS'):
            # a section: "gateway", "server", ... are keys too
            cur = [line, []]
            paras.append(cur)
        elif line.startswith(('.SH', '.PP', '.RS', '.RE', '.IP')):
            cur = None
        elif cur is not None:
            cur[1].append(line)
    return [(tag, ' '.join(body)) for tag, body in paras]


def check_conf_page(ctx, page):
    """Each key of gateway/config.c's tables has a paragraph in the page
    that states its bounds and default as the table defines them (keys
    such as port exist in several sections: one paragraph must do)."""
    paras = page_paragraphs(man_source_text(page))
    rows = config_keys(ctx.src)
    config_c = (ctx.src / 'gateway' / 'config.c').read_text()
    if len(rows) < 40:
        raise TestFailure(f'only {len(rows)} keys found in gateway/config.c:'
                          ' the table parser is out of date')
    problems = []
    for name, row in rows:
        word = re.compile(r'(?<![\w-])' + re.escape(name) + r'(?![\w-])')
        tagged = [p for p in paras if word.search(p[0])]
        if not tagged:
            problems.append(f'{name}: not documented')
            continue
        facts = row_facts(ctx.src, config_c, row)

        def states(para, fact):
            text = para[0] + ' ' + para[1]
            return fact.search(text) if isinstance(fact, re.Pattern) \
                else fact in text
        if not any(all(states(p, f) for f in facts) for p in tagged):
            shown = [f.pattern if isinstance(f, re.Pattern) else f
                     for f in facts]
            problems.append(f'{name}: no paragraph states all of {shown}')
    if problems:
        raise TestFailure(f'{page.name} disagrees with gateway/config.c:\n'
                          + '\n'.join(problems))


def check_gateway_page(ctx, page):
    text = man_source_text(page)
    main = (ctx.src / 'gateway' / 'main.c').read_text()
    opts = re.findall(r'\{ "([\w-]+)", \w+_argument, NULL, \'(\w)\' \}', main)
    if len(opts) < 5:
        raise TestFailure(f'only {opts} options found in gateway/main.c')
    # --syslog has no short form: its 's' is not in the getopt string.
    shorts = re.search(r'getopt_long\([^"]*"([^"]*)"', main).group(1)
    missing = []
    for long_name, short in opts:
        if f'--{long_name}' not in text:
            missing.append(f'--{long_name}')
        if short in shorts and f'-{short}' not in text:
            missing.append(f'-{short}')
    for section in ('SYNOPSIS', 'OPTIONS', 'SIGNALS', 'FILES', 'EXIT STATUS',
                    'ENVIRONMENT'):
        if f'.SH {section}' not in text:
            missing.append(f'section {section}')
    for word in ('SIGTERM', 'SIGHUP', 'READY=1', 'STOPPING=1',
                 '/run/dotsgw', 'control.sock'):
        if word not in text:
            missing.append(word)
    if missing:
        raise TestFailure(f'{page.name} lacks {missing}')


def test_man_pages_render_without_warnings(ctx):
    if not shutil.which('man'):
        raise TestFailure('man is not installed (scripts/setup installs man-db)')
    s = stage(ctx)
    pages = [s.man_page('dotsgw', 8), s.man_page('dotsgw.conf', 5)]
    if (ctx.src / 'man' / 'dotsctl.8').exists():
        pages.append(s.man_page('dotsctl', 8))
    env = {'MANWIDTH': 80, 'MANPAGER': 'cat', 'PAGER': 'cat'}
    for page in pages:
        # groff warnings are errors: stderr must stay empty.
        res = ctx.run(['man', '--warnings', '-l', page], env=env,
                      name=f'man-{page.name}')
        if res.rc != 0 or res.stderr.strip():
            raise TestFailure(f'man -l {page.name} (exit {res.rc}):\n'
                              f'{res.stderr}')
        if not re.search(r'^NAME\s*$', res.stdout, re.M):
            raise TestFailure(f'man -l {page.name} rendered no NAME section')
        if page.name != 'dotsctl.8':
            head = res.stdout.splitlines()[0] if res.stdout else ''
            title = page.name.rsplit('.', 1)[0].upper()
            if not head.startswith(f'{title}('):
                raise TestFailure(f'{page.name}: rendered title {head!r}')
    check_conf_page(ctx, s.man_page('dotsgw.conf', 5))
    check_gateway_page(ctx, s.man_page('dotsgw', 8))


def test_man_page_example_is_valid(ctx):
    """The EXAMPLE of dotsgw.conf(5) passes --check-config."""
    text = (ctx.src / 'man' / 'dotsgw.conf.5').read_text()
    m = re.search(r'^\.SH EXAMPLE\n.*?^\.EX\n(.*?)^\.EE$', text, re.S | re.M)
    if not m:
        raise TestFailure('dotsgw.conf(5) has no .EX example')
    example = m.group(1).replace('\\-', '-').replace('\\e', '\\')
    path = ctx.path('example.conf')
    path.write_text(example)
    res = ctx.check_config(path)
    if res.rc != 0:
        raise TestFailure(f'the example of dotsgw.conf(5) is invalid:\n'
                          f'{res.stderr}')


# --------------------------------------------------------------------------
# sd_notify readiness

def recv_state(sock, want, deadline, seen):
    """Reads notification datagrams until one carries the line want;
    bounded by deadline (time.monotonic())."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TestFailure(f'no {want} on NOTIFY_SOCKET; received {seen}')
        sock.settimeout(remaining)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            continue
        lines = data.decode('utf-8', 'replace').split('\n')
        seen.append(lines)
        if want in lines:
            return


def test_ready_notification(ctx):
    if not built_with_systemd(ctx):
        raise Skip('built without libsystemd (-Dsystemd=disabled or '
                   'libsystemd-dev missing): dotsgw sends no notification')
    udp_port = ctx.free_port()
    tls_port = ctx.free_port()
    cfg = {
        'gateway': {'mode': 'map', 'insecure-lab': True, 'log-level': 'info'},
        'server': {'listen': (
            {'transport': 'udp', 'address': '127.0.0.1', 'port': udp_port},
            {'transport': 'tls', 'address': '127.0.0.1', 'port': tls_port},
        )},
        'clients': ({'name': 'c', 'psk-identity': 'c', 'psk-key': 'k',
                     'upstream': 'u',
                     'allowed-prefixes': ['203.0.113.0/24']},),
        'upstreams': ({'name': 'u', 'address': '127.0.0.1',
                       'port': ctx.free_port(), 'transport': 'udp'},),
    }
    conf, _ = ctx.write_config(cfg)

    # An abstract socket name (sd_notify's "@" form): no path length limit
    # whatever the temp dir.
    name = f'dotsgw-test-notify-{os.getpid()}-{secrets.token_hex(4)}'
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        notify.bind('\0' + name)
        gw = ctx.start_gateway(conf, ready=False,
                               env={'NOTIFY_SOCKET': '@' + name})
        seen = []
        recv_state(notify, 'READY=1', time.monotonic() + 15 * ctx.scale, seen)

        # Ready means listening: a CoAP ping (RFC 7252 §4.3, CON with
        # code 0.00) to the UDP listener is answered with an RST, and the
        # TLS listener accepts a connection. libcoap 4.3.1 answers pings
        # with an RST at most every 250 ms per session, counted from its
        # clock's start (net.c: last_tx_rst starts at 0): a ping in the
        # first 250 ms of the process goes unanswered, so the ping is
        # repeated, with the same mid, every 300 ms (at most 16 times).
        mid = secrets.randbelow(0x10000)
        probe.settimeout(0.3)
        answer = None
        for _ in range(16):
            probe.sendto(bytes([0x40, 0x00, mid >> 8, mid & 0xff]),
                         ('127.0.0.1', udp_port))
            try:
                answer = probe.recv(64)
                break
            except socket.timeout:
                continue
        if answer is None:
            raise TestFailure('READY=1 sent, but the UDP listener does not '
                              'answer a CoAP ping (16 tries, 300 ms apart)')
        if answer[:4] != bytes([0x70, 0x00, mid >> 8, mid & 0xff]):
            raise TestFailure(f'CoAP ping answered with {answer.hex()}, not '
                              'an RST')
        try:
            socket.create_connection(('127.0.0.1', tls_port),
                                     timeout=5 * ctx.scale).close()
        except OSError as e:
            raise TestFailure(f'READY=1 sent, but the TLS listener refuses '
                              f'connections: {e}')
        gw.wait_log(re.compile(r'\bready\b'), 5)

        gw.signal(signal.SIGTERM)
        recv_state(notify, 'STOPPING=1', time.monotonic() + 10 * ctx.scale,
                   seen)
        rc = gw.wait(15)
        if rc != 0:
            raise TestFailure(f'dotsgw exited {rc} after SIGTERM')
        ready = [m for m in seen if 'READY=1' in m]
        if len(ready) != 1:
            raise TestFailure(f'READY=1 sent {len(ready)} times: {seen}')
    finally:
        probe.close()
        notify.close()

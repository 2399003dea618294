"""Integration test harness for dotsgw (Python 3 standard library only).

Tests are functions ``test_*(ctx)`` in ``test/integration/test_*.py``;
``run.py`` runs each one in its own process with a timeout and hands it a
:class:`Context`:

    ctx.build, ctx.src, ctx.tmp     build tree, source tree, per-test temp dir
    ctx.sanitized                   the build uses ASan/UBSan
    ctx.free_port()                 a port free on both UDP and TCP
    ctx.cert(cn, san=...)           CA-signed EC P-256 certificate (cached)
    ctx.write_config(cfg)           dotsgw libconfig file from a dict
    ctx.check_config(path)          runs ``dotsgw --check-config``
    ctx.start_gateway(path)         runs ``dotsgw -c`` and waits for "ready"
    ctx.start_test_server(...)      dots-test-server, waits for "listening"
    ctx.start_test_client(...)      dots-test-client with a script
    ctx.spawn(name, args)           any other process

Rules the harness enforces so that tests stay honest:

* Synchronisation is always a bounded wait on an event (a JSON line on a
  process's stdout, a log line on its stderr, its exit), never a sleep.
  Every timeout a test passes is nominal: it is multiplied by
  ``ctx.scale`` (3 under sanitizers, or $DOTSGW_TEST_TIMEOUT_SCALE).
* Every process is stopped when the test ends, and any sanitizer report
  (ASan, LSan, UBSan) in any process's stderr fails the test, even when the
  test itself passed.
* Each process's stdout and stderr are kept in ctx.tmp as NAME.stdout.log
  and NAME.stderr.log; run.py keeps ctx.tmp when the test fails.
"""

import fcntl
import hashlib
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

__all__ = [
    'Skip', 'TestFailure', 'Context', 'Process', 'Cert', 'CertStore',
    'Array', 'List', 'Raw', 'free_port', 'render_libconfig',
    'write_gateway_config', 'build_is_sanitized', 'timeout_scale',
]

SRC = Path(__file__).resolve().parent.parent.parent


class Skip(Exception):
    """Raise to count the test as skipped: ``raise Skip("reason")``."""


class TestFailure(AssertionError):
    """A test failure found by the harness (timeout, sanitizer report...)."""


# --------------------------------------------------------------------------
# Build introspection

def build_is_sanitized(build):
    """True when the meson tree at build was configured with b_sanitize."""
    info = Path(build) / 'meson-info' / 'intro-buildoptions.json'
    try:
        options = json.loads(info.read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return False
    for opt in options:
        if opt.get('name') == 'b_sanitize':
            return opt.get('value', 'none') not in ('none', '')
    return False


def timeout_scale(build):
    """Factor applied to every nominal timeout for this build."""
    env = os.environ.get('DOTSGW_TEST_TIMEOUT_SCALE')
    if env:
        try:
            value = float(env)
        except ValueError:
            value = 0
        if value > 0:
            return value
    if valgrind_enabled():
        return 10.0
    return 3.0 if build_is_sanitized(build) else 1.0


def valgrind_enabled():
    """DOTSGW_VALGRIND=1: dotsgw runs under valgrind memcheck (scripts/valgrind)."""
    return os.environ.get('DOTSGW_VALGRIND') == '1'


# What dotsgw is wrapped in under DOTSGW_VALGRIND=1. Leaks of kind
# definite/indirect and every memory error are reports; "still reachable"
# at exit (libcoap, GnuTLS and glibc keep global state) is not.
VALGRIND = ['valgrind', '--tool=memcheck', '--leak-check=full',
            '--show-leak-kinds=definite,indirect',
            '--errors-for-leak-kinds=definite,indirect',
            '--track-origins=yes', '--error-exitcode=99', '-q']


# Markers that begin or summarise a sanitizer report on stderr.
_SANITIZER_RE = re.compile(
    r'ERROR: (Address|Leak|Thread|Memory)Sanitizer'
    r'|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer'
    r'|: runtime error: '
    r'|==\d+== (Invalid (read|write|free)|Conditional jump|Syscall param'
    r'|Mismatched free|Source and destination overlap'
    r'|Use of uninitialised|\d+ bytes in \d+ blocks are (definitely|indirectly) lost)')


def sanitizer_report(text):
    """Returns the sanitizer report found in text (a stderr log), or None."""
    m = _SANITIZER_RE.search(text)
    if not m:
        return None
    start = text.rfind('\n', 0, m.start()) + 1
    return text[start:start + 8000]


# --------------------------------------------------------------------------
# Ports

_given_ports = set()


def _family(host):
    try:
        return (socket.AF_INET6 if ipaddress.ip_address(host).version == 6
                else socket.AF_INET)
    except ValueError:
        raise ValueError(f'free_port: {host!r} is not a numeric address')


def free_port(host='127.0.0.1', attempts=200):
    """A port number free on host for both UDP and TCP.

    The kernel picks a UDP port; it is accepted only if TCP can bind the
    same number too. A port is never handed out twice in one process.
    Nothing holds the port afterwards: bind it soon.
    """
    family = _family(host)
    for _ in range(attempts):
        with socket.socket(family, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            if port in _given_ports:
                continue
            with socket.socket(family, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
        _given_ports.add(port)
        return port
    raise TestFailure(f'no port free on both UDP and TCP on {host} '
                      f'after {attempts} attempts')


def host_port(host, port):
    """'HOST:PORT', with IPv6 addresses in brackets."""
    if ':' in host:
        return f'[{host}]:{port}'
    return f'{host}:{port}'


# --------------------------------------------------------------------------
# Certificates (openssl CLI)

class Cert:
    """Paths of a PEM certificate, its key and the CA that issued it."""

    def __init__(self, cert, key, ca, cn, san):
        self.cert, self.key, self.ca = str(cert), str(key), str(ca)
        self.cn, self.san = cn, list(san)

    def __repr__(self):
        return f'Cert(cn={self.cn!r}, san={self.san!r}, cert={self.cert!r})'


def _san_entry(name):
    if re.match(r'^(DNS|IP|URI|email):', name):
        return name
    try:
        ipaddress.ip_address(name)
        return f'IP:{name}'
    except ValueError:
        return f'DNS:{name}'


class CertStore:
    """EC P-256 certificates made with the openssl CLI, cached in a
    directory shared by every test of a run (run.py passes it to each test
    process) and safe against concurrent tests (flock)."""

    CA_DAYS = 3650
    LEAF_DAYS = 825

    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _openssl(self, *args):
        try:
            r = subprocess.run(('openssl',) + args, cwd=self.dir,
                               stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise TestFailure('openssl is not installed (scripts/setup)')
        except subprocess.TimeoutExpired:
            raise TestFailure(f'openssl {args[0]} took more than 60 s')
        if r.returncode != 0:
            raise TestFailure(f'openssl {" ".join(args)} failed:\n'
                              f'{r.stdout}{r.stderr}')

    def _locked(self):
        lock = open(self.dir / '.lock', 'w')
        fcntl.flock(lock, fcntl.LOCK_EX)
        return lock

    @staticmethod
    def _subj(cn):
        return '/CN=' + cn.replace('\\', '\\\\').replace('/', '\\/')

    def _make_ca(self, name):
        pem, key = self.dir / f'{name}.pem', self.dir / f'{name}.key'
        if pem.exists() and key.exists():
            return pem, key
        tmp = f'.{name}.{os.getpid()}'
        self._openssl('req', '-x509', '-new', '-newkey', 'ec',
                      '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
                      '-keyout', f'{tmp}.key', '-out', f'{tmp}.pem',
                      '-days', str(self.CA_DAYS),
                      '-subj', self._subj(f'dotsgw test {name}'),
                      '-addext', 'basicConstraints=critical,CA:TRUE',
                      '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
        os.replace(self.dir / f'{tmp}.key', key)
        os.replace(self.dir / f'{tmp}.pem', pem)
        return pem, key

    def ca(self, name='ca'):
        """The CA called name (made on first use); its Cert has
        cert == ca == the CA certificate."""
        with self._locked():
            pem, key = self._make_ca(name)
        return Cert(pem, key, pem, f'dotsgw test {name}', [])

    def cert(self, cn, san=None, ca='ca', name=None):
        """A certificate for cn issued by CA ca, usable by both TLS clients
        and servers. san: list of 'DNS:x', 'IP:x' or bare names/addresses
        (default [cn]; [] for none)."""
        if san is None:
            san = [cn]
        san = [_san_entry(s) for s in san]
        digest = hashlib.sha256(
            json.dumps([cn, san, ca]).encode()).hexdigest()[:12]
        if name is None:
            name = re.sub(r'[^A-Za-z0-9.-]+', '_', cn)[:40] + '-' + digest
        pem, key = self.dir / f'{name}.pem', self.dir / f'{name}.key'
        with self._locked():
            ca_pem, ca_key = self._make_ca(ca)
            if not (pem.exists() and key.exists()):
                tmp = f'.{name}.{os.getpid()}'
                ext = self.dir / f'{tmp}.ext'
                lines = ['basicConstraints=critical,CA:FALSE',
                         'keyUsage=critical,digitalSignature',
                         'extendedKeyUsage=serverAuth,clientAuth']
                if san:
                    lines.append('subjectAltName=' + ','.join(san))
                ext.write_text('\n'.join(lines) + '\n')
                self._openssl('req', '-new', '-newkey', 'ec',
                              '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                              '-nodes', '-keyout', f'{tmp}.key',
                              '-out', f'{tmp}.csr', '-subj', self._subj(cn))
                self._openssl('x509', '-req', '-in', f'{tmp}.csr',
                              '-CA', str(ca_pem), '-CAkey', str(ca_key),
                              '-set_serial', '0x' + secrets.token_hex(12),
                              '-days', str(self.LEAF_DAYS),
                              '-extfile', str(ext), '-out', f'{tmp}.pem')
                os.replace(self.dir / f'{tmp}.key', key)
                os.replace(self.dir / f'{tmp}.pem', pem)
                for leftover in (ext, self.dir / f'{tmp}.csr'):
                    leftover.unlink(missing_ok=True)
        return Cert(pem, key, ca_pem, cn, san)


# --------------------------------------------------------------------------
# libconfig rendering

class Array(list):
    """Forces a libconfig array ``[ ... ]`` (scalars of one type)."""


class List(list):
    """Forces a libconfig list ``( ... )`` (any values, groups included)."""


class Raw(str):
    """Text written as is in place of a value (e.g. ``Raw('0x10')``, or a
    deliberately malformed value)."""


_NAME_RE = re.compile(r'^[A-Za-z*][-A-Za-z0-9_*]*$')
_INT32_MAX = 2**31 - 1


def _quote(s):
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append('\\' + ch)
        elif ch == '\n':
            out.append('\\n')
        elif ch == '\t':
            out.append('\\t')
        elif ch == '\r':
            out.append('\\r')
        elif ch == '\f':
            out.append('\\f')
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append(f'\\x{ord(ch):02x}')
        else:
            out.append(ch)
    out.append('"')
    return ''.join(out)


def _scalar(v):
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, int):
        return str(v) + ('L' if abs(v) > _INT32_MAX else '')
    if isinstance(v, float):
        if v != v or v in (float('inf'), float('-inf')):
            raise ValueError(f'libconfig has no float {v!r}')
        s = repr(v)
        if '.' not in s:
            s = s.replace('e', '.0e') if 'e' in s else s + '.0'
        return s
    if isinstance(v, str):
        return _quote(v)
    raise TypeError(f'cannot render {type(v).__name__} {v!r} in libconfig')


def _is_list(v):
    if isinstance(v, List) or isinstance(v, tuple):
        return True
    return (isinstance(v, list) and not isinstance(v, Array) and
            any(isinstance(x, (dict, list, tuple)) for x in v))


def render_libconfig(cfg):
    """Renders cfg (a dict) to libconfig text, one setting per line.

    dict -> group ``{ }``; a list holding groups or lists, a tuple, or
    List(...) -> list ``( )``; any other list or Array(...) -> array
    ``[ ]``; bool -> true/false; int (L suffix past 32 bits); float;
    str (quoted, escaped); Raw -> verbatim; a None value omits the key.
    Keys are written as given (hyphens included) and must be libconfig
    names.

    Returns (text, lines): lines maps each setting's path to its 1-based
    line number: 'gateway.hop-limit', 'clients[0]', 'clients[0].name',
    'server.session.heartbeat-interval[2]' (array elements share their
    array's line).
    """
    if not isinstance(cfg, dict):
        raise TypeError('render_libconfig: the top level must be a dict')
    out = []
    lines = {}

    def emit(text):
        out.append(text)
        return len(out)

    def value(v, path, ind, head, tail):
        if isinstance(v, dict):
            lines[path] = emit(f'{ind}{head}{{')
            group(v, path, ind + '  ')
            emit(f'{ind}}}{tail}')
        elif _is_list(v):
            lines[path] = emit(f'{ind}{head}(')
            items = list(v)
            for i, x in enumerate(items):
                if x is None:
                    raise ValueError(f'{path}[{i}] is None')
                value(x, f'{path}[{i}]', ind + '  ', '',
                      ',' if i + 1 < len(items) else '')
            emit(f'{ind}){tail}')
        elif isinstance(v, list):
            text = '[ ' + ', '.join(_scalar(x) for x in v) + ' ]' \
                if v else '[ ]'
            ln = emit(f'{ind}{head}{text}{tail}')
            lines[path] = ln
            for i in range(len(v)):
                lines[f'{path}[{i}]'] = ln
        else:
            lines[path] = emit(f'{ind}{head}{_scalar(v)}{tail}')

    def group(d, path, ind):
        for key, v in d.items():
            if v is None:
                continue
            if not isinstance(key, str) or not _NAME_RE.match(key):
                raise ValueError(f'{key!r} is not a libconfig setting name')
            value(v, f'{path}.{key}' if path else key, ind, f'{key} = ', ';')

    group(cfg, '', '')
    return '\n'.join(out) + '\n', lines


def write_gateway_config(path, cfg):
    """Writes cfg (see render_libconfig) to path as a dotsgw config file.
    Returns the setting-path -> line-number map."""
    text, lines = render_libconfig(cfg)
    Path(path).write_text(text, encoding='utf-8')
    return lines


# --------------------------------------------------------------------------
# Processes

def _describe(match):
    if callable(match):
        return getattr(match, '__name__', repr(match))
    return repr(match)


def _event_matches(match, ev):
    if callable(match):
        try:
            return bool(match(ev))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            return False
    if isinstance(match, dict):
        return all(k in ev and ev[k] == v for k, v in match.items())
    raise TypeError('expect: match must be a dict or a callable')


def _line_matches(match, line):
    if isinstance(match, re.Pattern):
        return match.search(line) is not None
    if isinstance(match, str):
        return match in line
    if callable(match):
        return bool(match(line))
    raise TypeError('wait_log: match must be a str, a regex or a callable')


class Process:
    """A child process with its stdout parsed as JSON lines.

    Every stdout line that is a JSON object becomes an event; expect()
    takes events out in arrival order, skipping (and keeping for later)
    those that do not match. stderr is written to NAME.stderr.log and kept
    in memory for wait_log(). All waits are bounded.
    """

    def __init__(self, name, args, logdir, env=None, cwd=None, stdin=True,
                 scale=1.0):
        self.name = name
        self.args = [str(a) for a in args]
        self.scale = scale
        self.logdir = Path(logdir)
        self.stdout_log = self.logdir / f'{name}.stdout.log'
        self.stderr_log = self.logdir / f'{name}.stderr.log'
        self.events = []          # every JSON event, in arrival order
        self.stdout_lines = []    # every stdout line
        self.stderr_lines = []
        self._pending = []        # events not yet taken by expect()
        self._cond = threading.Condition()
        self._eof = {'stdout': False, 'stderr': False}
        self._sanitizer_checked = False
        self.killed = False
        try:
            self.popen = subprocess.Popen(
                self.args, cwd=cwd, env=env,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            raise TestFailure(f'{name}: cannot start {self.args[0]}: {e}')
        self._threads = [
            threading.Thread(target=self._read, args=('stdout',),
                             daemon=True, name=f'{name}-stdout'),
            threading.Thread(target=self._read, args=('stderr',),
                             daemon=True, name=f'{name}-stderr'),
        ]
        for t in self._threads:
            t.start()

    def __repr__(self):
        return f'Process({self.name!r}, pid={self.pid})'

    @property
    def pid(self):
        return self.popen.pid

    @property
    def returncode(self):
        return self.popen.poll()

    def _read(self, which):
        pipe = getattr(self.popen, which)
        path = self.stdout_log if which == 'stdout' else self.stderr_log
        with open(path, 'w', encoding='utf-8') as log:
            for raw in iter(pipe.readline, b''):
                line = raw.decode('utf-8', 'replace').rstrip('\r\n')
                log.write(line + '\n')
                log.flush()
                with self._cond:
                    if which == 'stderr':
                        self.stderr_lines.append(line)
                    else:
                        self.stdout_lines.append(line)
                        ev = None
                        if line.startswith('{'):
                            try:
                                ev = json.loads(line)
                            except ValueError:
                                ev = None
                        if isinstance(ev, dict):
                            self.events.append(ev)
                            self._pending.append(ev)
                    self._cond.notify_all()
        pipe.close()
        with self._cond:
            self._eof[which] = True
            self._cond.notify_all()

    def _context(self):
        rc = self.popen.poll()
        state = 'running' if rc is None else f'exited with {rc}'
        tail = '\n'.join(self.stderr_lines[-30:]) or '(empty)'
        return f'{self.name} ({state}); last stderr lines:\n{tail}'

    def send(self, line):
        """Writes one line (str, or an object sent as JSON) to stdin."""
        if self.popen.stdin is None:
            raise TestFailure(f'{self.name}: started without stdin')
        if not isinstance(line, str):
            line = json.dumps(line)
        try:
            self.popen.stdin.write(line.encode() + b'\n')
            self.popen.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise TestFailure(f'{self.name}: stdin is closed\n'
                              + self._context())

    def close_stdin(self):
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except BrokenPipeError:
                pass

    def expect(self, match, timeout=10, what=None):
        """Waits at most timeout (nominal) seconds for a JSON event
        matching match: a dict (every key equal) or a predicate. Returns
        the event and removes it from the pending ones; fails the test on
        timeout or when the process closes stdout first."""
        limit = timeout * self.scale
        deadline = time.monotonic() + limit
        what = what or _describe(match)
        with self._cond:
            while True:
                for i, ev in enumerate(self._pending):
                    if _event_matches(match, ev):
                        del self._pending[i]
                        return ev
                if self._eof['stdout']:
                    raise TestFailure(
                        f'{self.name}: closed stdout before {what}; '
                        f'pending events: {self._pending[-10:]}\n'
                        + self._context())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TestFailure(
                        f'{self.name}: no {what} within {limit:g} s; '
                        f'pending events: {self._pending[-10:]}\n'
                        + self._context())
                self._cond.wait(remaining)

    def expect_none(self, match, within, what=None):
        """Fails if an event matching match arrives within (nominal)
        seconds. This is the one bounded wait that is expected to run
        out: use it only to check that something does NOT happen."""
        try:
            ev = self.expect(match, within, what)
        except TestFailure:
            return
        raise TestFailure(f'{self.name}: unexpected event {ev}')

    def log_mark(self):
        """A position in stderr for wait_log(since=...)."""
        with self._cond:
            return len(self.stderr_lines)

    def wait_log(self, match, timeout=10, since=0):
        """Waits at most timeout (nominal) seconds for a stderr line (from
        position since) containing match (a str, a compiled regex or a
        predicate); returns the line."""
        limit = timeout * self.scale
        deadline = time.monotonic() + limit
        with self._cond:
            while True:
                for line in self.stderr_lines[since:]:
                    if _line_matches(match, line):
                        return line
                since = max(since, len(self.stderr_lines))
                if self._eof['stderr']:
                    raise TestFailure(f'{self.name}: closed stderr before a '
                                      f'line matching {_describe(match)}\n'
                                      + self._context())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TestFailure(f'{self.name}: no stderr line matching '
                                      f'{_describe(match)} within {limit:g} s'
                                      '\n' + self._context())
                self._cond.wait(remaining)

    def _finish(self):
        """After exit: drains the readers (bounded) and checks for
        sanitizer reports, once."""
        for t in self._threads:
            t.join(5 * self.scale)
        self.close_stdin()
        if self._sanitizer_checked:
            return
        self._sanitizer_checked = True
        with self._cond:
            text = '\n'.join(self.stderr_lines)
        report = sanitizer_report(text)
        if report:
            raise TestFailure(f'{self.name}: sanitizer report (exit '
                              f'{self.popen.returncode}):\n{report}')

    def wait(self, timeout=10):
        """Waits at most timeout (nominal) seconds for the process to exit
        by itself and returns its exit code (negative: killed by signal)."""
        limit = timeout * self.scale
        try:
            rc = self.popen.wait(limit)
        except subprocess.TimeoutExpired:
            raise TestFailure(f'{self.name}: still running after {limit:g} s'
                              '\n' + self._context())
        self._finish()
        return rc

    def signal(self, signo):
        if self.popen.poll() is None:
            self.popen.send_signal(signo)

    def terminate(self, timeout=10):
        """SIGTERM, then SIGKILL if still running after timeout (nominal)
        seconds. Returns the exit code (-9 and self.killed when it had to
        be killed). A sanitizer report fails the test."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout * self.scale)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.popen.kill()
                self.popen.wait(30)
        self._finish()
        return self.popen.returncode

    def stop(self, timeout=10, expect_rc=0):
        """terminate() and fail unless the exit code is expect_rc."""
        rc = self.terminate(timeout)
        if rc != expect_rc:
            how = ' (had to be killed)' if self.killed else ''
            raise TestFailure(f'{self.name}: exit code {rc}{how}, '
                              f'expected {expect_rc}\n' + self._context())
        return rc


class Result:
    """Outcome of a command run to completion by Context.run()."""

    def __init__(self, args, rc, stdout, stderr):
        self.args, self.rc, self.stdout, self.stderr = args, rc, stdout, stderr

    def __repr__(self):
        return f'Result(rc={self.rc}, args={self.args!r})'


# --------------------------------------------------------------------------
# Per-test context

class Context:
    """What a test function receives. See the module docstring."""

    def __init__(self, build, tmp, cert_dir=None, src=SRC):
        self.build = Path(build).resolve()
        self.src = Path(src).resolve()
        self.tmp = Path(tmp).resolve()
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.sanitized = build_is_sanitized(self.build)
        self.scale = timeout_scale(self.build)
        self.certs = CertStore(cert_dir or self.tmp / 'certs')
        self.processes = []
        self._names = {}

    # binaries ------------------------------------------------------------

    def binary(self, rel):
        path = self.build / rel
        if not os.access(path, os.X_OK):
            raise TestFailure(f'{path} is not built')
        return path

    @property
    def gateway_bin(self):
        return self.binary('gateway/dotsgw')

    @property
    def server_bin(self):
        return self.binary('test/peers/dots-test-server')

    @property
    def client_bin(self):
        return self.binary('test/peers/dots-test-client')

    # small helpers -----------------------------------------------------------

    def path(self, name):
        """A path inside the test's temp dir."""
        return self.tmp / name

    def free_port(self, host='127.0.0.1'):
        return free_port(host)

    def cert(self, cn, san=None, ca='ca', name=None):
        return self.certs.cert(cn, san=san, ca=ca, name=name)

    def ca(self, name='ca'):
        return self.certs.ca(name)

    def write_config(self, cfg, name='dotsgw.conf'):
        """Writes cfg as ctx.tmp/name; returns (path, line map)."""
        path = self.path(name)
        return path, write_gateway_config(path, cfg)

    def env(self, extra=None):
        env = dict(os.environ)
        if self.sanitized:
            env.setdefault('ASAN_OPTIONS', 'detect_leaks=1:abort_on_error=1')
            env.setdefault('UBSAN_OPTIONS',
                           'print_stacktrace=1:halt_on_error=1')
        if extra:
            env.update({k: str(v) for k, v in extra.items()})
        return env

    def _unique(self, name):
        n = self._names.get(name, 0)
        self._names[name] = n + 1
        return name if n == 0 else f'{name}-{n}'

    # processes ---------------------------------------------------------------

    def spawn(self, name, args, env=None, stdin=True, cwd=None, netns=None):
        """Starts a process (registered: stopped and checked at the end),
        in the named network namespace if netns is given (``ip netns exec``
        execs the command: pid, signals and exit code stay its own)."""
        if netns:
            args = ['ip', 'netns', 'exec', netns, *args]
        proc = Process(self._unique(name), args, self.tmp, env=self.env(env),
                       cwd=cwd or self.tmp, stdin=stdin, scale=self.scale)
        self.processes.append(proc)
        return proc

    def run(self, args, timeout=30, env=None, stdin=None, name=None):
        """Runs a command to completion (at most timeout nominal seconds);
        returns a Result. Its stderr is kept as NAME.stderr.log and a
        sanitizer report in it fails the test."""
        args = [str(a) for a in args]
        name = self._unique(name or Path(args[0]).name)
        limit = timeout * self.scale
        try:
            r = subprocess.run(args, cwd=self.tmp, env=self.env(env),
                               input=stdin, capture_output=True, text=True,
                               errors='replace', timeout=limit)
        except subprocess.TimeoutExpired as e:
            raise TestFailure(f'{name}: still running after {limit:g} s: '
                              f'{args}\n{e.stderr or ""}')
        (self.tmp / f'{name}.stdout.log').write_text(r.stdout)
        (self.tmp / f'{name}.stderr.log').write_text(r.stderr)
        report = sanitizer_report(r.stderr)
        if report:
            raise TestFailure(f'{name}: sanitizer report (exit '
                              f'{r.returncode}):\n{report}')
        return Result(args, r.returncode, r.stdout, r.stderr)

    def check_config(self, path, timeout=30):
        """Runs ``dotsgw --check-config path``; returns a Result."""
        return self.run([self.gateway_bin, '--check-config', path],
                        timeout=timeout, name='dotsgw-check')

    def start_gateway(self, config, args=(), ready=True, timeout=10,
                      name='dotsgw', env=None, netns=None):
        """Starts ``dotsgw -c config`` (in network namespace netns if
        given) and, unless ready is False, waits for its "ready" log
        line."""
        cmd = [self.gateway_bin, '-c', config, *args]
        if valgrind_enabled():
            cmd = VALGRIND + cmd
        proc = self.spawn(name, cmd, env=env, netns=netns)
        if ready:
            proc.wait_log(re.compile(r'\bready\b'), timeout)
        return proc

    @staticmethod
    def _cred_args(psk, cert):
        args = []
        if psk is not None:
            psk_id, psk_key = psk
            args += ['--psk-id', psk_id, '--psk-key', psk_key]
        if cert is not None:
            args += ['--cert', cert.cert, '--key', cert.key, '--ca', cert.ca]
        return args

    def start_test_server(self, transport='dtls', port=None,
                          host='127.0.0.1', psk=None, cert=None, args=(),
                          name='server', timeout=10, env=None, netns=None):
        """Starts dots-test-server on host:port (port: a free one when
        None; give it with netns, a network namespace to run in) and
        waits for its "listening" event; proc.port is the port it
        reports."""
        if port is None:
            port = self.free_port(host)
        proc = self.spawn(name, [self.server_bin,
                                 '--listen', host_port(host, port),
                                 '--transport', transport,
                                 *self._cred_args(psk, cert), *args], env=env,
                          netns=netns)
        ev = proc.expect({'event': 'listening'}, timeout)
        proc.port = ev.get('port', port)
        return proc

    def start_test_client(self, connect, transport='dtls', script=(),
                          psk=None, cert=None, args=(), name='client',
                          env=None, netns=None):
        """Starts dots-test-client against connect (a port on 127.0.0.1,
        (host, port) or 'HOST:PORT') running script (a list of steps,
        written as JSON, or the path of a script file), in network
        namespace netns if given."""
        if isinstance(connect, int):
            connect = host_port('127.0.0.1', connect)
        elif isinstance(connect, tuple):
            connect = host_port(*connect)
        if isinstance(script, (str, Path)):
            script_path = Path(script)
        else:
            name = self._unique(name)
            script_path = self.path(f'{name}.script.json')
            script_path.write_text(json.dumps(list(script), indent=1))
        return self.spawn(name, [self.client_bin, '--connect', connect,
                                 '--transport', transport,
                                 *self._cred_args(psk, cert),
                                 '--script', script_path, *args], env=env,
                          netns=netns)

    def close(self):
        """Stops every process still running and returns the problems
        found (sanitizer reports), one string each. Called by run.py."""
        problems = []
        for proc in self.processes:
            try:
                proc.terminate(5)
            except TestFailure as e:
                problems.append(str(e))
        return problems

"""The control socket and dotsctl (issue 5, part 1): a running gateway with
a DTLS client and an upstream test server; every command in table and
--json form, checked for content; log-level changing what the log shows;
hostile control clients (garbage, an oversized line, too many connections,
one that never reads) leaving the relay undisturbed; the socket file's
mode, a stale file replaced, a live one refused."""

import json
import os
import re
import socket
import stat
import time
import weakref

from harness import TestFailure
from topo import MITIGATE, Topology, entries, scope_body

TIMEOUT = 120

CUID = 'cuid-ctl-alice'
MITIGATED = 'attack-successfully-mitigated'


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


class CtlCtx:
    """ctx, except that every gateway configuration gets a control group
    with its socket in the test's temp dir."""

    def __init__(self, ctx, mode='0600'):
        self._ctx = ctx
        self.sock = str(ctx.path('ctl.sock'))
        # sun_path holds 107 bytes and a NUL.
        check(len(self.sock) < 100, f'temp path too long: {self.sock}')
        self.mode = mode

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def write_config(self, cfg, name='dotsgw.conf'):
        cfg = dict(cfg)
        cfg['control'] = {'socket': self.sock, 'mode': self.mode}
        return self._ctx.write_config(cfg, name)


def dotsctl(ctx, sock, *args, rc=0):
    """Runs dotsctl -s sock args; checks its exit code; returns the
    Result."""
    r = ctx.run([ctx.binary('gateway/dotsctl'), '-s', sock, *args],
                timeout=15, name='dotsctl')
    if rc is not None and r.rc != rc:
        raise TestFailure(f'dotsctl {" ".join(args)}: exit {r.rc}, want {rc}'
                          f'\nstdout: {r.stdout}\nstderr: {r.stderr}')
    return r


def dotsctl_json(ctx, sock, *args):
    r = dotsctl(ctx, sock, '--json', *args)
    lines = r.stdout.splitlines()
    check(len(lines) == 1, f'--json printed {len(lines)} lines: {r.stdout}')
    ans = json.loads(lines[0])
    check(ans.get('ok') is True, f'answer {ans}')
    return ans


def table(text):
    """Rows of a dotsctl table as dicts by header, and the raw lines."""
    lines = text.rstrip('\n').split('\n')
    head = lines[0]
    starts = [m.start() for m in re.finditer(r'\S+', head)]
    names = head.split()
    rows = []
    for line in lines[1:]:
        row = {}
        for i, name in enumerate(names):
            end = starts[i + 1] if i + 1 < len(starts) else len(line)
            row[name] = line[starts[i]:end].strip()
        rows.append(row)
    return rows, lines


def same_second(a, b):
    """Two 'established' times of one session from two calls: each call
    derives the wall time from the monotonic clock at second precision, so
    they may differ by one second."""
    from datetime import datetime
    fmt = '%Y-%m-%dT%H:%M:%SZ'
    try:
        return abs((datetime.strptime(a, fmt) -
                    datetime.strptime(b, fmt)).total_seconds()) <= 1
    except (TypeError, ValueError):
        return False


def kv_block(text):
    """A dotsctl key/value listing as a dict."""
    out = {}
    for line in text.splitlines():
        if line.strip():
            k, _, v = line.partition(' ')
            out[k] = v.strip()
    return out


def mitigated_client(topo, name='alice', mid=7, cuid=CUID,
                     prefix='203.0.113.0/28'):
    """A client that installs mid, observes it until mitigated, then keeps
    its session open (the test stops it)."""
    path = f'{MITIGATE}/cuid={cuid}/mid={mid}'
    client = topo.client([
        {'method': 'PUT', 'path': path, 'body': scope_body(prefix)},
        {'method': 'GET', 'path': path, 'observe': 0,
         'until': {'status': MITIGATED}},
        # Two more notifications: bytes-dropped has grown by then.
        {'method': 'GET', 'path': path, 'observe': 0, 'wait_notifications': 2},
        {'sleep_ms': 600000},
    ], name=name, args=('--timeout-ms', '600000'))
    created = client.expect({'event': 'response', 'step': 0}, 15)
    check(created['code'] == '2.01', f'PUT answered {created}')
    ev = client.expect({'event': 'response', 'step': 1}, 10)
    while not entries(ev) or entries(ev)[0].get('status') != MITIGATED:
        ev = client.expect({'event': 'notification', 'step': 1}, 10)
    for _ in range(2):
        ev = client.expect({'event': 'notification', 'step': 2}, 10)
    check(int(entries(ev)[0].get('bytes-dropped', 0)) > 0,
          f'bytes-dropped not growing: {ev}')
    return client


def test_ctl_commands(ctx):
    cctx = CtlCtx(ctx)
    topo = Topology(cctx)
    sock = cctx.sock
    gw = topo.gateway
    gw.wait_log(f'control socket {sock} mode 0600')
    st = os.stat(sock)
    check(stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600,
          f'socket mode {oct(st.st_mode)}')

    # Nothing yet.
    ans = dotsctl_json(ctx, sock, 'status')
    check(ans['sessions'] == {'downstream': 0, 'upstream': 0,
                              'upstream-ready': 0} and
          ans['mitigations'] == 0 and ans['id'] == 'gw-test' and
          ans['mode'] == 'map' and ans['clients'] == 2 and
          ans['upstreams'] == 1 and re.match(r'\d+\.\d+\.\d+$', ans['version']),
          f'status at start {ans}')

    client = mitigated_client(topo)

    # status
    ans = dotsctl_json(ctx, sock, 'status')
    check(ans['sessions'] == {'downstream': 1, 'upstream': 1,
                              'upstream-ready': 1},
          f'sessions {ans["sessions"]}')
    check(ans['mitigations'] == 1 and ans['observers'] == 2 and
          ans['log-level'] == 'debug', f'status {ans}')
    kv = kv_block(dotsctl(ctx, sock, 'status').stdout)
    check(kv.get('sessions') == '1 downstream, 1 upstream (1 ready)' and
          kv.get('mitigations') == '1' and kv.get('id') == 'gw-test' and
          kv.get('mode') == 'map', f'status table {kv}')

    # sessions
    ans = dotsctl_json(ctx, sock, 'sessions')
    sess = ans['sessions']
    check([s['side'] for s in sess] == ['downstream', 'upstream'],
          f'sessions {sess}')
    dn, up = sess
    check(dn['client'] == 'alice' and dn['transport'] == 'dtls' and
          dn['state'] == 'established' and
          dn['peer'].startswith('127.0.0.1:') and
          'DTLS1.2' in (dn['cipher'] or '') and dn['observers'] == 2 and
          dn['heartbeats-missed'] == 0 and
          re.match(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$', dn['established']),
          f'downstream session {dn}')
    check(up['upstream'] == 'provider' and up['client'] == 'alice' and
          up['state'] == 'ready' and
          up['peer'] == f'127.0.0.1:{topo.server.port}' and
          'DTLS1.2' in (up['cipher'] or '') and up['established'],
          f'upstream session {up}')
    rows, lines = table(dotsctl(ctx, sock, 'sessions').stdout)
    check(lines[0].split() == ['SIDE', 'ID', 'PEER', 'IDENTITY', 'TRANSPORT',
                               'CIPHER', 'STATE', 'HB-MISSED', 'ESTABLISHED'],
          f'sessions header {lines[0]!r}')
    check(len(rows) == 2 and rows[0]['SIDE'] == 'downstream' and
          rows[0]['IDENTITY'] == 'alice' and rows[0]['PEER'] == dn['peer'] and
          rows[0]['CIPHER'] == dn['cipher'] and
          same_second(rows[0]['ESTABLISHED'], dn['established']) and
          rows[1]['IDENTITY'] == 'provider (for alice)' and
          rows[1]['STATE'] == 'ready' and rows[1]['HB-MISSED'].endswith('/3'),
          f'sessions table {lines}')
    ans = dotsctl_json(ctx, sock, 'sessions', 'upstream')
    check([s['side'] for s in ans['sessions']] == ['upstream'],
          f'upstream only {ans}')
    rows, _ = table(dotsctl(ctx, sock, 'sessions', 'downstream').stdout)
    check([r['SIDE'] for r in rows] == ['downstream'], f'downstream only {rows}')

    # mitigations: the client's mid, its status, the upstream mapping.
    ans = dotsctl_json(ctx, sock, 'mitigations')
    check(len(ans['mitigations']) == 1, f'mitigations {ans}')
    m = ans['mitigations'][0]
    check(m['client'] == 'alice' and m['cuid'] == CUID and m['mid'] == 7 and
          m['upstream'] == 'provider' and m['upstream-session'] == up['id'] and
          m['upstream-cuid'] == CUID and m['upstream-mid'] == 7 and
          m['status'] == MITIGATED and 0 < m['lifetime'] <= 3600 and
          m['observed'] is True and
          int(m['metrics'].get('bytes-dropped', 0)) > 0 and
          m['scope'].get('target-prefix') == ['203.0.113.0/28'],
          f'mitigation {m}')
    rows, lines = table(dotsctl(ctx, sock, 'mitigations').stdout)
    check(len(rows) == 1 and rows[0]['CLIENT'] == 'alice' and
          rows[0]['CUID'] == CUID and rows[0]['MID'] == '7' and
          rows[0]['UPSTREAM'] == 'provider' and
          rows[0]['SESSION'] == str(up['id']) and rows[0]['UP-MID'] == '7' and
          rows[0]['STATUS'] == MITIGATED and
          int(rows[0]['BYTES-DROPPED']) > 0, f'mitigations table {lines}')
    rows, _ = table(dotsctl(ctx, sock, 'mitigations', '--client', 'bob').stdout)
    check(rows == [], f'bob has no mitigation: {rows}')
    r = dotsctl(ctx, sock, 'mitigations', '--client', 'carol', rc=1)
    check('no client named "carol"' in r.stderr, f'carol: {r.stderr}')

    # mitigation show
    kv = kv_block(dotsctl(ctx, sock, 'mitigation', 'show', 'alice', '7').stdout)
    check(kv.get('cuid') == CUID and kv.get('mid') == '7' and
          kv.get('status') == MITIGATED and
          kv.get('upstream-session') == str(up['id']) and
          kv.get('target-prefix') == '["203.0.113.0/28"]' and
          int(kv.get('bytes-dropped', '0')) > 0, f'show {kv}')
    ans = dotsctl_json(ctx, sock, 'mitigation', 'show', 'alice', '7')
    check([x['mid'] for x in ans['mitigations']] == [7], f'show --json {ans}')
    r = dotsctl(ctx, sock, 'mitigation', 'show', 'alice', '8', rc=1)
    check('no mitigation with mid 8' in r.stderr, f'show 8: {r.stderr}')
    r = dotsctl(ctx, sock, '--json', 'mitigation', 'show', 'alice', '8', rc=1)
    check(json.loads(r.stdout) == {
        'ok': False, 'error': 'client alice has no mitigation with mid 8'},
        f'show 8 --json: {r.stdout}')

    # An operator's request, as the gateway's own (RFC 8811 §3.3.1): it
    # reaches the upstream under the gateway's cuid and shows up.
    r = dotsctl(ctx, sock, 'request', '--lifetime', '600', '--port', '443',
                '--protocol', '6', '203.0.113.64/28')
    m = re.match(r'requested mid (\d+) \(cuid (\S+)\) on upstream provider$',
                 r.stdout.strip())
    check(m, f'request: {r.stdout}')
    own_mid, own_cuid = int(m.group(1)), m.group(2)
    ev = topo.server.expect(lambda e: e.get('event') == 'request' and
                            e.get('method') == 'PUT' and
                            f'cuid={own_cuid}/mid={own_mid}' in e.get('path', ''), 10)
    sc = entries({'body': ev.get('body')})[0]
    check(sc.get('target-prefix') == ['203.0.113.64/28'] and
          sc.get('target-protocol') == [6] and sc.get('lifetime') == 600 and
          sc.get('target-port-range') == [{'lower-port': 443}],
          f'the request sent upstream: {ev}')
    gw.wait_log(f'client=gateway:provider cuid={own_cuid} mid={own_mid} '
                'mitigation active', 10)
    ans = dotsctl_json(ctx, sock, 'mitigations', '--client', 'gateway:provider')
    check([x.get('mid') for x in ans.get('mitigations', [])] == [own_mid],
          f'own mitigation not listed: {ans}')
    r = dotsctl(ctx, sock, '--json', 'request', '--file', str(ctx.path('nope.json')),
                rc=2)
    bad = ctx.path('bad.json')
    bad.write_text(json.dumps({'ietf-dots-signal-channel:mitigation-scope': {
        'scope': [{'target-prefix': ['203.0.113.0/28']}]}}))
    r = dotsctl(ctx, sock, 'request', '--file', str(bad), rc=1)
    check('4.00' in r.stderr and 'lifetime' in r.stderr, f'no lifetime: {r.stderr}')
    r = dotsctl(ctx, sock, 'request', '--upstream', 'nobody', '203.0.113.0/28', rc=1)
    check('4.04' in r.stderr, f'unknown upstream: {r.stderr}')
    r = dotsctl(ctx, sock, 'withdraw', str(own_mid))
    check(r.stdout.strip() == f'withdrawal of mid {own_mid} sent', f'withdraw: {r.stdout}')
    topo.server.expect(lambda e: e.get('event') == 'request' and
                       e.get('method') == 'DELETE' and
                       f'cuid={own_cuid}/mid={own_mid}' in e.get('path', ''), 10)
    gw.wait_log(f'client=gateway:provider cuid={own_cuid} mid={own_mid} '
                'withdrawn', 10)
    ans = dotsctl_json(ctx, sock, 'mitigations', '--client', 'gateway:provider')
    check(ans.get('mitigations') == [], f'own mitigation still listed: {ans}')
    r = dotsctl(ctx, sock, 'withdraw', str(own_mid), rc=1)
    check('4.04' in r.stderr, f'withdraw twice: {r.stderr}')
    # No server.drain configured: drain refused, nothing changed.
    r = dotsctl(ctx, sock, 'drain', rc=1)
    check('no server.drain alternate' in r.stderr, f'drain: {r.stderr}')

    # reload: what SIGHUP does.
    mark = gw.log_mark()
    r = dotsctl(ctx, sock, 'reload')
    check(r.stdout.strip() == 'done', f'reload: {r.stdout}')
    gw.wait_log('reloaded', since=mark)

    # Usage errors and no gateway: exit 2.
    dotsctl(ctx, sock, 'frobnicate', rc=2)
    dotsctl(ctx, sock, 'sessions', 'sideways', rc=2)
    dotsctl(ctx, sock, 'mitigation', 'show', 'alice', 'x7', rc=2)
    dotsctl(ctx, str(ctx.path('nothing.sock')), 'status', rc=2)

    # The relay was not disturbed: the client's session is still there.
    check(client.returncode is None, 'client exited')
    ans = dotsctl_json(ctx, sock, 'status')
    check(ans['sessions']['downstream'] == 1 and ans['mitigations'] == 1,
          f'status at end {ans}')
    gw.stop()
    check(not os.path.exists(sock), 'socket file left after stop')


def test_ctl_log_level(ctx):
    cctx = CtlCtx(ctx)
    topo = Topology(cctx, log_level='info')
    sock, gw = cctx.sock, topo.gateway
    path = f'{MITIGATE}/cuid={CUID}/mid=1'

    # At info: session changes are logged, per-message detail is not.
    mark = gw.log_mark()
    c = topo.client([{'method': 'PUT', 'path': path, 'body': scope_body()}])
    c.expect({'event': 'response', 'step': 0}, 15)
    gw.wait_log(re.compile(r'level=info group=dn .*session up'), since=mark)
    check(c.wait(15) == 0, 'client 1 failed')
    gw.wait_log(re.compile(r'level=info group=dn .*session down'), since=mark)
    check(not any('level=debug' in l for l in gw.stderr_lines[mark:]),
          'debug lines at info level')

    r = dotsctl(ctx, sock, 'log-level', 'debug')
    check(r.stdout.strip() == 'log level debug (was info)', f'{r.stdout!r}')
    check(dotsctl_json(ctx, sock, 'status')['log-level'] == 'debug',
          'status does not show debug')
    mark = gw.log_mark()
    c = topo.client([{'method': 'GET', 'path': f'{MITIGATE}/cuid={CUID}'}])
    c.expect({'event': 'response', 'step': 0}, 15)
    gw.wait_log('level=debug', since=mark)
    check(c.wait(15) == 0, 'client 2 failed')

    ans = dotsctl_json(ctx, sock, 'log-level', 'err')
    check(ans == {'ok': True, 'log-level': 'err', 'previous': 'debug'},
          f'log-level err {ans}')
    mark = gw.log_mark()
    c = topo.client([{'method': 'GET', 'path': f'{MITIGATE}/cuid={CUID}'}])
    c.expect({'event': 'response', 'step': 0}, 15)
    check(c.wait(15) == 0, 'client 3 failed')
    # The session went up and down and a request was relayed: nothing of it
    # is logged at err. A status round trip orders us after the session's
    # end in the gateway's loop.
    dotsctl_json(ctx, sock, 'status')
    noisy = [l for l in gw.stderr_lines[mark:]
             if 'level=info' in l or 'level=debug' in l]
    check(noisy == [], f'logged at err level: {noisy[:5]}')

    r = dotsctl(ctx, sock, 'log-level', 'loud', rc=1)
    check('unknown level "loud"' in r.stderr, r.stderr)
    dotsctl(ctx, sock, 'log-level', 'info')
    gw.wait_log('log level err -> info (control socket)')


def _connect(path, timeout=5):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


_pending = weakref.WeakKeyDictionary()


def _read_line(s, limit=1 << 20):
    """One answer line as JSON (bytes after it are kept for the next
    call); None on EOF before one."""
    buf = _pending.pop(s, b'')
    while b'\n' not in buf and len(buf) < limit:
        chunk = s.recv(65536)
        if not chunk:
            return None
        buf += chunk
    line, _, rest = buf.partition(b'\n')
    if rest:
        _pending[s] = rest
    return json.loads(line)


def _wait_eof(s, limit=1 << 20):
    """True once the gateway closed s (a reset too: it closes with our
    unread excess in its buffer)."""
    got = 0
    while got < limit:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return True
        if not chunk:
            return True
        got += len(chunk)
    return False


def _relay_works(topo, mid, who='bob', prefix='198.51.100.0/28'):
    """A fresh client's PUT gets 2.01 through the gateway."""
    c = topo.client([{'method': 'PUT', 'body': scope_body(prefix),
                      'path': f'{MITIGATE}/cuid=cuid-{who}/mid={mid}'}],
                    name=who)
    ev = c.expect({'event': 'response', 'step': 0}, 15)
    check(ev['code'] == '2.01', f'relay disturbed: {ev}')
    check(c.wait(15) == 0, 'client failed')


def test_ctl_hostile_clients(ctx):
    cctx = CtlCtx(ctx)
    topo = Topology(cctx, log_level='info')
    sock, gw = cctx.sock, topo.gateway
    alice = mitigated_client(topo)

    # Garbage, then a good request on the same connection.
    s = _connect(sock)
    s.sendall(b'\x00\xff garbage\n[1]\n{"cmd":"status","x":1}\n\n{"cmd":"status"}\n')
    answers = [_read_line(s) for _ in range(4)]
    check([a['ok'] for a in answers] == [False, False, False, True] and
          'not JSON' in answers[0]['error'] and
          answers[2]['error'] == 'status: unknown argument "x"' and
          answers[3]['sessions']['downstream'] == 1, f'answers {answers}')
    s.close()

    # An oversized line: an error, then the connection is closed.
    s = _connect(sock)
    s.sendall(b'{"cmd":"status","pad":"' + b'x' * 5000)
    ans = _read_line(s)
    check(ans == {'ok': False,
                  'error': 'request longer than 4096 bytes: closing'},
          f'oversized: {ans}')
    check(_wait_eof(s), 'oversized: connection not closed')
    s.close()
    gw.wait_log('control request longer than 4096 bytes')

    # Too many connections: 32 held, the next ones refused and closed.
    held = [_connect(sock) for _ in range(32)]
    extra = [_connect(sock) for _ in range(8)]
    for e in extra:
        check(_read_line(e) == {'ok': False,
                                'error': 'too many control connections'},
              'extra connection not refused')
        check(_wait_eof(e), 'extra connection not closed')
        e.close()
    # The held ones still work, each of them.
    for h in held:
        h.sendall(b'{"cmd":"status"}\n')
    for h in held:
        check(_read_line(h)['ok'] is True, 'held connection does not answer')
    _relay_works(topo, 1)
    for h in held:
        h.close()

    # A client that never reads: it stops being read, nobody else waits.
    greedy = _connect(sock)
    greedy.setblocking(False)
    req = b'{"cmd":"sessions"}\n' * 64
    sent, blocked = 0, False
    deadline = time.monotonic() + 20 * ctx.scale
    while sent < 50_000_000 and time.monotonic() < deadline:
        try:
            sent += greedy.send(req)
        except BlockingIOError:
            blocked = True
            break
    check(blocked, f'the gateway kept reading a client that never reads '
                   f'({sent} bytes sent)')
    # Meanwhile: other control clients are answered (a few tries, each
    # awaiting the answer: the closed connections above may not all have
    # been seen as closed yet) and the relay goes on.
    for _ in range(50):
        r = dotsctl(ctx, sock, '--json', 'status', rc=None)
        if r.rc == 0:
            break
    check(r.rc == 0 and json.loads(r.stdout)['sessions']['downstream'] >= 1,
          f'status while a client does not read: {r.rc} {r.stdout} {r.stderr}')
    _relay_works(topo, 2)
    # Its answers are still queued: closing makes the gateway's writes
    # fail (EPIPE), which must end that connection only.
    greedy.close()
    s = _connect(sock)
    s.sendall(b'{"cmd":"status"}\n')
    check(_read_line(s)['ok'] is True, 'no status after the greedy client')
    s.close()
    check(gw.returncode is None, f'gateway exited ({gw.returncode})')

    # alice's session and mitigation went through all of it.
    check(alice.returncode is None, 'alice exited')
    ans = dotsctl_json(ctx, sock, 'mitigations', '--client', 'alice')
    check([m['mid'] for m in ans['mitigations']] == [7] and
          ans['mitigations'][0]['status'] == MITIGATED, f'alice {ans}')
    rss = _rss_kb(gw.pid)
    check(rss < 200_000, f'gateway RSS {rss} kB after hostile clients')
    gw.stop()


def _rss_kb(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def test_ctl_socket_file(ctx):
    cctx = CtlCtx(ctx, mode='0660')
    sock = cctx.sock
    # A stale socket (its owner died without removing it) is replaced.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock)
    s.close()
    topo = Topology(cctx)
    topo.gateway.wait_log('removed a stale socket')
    check(stat.S_IMODE(os.stat(sock).st_mode) == 0o660, 'mode not 0660')
    dotsctl_json(ctx, sock, 'status')

    # A second gateway with the same control socket refuses to start (the
    # path was configured, so it is required) and leaves the first alone.
    cfg = dict(topo.config)
    cfg['server'] = dict(cfg['server'])
    port = ctx.free_port()
    cfg['server']['listen'] = ({'transport': 'dtls', 'address': '127.0.0.1',
                                'port': port},)
    path, _ = cctx.write_config(cfg, name='second.conf')
    second = ctx.start_gateway(path, ready=False, name='dotsgw-second')
    check(second.wait(15) == 1, 'second gateway did not exit 1')
    check(any('another process answers on it' in l
              for l in second.stderr_lines), 'no reason logged')
    dotsctl_json(ctx, sock, 'status')

    # Something that is not a socket is never removed.
    topo.gateway.stop()
    with open(sock, 'w') as f:
        f.write('precious')
    third = ctx.start_gateway(topo.config_path, ready=False, name='dotsgw-third')
    check(third.wait(15) == 1, 'third gateway did not exit 1')
    check(open(sock).read() == 'precious', 'a regular file was replaced')


def test_ctl_tls_sessions(ctx):
    """TLS on both sides, X.509: the cipher suite is known there too."""
    cctx = CtlCtx(ctx)
    topo = Topology(cctx, dn='tls', up='tls', cred='x509')
    mitigated_client(topo)
    sess = dotsctl_json(ctx, cctx.sock, 'sessions')['sessions']
    check([(s['side'], s['transport']) for s in sess] ==
          [('downstream', 'tls'), ('upstream', 'tls')], f'sessions {sess}')
    for s in sess:
        check(re.match(r'\(TLS1\.[23]', s['cipher'] or ''),
              f'cipher {s["cipher"]!r}')
    check(sess[0]['client'] == 'alice', f'x509 client {sess[0]}')

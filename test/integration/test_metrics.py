"""Prometheus endpoint (issue 5): promtool accepts the exposition; a
mitigation PUT and GETs move the counters by exactly what they should;
wrong paths and methods get 404/405; hostile HTTP clients (garbage, huge
headers, a slow loris holding many connections) do not disturb the relay
and are bounded by the documented limits (gateway/io_metrics.h)."""

import re
import shutil
import socket
import time

from harness import Skip, TestFailure
from topo import MITIGATE, Topology, entries, scope_body

TIMEOUT = 150

CUID = 'cuid-alice-metrics'
CONN_MAX = 16          # IO_METRICS_CONN_MAX
REQUEST_MS = 5000      # IO_METRICS_REQUEST_MS
HEADER_MAX = 8192      # IO_METRICS_HEADER_MAX
NOTIFY_MS = 4000       # test server: +1000 pkts / +100000 bytes per interval


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


# --------------------------------------------------------------------------
# HTTP and exposition-format helpers (raw sockets: the hostile cases need
# bytes no HTTP library would send)

def http(port, request, timeout=10.0):
    """Sends request (bytes) to 127.0.0.1:port, reads until the server
    closes; returns (status, headers dict, body bytes)."""
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as s:
        s.sendall(request)
        data = b''
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    m = re.match(r'HTTP/1\.1 (\d{3}) ', lines[0])
    check(m, f'not an HTTP response: {data[:200]!r}')
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(':')
        headers[k.strip().lower()] = v.strip()
    return int(m.group(1)), headers, body


def get(port, path='/metrics', method='GET'):
    return http(port, f'{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                      'Accept: text/plain\r\n\r\n'.encode())


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse(text):
    """{(name, ((label, value), ...sorted)): float} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = _SAMPLE.match(line)
        check(m, f'unparsable sample line {line!r}')
        labels = []
        if m.group(2):
            pos = 0
            for lm in _LABEL.finditer(m.group(2)):
                check(lm.start() == pos, f'bad labels in {line!r}')
                pos = lm.end()
                value = re.sub(r'\\(.)', lambda x: {'n': '\n'}.get(
                    x.group(1), x.group(1)), lm.group(2))
                labels.append((lm.group(1), value))
            check(pos == len(m.group(2)), f'bad labels in {line!r}')
        out[(m.group(1), tuple(sorted(labels)))] = float(m.group(3))
    return out


def val(samples, name, **labels):
    """A sample's value; 0 when absent (counters not yet incremented)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(port):
    status, headers, body = get(port)
    check(status == 200, f'scrape answered {status}: {body[:200]!r}')
    check(headers.get('content-type', '').startswith('text/plain; version=0.0.4'),
          f'content type {headers}')
    check(int(headers.get('content-length', -1)) == len(body),
          f'content-length {headers} for {len(body)} bytes')
    return body.decode(), parse(body.decode())


def promtool_check(ctx, text):
    tool = shutil.which('promtool')
    if not tool:
        raise Skip('promtool not installed (Debian package prometheus; '
                   'scripts/setup installs it)')
    r = ctx.run([tool, 'check', 'metrics'], stdin=text, name='promtool')
    check(r.rc == 0, f'promtool check metrics failed:\n{r.stdout}{r.stderr}')


def topology_with_metrics(ctx, server_args=None):
    """Topology (topo.py) whose config also enables the endpoint on a free
    loopback port. Returns (topo, port)."""
    port = ctx.free_port()
    write = ctx.write_config

    def with_metrics(cfg, name='dotsgw.conf'):
        cfg = dict(cfg)
        cfg['metrics'] = {'enabled': True, 'address': '127.0.0.1',
                          'port': port, 'path': '/metrics'}
        return write(cfg, name)
    ctx.write_config = with_metrics
    kwargs = {'server_args': server_args} if server_args else {}
    topo = Topology(ctx, **kwargs)
    topo.gateway.wait_log(f'metrics on http://127.0.0.1:{port}/metrics', 5)
    return topo, port


# --------------------------------------------------------------------------

def test_scrape_counts_and_errors(ctx):
    topo, port = topology_with_metrics(
        ctx, server_args=('--status-delay-ms', '300',
                          '--notify-interval-ms', str(NOTIFY_MS)))
    text, before = scrape(port)
    promtool_check(ctx, text)
    check(val(before, 'dotsgw_upstream_up', upstream='provider') == 0,
          'upstream up before any client')
    check(val(before, 'dotsgw_build_info', version='0.1.0') == 1, 'build info')
    check(('dotsgw_sessions', (('side', 'downstream'), ('state', 'established'),
                               ('transport', 'dtls'))) in before,
          'sessions gauge not initialised at 0')

    path = f'{MITIGATE}/cuid={CUID}/mid=7'
    client = topo.client([
        {'method': 'PUT', 'path': path, 'body': scope_body()},
        {'method': 'GET', 'path': path, 'observe': 0,
         'until': {'status': 'attack-successfully-mitigated',
                   'bytes-dropped': '100000'}},
        {'method': 'GET', 'path': path},
        {'sleep_ms': 60000},   # stays connected while we scrape
    ], args=('--timeout-ms', '20000'))
    created = client.expect({'event': 'response', 'step': 0}, 15)
    check(created['code'] == '2.01', f'PUT answered {created}')
    client.expect({'event': 'response', 'step': 1}, 10)
    seen = None
    while seen is None:
        n = client.expect(lambda e: e.get('event') == 'notification' and
                          e.get('step') == 1, 20)
        e = entries(n)[0]
        if e.get('bytes-dropped') == '100000':
            seen = e
    plain = client.expect({'event': 'response', 'step': 2}, 10)
    check(plain['code'] == '2.05', f'GET answered {plain}')

    # Well within one notification interval of the status the client saw.
    text, after = scrape(port)
    promtool_check(ctx, text)

    def delta(name, **labels):
        return val(after, name, **labels) - val(before, name, **labels)

    dn = dict(side='downstream', resource='mitigate')
    up = dict(side='upstream', resource='mitigate')
    got = {
        'dn PUT 2.01': delta('dotsgw_requests_total', method='PUT', code='2.01', **dn),
        'dn GET 2.05': delta('dotsgw_requests_total', method='GET', code='2.05', **dn),
        'up PUT 2.01': delta('dotsgw_requests_total', method='PUT', code='2.01', **up),
        'up GET 2.05': delta('dotsgw_requests_total', method='GET', code='2.05', **up),
        'up config PUT 2.01': delta('dotsgw_requests_total', side='upstream',
                                    resource='config', method='PUT', code='2.01'),
        'relayed': delta('dotsgw_relay_latency_seconds_count'),
    }
    want = {'dn PUT 2.01': 1, 'dn GET 2.05': 2, 'up PUT 2.01': 1,
            'up GET 2.05': 1, 'up config PUT 2.01': 1, 'relayed': 1}
    check(got == want, f'counter deltas {got}, want {want}')
    lat_sum = val(after, 'dotsgw_relay_latency_seconds_sum')
    check(0 < lat_sum < 10, f'relay latency sum {lat_sum}')
    check(val(after, 'dotsgw_relay_latency_seconds_bucket', le='10') == 1 and
          val(after, 'dotsgw_relay_latency_seconds_bucket', le='+Inf') == 1,
          'latency buckets')
    check(delta('dotsgw_notifications_total', side='downstream') >= 2 and
          delta('dotsgw_notifications_total', side='upstream') >= 2,
          'notifications not counted')
    check(val(after, 'dotsgw_sessions', side='downstream', transport='dtls',
              state='established') == 1, 'downstream session gauge')
    check(val(after, 'dotsgw_sessions', side='upstream', transport='dtls',
              state='ready') == 1, 'upstream session gauge')
    check(val(after, 'dotsgw_upstream_up', upstream='provider') == 1,
          'upstream not up')
    check(val(after, 'dotsgw_mitigations', status='attack-successfully-mitigated') == 1
          and val(after, 'dotsgw_mitigations', status='pending') == 0,
          'mitigation status gauge')
    check(int(seen['pkts-dropped']) == 1000, f'server counters {seen}')
    dropped = {k: val(after, f'dotsgw_mitigation_dropped_{k}', upstream='provider')
               for k in ('bytes', 'packets', 'bytes_per_second',
                         'packets_per_second')}
    want = {'bytes': 100000, 'packets': 1000,
            'bytes_per_second': int(seen['bps-dropped']),
            'packets_per_second': int(seen['pps-dropped'])}
    check(dropped == want, f'dropped gauges {dropped}, want {want}')

    # 404, 405 (with Allow), HEAD, each counted exactly once.
    status, _, _ = get(port, '/nope')
    check(status == 404, f'/nope answered {status}')
    status, _, _ = get(port, '/metrics/', 'GET')
    check(status == 404, f'/metrics/ answered {status}')
    status, headers, _ = get(port, '/metrics', 'POST')
    check(status == 405 and headers.get('allow') == 'GET, HEAD',
          f'POST answered {status} {headers}')
    status, headers, body = get(port, '/metrics', 'HEAD')
    check(status == 200 and body == b'' and
          int(headers.get('content-length', 0)) > 1000,
          f'HEAD answered {status} {headers} {body[:50]!r}')
    status, _, body = get(port, '/metrics?x=1')
    check(status == 200 and b'dotsgw_requests_total' in body, 'query refused')
    _, final = scrape(port)
    codes = {c: val(final, 'dotsgw_metrics_http_responses_total', code=c) -
             val(after, 'dotsgw_metrics_http_responses_total', code=c)
             for c in ('200', '404', '405')}
    # 200: the HEAD, the query and the scrape of `after` itself
    check(codes == {'200': 3, '404': 2, '405': 1}, f'HTTP answers {codes}')
    client.terminate()
    topo.gateway.stop()


def _slow_loris(port, n):
    """n connections, each with a request line and a partial header."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(('127.0.0.1', port), timeout=5)
        s.sendall(b'GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: a')
        socks.append(s)
    return socks


def _closed_within(sock, seconds):
    """True when the server closed sock within seconds (answering at most
    a 503 first)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    data = b''
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def test_hostile_http_clients(ctx):
    topo, port = topology_with_metrics(ctx)
    _, base = scrape(port)

    # A slow loris: 40 connections that never finish their headers. 16
    # hold a slot until the request deadline; the others get 503 at once.
    t0 = time.monotonic()
    socks = _slow_loris(port, 40)
    try:
        # The relay is not disturbed meanwhile.
        path = f'{MITIGATE}/cuid={CUID}/mid=9'
        client = topo.client([
            {'method': 'PUT', 'path': path, 'body': scope_body()},
            {'method': 'GET', 'path': path},
        ])
        r = client.expect({'event': 'response', 'step': 0}, 10)
        check(r['code'] == '2.01', f'PUT during slow loris: {r}')
        r = client.expect({'event': 'response', 'step': 1}, 10)
        check(r['code'] == '2.05', f'GET during slow loris: {r}')
        check(client.wait(20) == 0, 'client failed during slow loris')
        relay_s = time.monotonic() - t0

        closed = [_closed_within(s, 3 * REQUEST_MS / 1000 * ctx.scale)
                  for s in socks]
        elapsed = time.monotonic() - t0
        check(all(c for c, _ in closed), 'a slow connection was never closed')
        busy = sum(1 for _, d in closed if d.startswith(b'HTTP/1.1 503'))
        check(busy == 40 - CONN_MAX, f'{busy} connections answered 503, '
              f'want {40 - CONN_MAX}')
        check(all(d == b'' for _, d in closed if not d.startswith(b'HTTP')),
              'a slow connection got an answer')
        check(elapsed >= REQUEST_MS / 1000 - 0.5,
              f'slow connections closed after {elapsed:.1f} s, before the deadline')
    finally:
        for s in socks:
            s.close()

    # Garbage, a huge header, an overlong target, a body-less flood: each
    # gets its error and the endpoint keeps serving.
    status, _, _ = http(port, b'\x16\x03\x01\x02\x00garbage\r\n\r\n')
    check(status == 400, f'garbage answered {status}')
    status, _, _ = http(port, b'GET /metrics HTTP/1.1\r\nX-Big: ' +
                        b'a' * (2 * HEADER_MAX) + b'\r\n\r\n')
    check(status == 431, f'huge header answered {status}')
    status, _, _ = http(port, b'GET /' + b'a' * 2000 + b' HTTP/1.1\r\n\r\n')
    check(status == 414, f'long target answered {status}')
    status, _, _ = http(port, b'GET /metrics HTTP/1.1\r\nContent-Length: 100000'
                        b'\r\n\r\n' + b'x' * 50000)
    check(status == 200, f'request with a body answered {status}')

    text, after = scrape(port)
    promtool_check(ctx, text)
    rejected = (val(after, 'dotsgw_metrics_http_rejected_connections_total') -
                val(base, 'dotsgw_metrics_http_rejected_connections_total'))
    check(rejected == 40 - CONN_MAX, f'{rejected} rejected connections counted')
    check(val(after, 'dotsgw_requests_total', side='downstream',
              resource='mitigate', method='PUT', code='2.01') == 1,
          'the relayed PUT was not counted')
    check(relay_s < 10 * ctx.scale, f'relay took {relay_s:.1f} s')
    topo.gateway.stop()


def test_handshake_failures_and_health(ctx):
    """Refused handshakes are counted by reason; an upstream that stops
    answering shows as down with its missed heartbeats counted."""
    topo, port = topology_with_metrics(ctx)
    _, base = scrape(port)
    # Wrong PSK identity (DTLS, TLS), right identity with a wrong key
    # (TLS: DTLS drops what it cannot decrypt, so that one only ends when
    # libcoap reaps the half-open session: reason timeout, minutes later).
    for name, psk, tr in (('mallory', ('mallory', 'x'), 'dtls'),
                          ('mallory-tls', ('mallory', 'x'), 'tls'),
                          ('badkey-tls', ('alice', 'wrong-key'), 'tls')):
        c = ctx.start_test_client(topo.dn_port, transport=tr, psk=psk, name=name,
                                  script=[{'method': 'GET', 'path': MITIGATE}],
                                  args=('--timeout-ms', '3000'))
        check(c.wait(20) != 0, f'{name} got through')
    _, after = scrape(port)

    def delta(**labels):
        return (val(after, 'dotsgw_handshake_failures_total', **labels) -
                val(base, 'dotsgw_handshake_failures_total', **labels))
    got = {r: delta(side='downstream', reason=r)
           for r in ('unknown_psk_identity', 'closed', 'dtls_error', 'timeout')}
    want = {'unknown_psk_identity': 2, 'closed': 1, 'dtls_error': 0, 'timeout': 0}
    check(got == want, f'handshake failures {got}, want {want}')

    # A mitigation keeps the upstream session; then the upstream goes
    # silent and its heartbeats stop being answered (3 allowed, topo.py).
    path = f'{MITIGATE}/cuid={CUID}/mid=3'
    client = topo.client([{'method': 'PUT', 'path': path, 'body': scope_body()}])
    check(client.expect({'event': 'response', 'step': 0}, 15)['code'] == '2.01',
          'PUT failed')
    _, up = scrape(port)
    check(val(up, 'dotsgw_upstream_up', upstream='provider') == 1, 'upstream not up')
    mark = topo.gateway.log_mark()
    topo.server.send('silent')
    topo.gateway.wait_log('session down (missing heartbeats)', 15, since=mark)
    _, down = scrape(port)
    missed = (val(down, 'dotsgw_upstream_heartbeats_missed_total', upstream='provider') -
              val(up, 'dotsgw_upstream_heartbeats_missed_total', upstream='provider'))
    check(missed >= 3, f'{missed} missed heartbeats counted')
    check(val(down, 'dotsgw_upstream_up', upstream='provider') == 0,
          'upstream still up after missing heartbeats')
    check(val(down, 'dotsgw_sessions', side='upstream', transport='dtls',
              state='ready') == 0, 'upstream session still ready')
    topo.gateway.stop()


def test_metrics_off_by_default(ctx):
    """Without a metrics group no endpoint starts."""
    topo = Topology(ctx)
    check(not any('metrics on http' in line
                  for line in topo.gateway.stderr_lines),
          'metrics endpoint started unasked')
    topo.gateway.stop()


def test_metrics_port_in_use(ctx):
    """A configured endpoint that cannot listen stops the start, cleanly
    (exit 1, the reason logged, no sanitizer report)."""
    port = ctx.free_port()
    cfg = {
        'gateway': {'log-level': 'info'},
        'server': {'listen': ({'transport': 'dtls', 'address': '127.0.0.1',
                               'port': ctx.free_port()},)},
        'clients': ({'name': 'alice', 'psk-identity': 'alice',
                     'psk-key': 'alice-key', 'upstream': 'provider'},),
        'upstreams': ({'name': 'provider', 'address': '127.0.0.1',
                       'port': ctx.free_port(), 'psk-identity': 'gw',
                       'psk-key': 'gw-key'},),
        'metrics': {'enabled': True, 'port': port},
    }
    path, _ = ctx.write_config(cfg)
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', port))
        busy.listen(1)
        gw = ctx.start_gateway(path, ready=False)
        rc = gw.wait(10)
    check(rc == 1, f'dotsgw exit code {rc} with the metrics port taken')
    check(any(f'cannot listen on 127.0.0.1 port {port} (metrics)' in line
              for line in gw.stderr_lines), 'no error naming the metrics port')

"""RFC 8973 discovery wired into dotsgw's client half: Knot DNS serves
Figure 8 adapted to loopback (data/discovery/wire.example.net.zone:
a.wire.example.net is a 127.0.0.x address where dots-test-server
instances listen), and dotsgw, configured with a discovery group instead
of an address, connects where the list says.

Skipped only when knotd is not installed. DHCP before DNS is checked
with a state file written as the DHCP hook would (no DHCP client: the
option parser refuses loopback addresses, so a reachable DHCP-discovered
server needs test_discovery_dhcp.py's network namespaces).
"""

import re
import signal

from harness import TestFailure
from test_discovery_dns import Knot, knotd_path
from topo import ALICE_PSK, GW_PSK, MITIGATE, scope_body

TIMEOUT = 150

ZONE = 'wire.example.net'
P = f'{MITIGATE}/cuid=cuid-alice'
HELLO = {'method': 'GET', 'path': '/.well-known/dots/config'}


def put(mid, prefix='203.0.113.0/28'):
    return {'method': 'PUT', 'path': f'{P}/mid={mid}',
            'body': scope_body(prefix)}


def free_both(ctx, *hosts):
    """A port free on every host given (UDP and TCP)."""
    for _ in range(50):
        port = ctx.free_port(hosts[0])
        try:
            for h in hosts[1:]:
                import socket
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, kind)
                    try:
                        s.bind((h, port))
                    finally:
                        s.close()
            return port
        except OSError:
            continue
    raise TestFailure(f'no port free on all of {hosts}')


def start_knot(ctx, addr, udp, tcp, ttl=60):
    knotd_path()  # Skip when absent
    return Knot(ctx, zones=(ZONE,),
                subst={'ZTIME': ttl, 'LOOPA': addr, 'SIGUDP': udp,
                       'SIGTCP': tcp})


def server(ctx, host, port, transport='dtls', name='server'):
    return ctx.start_test_server(transport=transport, host=host, port=port,
                                 psk=GW_PSK, name=name)


def gateway(ctx, knot, upstream=None, discovery=None):
    dn_port = ctx.free_port()
    ups = {'name': 'provider', 'psk-identity': GW_PSK[0],
           'psk-key': GW_PSK[1], 'heartbeat-interval': 1,
           'missing-hb-allowed': 3, 'reconnect-min': 1, 'reconnect-max': 2,
           'discovery': {'domain': ZONE, 'resolver': knot.server,
                         **(discovery or {})}}
    ups.update(upstream or {})
    cfg = {
        'gateway': {'log-level': 'debug', 'id': 'gw-test',
                    'request-timeout': 10},
        'server': {'listen': ({'transport': 'dtls', 'address': '127.0.0.1',
                               'port': dn_port},),
                   'session': {'heartbeat-interval': [1, 30, 240]}},
        'clients': ({'name': 'alice', 'upstream': 'provider',
                     'allowed-prefixes': ['203.0.113.0/24'],
                     'psk-identity': ALICE_PSK[0],
                     'psk-key': ALICE_PSK[1]},),
        'upstreams': (ups,),
        'control': {'socket': str(ctx.path('ctl.sock'))},
    }
    path, _ = ctx.write_config(cfg)
    gw = ctx.start_gateway(path)
    gw.dn_port = dn_port
    return gw


def client(ctx, gw, script):
    return ctx.start_test_client(gw.dn_port, transport='dtls', script=script,
                                 name='alice', psk=ALICE_PSK,
                                 args=('--timeout-ms', '20000'))


def got_put(srv, mid, timeout):
    return srv.expect(lambda e: e.get('event') == 'request' and
                      e.get('method') == 'PUT' and
                      f'cuid=cuid-alice/mid={mid}' in (e.get('path') or ''),
                      timeout)


def requests(srv):
    return [e for e in list(srv.events) if e.get('event') == 'request']


def test_table1_order_then_next_when_first_dies(ctx):
    """Table 1's first row (signal.udp, DTLS) is used while it is up; when
    it dies, dotsgw falls to the second (signal.tcp, TLS) and installs the
    client's active mitigation there."""
    addr = '127.0.0.2'
    udp, tcp = free_both(ctx, addr), free_both(ctx, addr)
    knot = start_knot(ctx, addr, udp, tcp)
    first = server(ctx, addr, udp, 'dtls', name='udp-5000')
    second = server(ctx, addr, tcp, 'tls', name='tcp-5001')
    gw = gateway(ctx, knot)
    c = client(ctx, gw, [put(1), {'wait_stdin': 90000}])
    ev = c.expect({'event': 'response', 'step': 0}, 30)
    if ev['code'] != '2.01':
        raise TestFailure(f'first PUT: {ev}')
    got_put(first, 1, 5)
    if requests(second):
        raise TestFailure(f'the second candidate was used while the first '
                          f'was up: {requests(second)}')
    gw.wait_log(re.compile(r'candidate 1/2: 127\.0\.0\.2 port %d' % udp), 5)
    first.popen.send_signal(signal.SIGKILL)
    first.wait(10)
    # Heartbeats fail (3 x 1 s), the first candidate is tried again and
    # fails (at most the core's 10 s handshake timeout), then the second.
    got_put(second, 1, 60)
    gw.wait_log(re.compile(r'candidate 2/2: 127\.0\.0\.2 port %d' % tcp), 5)
    c.send('go')
    c.wait(30)


def test_explicit_address_wins(ctx):
    """RFC 8973 §4: with an explicit address, the discovered servers are
    only later in the list: dotsgw uses the configured one."""
    addr = '127.0.0.2'
    udp, tcp = free_both(ctx, addr), free_both(ctx, addr)
    knot = start_knot(ctx, addr, udp, tcp)
    discovered = server(ctx, addr, udp, 'dtls', name='discovered')
    explicit = server(ctx, '127.0.0.1', None, 'dtls', name='explicit')
    gw = gateway(ctx, knot, upstream={'address': '127.0.0.1',
                                      'port': explicit.port})
    c = client(ctx, gw, [put(2), {'wait_stdin': 60000}])
    ev = c.expect({'event': 'response', 'step': 0}, 30)
    if ev['code'] != '2.01':
        raise TestFailure(f'PUT: {ev}')
    got_put(explicit, 2, 5)
    # The DNS list arrived (3 candidates with the explicit one) and
    # changed nothing.
    gw.wait_log(re.compile(r'upstream provider: 3 candidate\(s\), first '
                           r'127\.0\.0\.1'), 20)
    c.send('go')
    c.wait(30)
    if requests(discovered):
        raise TestFailure(f'the discovered server was used: '
                          f'{requests(discovered)}')


def test_rediscovery_moves_and_rehomes(ctx):
    """The zone changes; once its TTL has expired dotsgw discovers again,
    finds its server gone from the list, and moves to the new one, where
    the client's active mitigation is installed again."""
    old_addr, new_addr = '127.0.0.2', '127.0.0.3'
    udp = free_both(ctx, old_addr, new_addr)
    tcp = free_both(ctx, old_addr, new_addr)
    knot = start_knot(ctx, old_addr, udp, tcp, ttl=2)
    old = server(ctx, old_addr, udp, 'dtls', name='old')
    new = server(ctx, new_addr, udp, 'dtls', name='new')
    gw = gateway(ctx, knot, discovery={'ttl-min': 1,
                                       'transports': ['udp']})
    c = client(ctx, gw, [put(3), {'wait_stdin': 90000}])
    ev = c.expect({'event': 'response', 'step': 0}, 30)
    if ev['code'] != '2.01':
        raise TestFailure(f'PUT: {ev}')
    got_put(old, 3, 5)
    mark = gw.log_mark()
    knot.reload(ZONE, {'LOOPA': new_addr})
    gw.wait_log(re.compile(r'upstream provider: 1 candidate\(s\), first '
                           r'127\.0\.0\.3'), 30, since=mark)
    gw.wait_log('re-homing', 5, since=mark)
    got_put(new, 3, 30)
    if gw.returncode is not None:
        raise TestFailure('dotsgw exited')
    c.send('go')
    c.wait(30)


def test_dhcp_before_dns(ctx):
    """RFC 8973 §4: DHCP candidates come before the DNS ones. The DHCP
    hooks' state file (written here as the hook would) names 192.0.2.77
    (TEST-NET: the option parser refuses loopback, and nothing answers
    there), so dotsgw tries it first, then falls to the DNS candidate."""
    from test_discovery_dhcp import _state_file, _v4
    addr = '127.0.0.2'
    udp, tcp = free_both(ctx, addr), free_both(ctx, addr)
    knot = start_knot(ctx, addr, udp, tcp)
    dns_srv = server(ctx, addr, udp, 'dtls', name='dns')
    state = ctx.path('dhcp')
    state.mkdir(mode=0o755)
    _state_file(state / 'eth9.v4', 'eth9', 4, 3600,
                [(148, _v4('192.0.2.77'))])
    gw = gateway(ctx, knot, discovery={'dhcp': True, 'dhcp-dir': str(state),
                                       'transports': ['udp']})
    gw.wait_log(re.compile(r'upstream provider: 2 candidate\(s\), first '
                           r'192\.0\.2\.77'), 20)
    c = client(ctx, gw, [HELLO, {'wait_stdin': 60000}, put(5),
                         {'wait_stdin': 60000}])
    c.expect({'event': 'response', 'step': 0}, 15)
    gw.wait_log(re.compile(r'candidate 1/2: 192\.0\.2\.77 port 4646'), 10)
    # The DHCP candidate fails (at most the 10 s handshake deadline), then
    # the DNS one is configured.
    dns_srv.expect(lambda e: e.get('event') == 'request' and
                   '/config' in (e.get('path') or ''), 40)
    gw.wait_log(re.compile(r'candidate 2/2: 127\.0\.0\.2 port %d' % udp), 5)
    c.send('go')
    ev = c.expect({'event': 'response', 'step': 2}, 30)
    if ev['code'] != '2.01':
        raise TestFailure(f'PUT: {ev}')
    got_put(dns_srv, 5, 5)
    c.send('go')
    c.wait(30)


def test_operator_discover(ctx):
    """dotsctl discover: the zone changed but its TTL (60 s) is far off;
    on the operator's request dotsgw discovers again at once and moves."""
    old_addr, new_addr = '127.0.0.2', '127.0.0.4'
    udp = free_both(ctx, old_addr, new_addr)
    tcp = free_both(ctx, old_addr, new_addr)
    knot = start_knot(ctx, old_addr, udp, tcp, ttl=60)
    old = server(ctx, old_addr, udp, 'dtls', name='old')
    new = server(ctx, new_addr, udp, 'dtls', name='new')
    gw = gateway(ctx, knot, discovery={'transports': ['udp']})
    gw.wait_log(re.compile(r'upstream provider: 1 candidate'), 20)
    c = client(ctx, gw, [put(4), {'wait_stdin': 60000}])
    ev = c.expect({'event': 'response', 'step': 0}, 30)
    if ev['code'] != '2.01':
        raise TestFailure(f'PUT: {ev}')
    got_put(old, 4, 5)
    knot.reload(ZONE, {'LOOPA': new_addr})
    mark = gw.log_mark()
    r = ctx.run([ctx.binary('gateway/dotsctl'), '-s',
                 str(ctx.path('ctl.sock')), '--json', 'discover'], timeout=10)
    if r.rc != 0 or '"upstreams": 1' not in r.stdout.replace('":1', '": 1'):
        raise TestFailure(f'dotsctl discover: rc {r.rc} {r.stdout} {r.stderr}')
    gw.wait_log('discovery requested', 5, since=mark)
    got_put(new, 4, 20)
    c.send('go')
    c.wait(30)


def test_reload_adds_explicit_address(ctx):
    """A reload that gives a discovered upstream an explicit address: the
    address comes first (RFC 8973 §4), the client moves there with its
    active mitigation."""
    addr = '127.0.0.2'
    udp, tcp = free_both(ctx, addr), free_both(ctx, addr)
    knot = start_knot(ctx, addr, udp, tcp)
    discovered = server(ctx, addr, udp, 'dtls', name='discovered')
    explicit = server(ctx, '127.0.0.1', None, 'dtls', name='explicit')
    gw = gateway(ctx, knot, discovery={'transports': ['udp']})
    gw.wait_log(re.compile(r'upstream provider: 1 candidate'), 20)
    c = client(ctx, gw, [put(6), {'wait_stdin': 60000}])
    ev = c.expect({'event': 'response', 'step': 0}, 30)
    if ev['code'] != '2.01':
        raise TestFailure(f'PUT: {ev}')
    got_put(discovered, 6, 5)
    cfg_path = ctx.path('dotsgw.conf')
    text = cfg_path.read_text()
    new = text.replace("name = \"provider\";",
                       "name = \"provider\"; address = \"127.0.0.1\"; "
                       f"port = {explicit.port};", 1)
    if new == text:
        raise TestFailure(f'cannot edit the configuration:\n{text}')
    cfg_path.write_text(new)
    mark = gw.log_mark()
    gw.signal(signal.SIGHUP)
    gw.wait_log('reloaded', 15, since=mark)
    got_put(explicit, 6, 20)
    gw.wait_log(re.compile(r'upstream provider: 2 candidate\(s\), first '
                           r'127\.0\.0\.1'), 20, since=mark)
    c.send('go')
    c.wait(30)


def test_malformed_answers_do_not_crash(ctx):
    """A zone of hostile records (test_discovery_dns's bad.example.net):
    each is refused with a log line, the good path is kept, dotsgw runs
    on and answers its control socket."""
    knotd_path()
    knot = Knot(ctx, zones=('bad.example.net',))
    gw = gateway(ctx, knot, discovery={'domain': 'bad.example.net',
                                       'ttl-min': 1})
    gw.wait_log(re.compile(r'upstream provider: 1 candidate\(s\), first '
                           r'127\.0\.0\.3'), 30)
    gw.wait_log(re.compile(r'group=disc .*refused: non-empty regexp'), 5)
    r = ctx.run([ctx.binary('gateway/dotsctl'), '-s',
                 str(ctx.path('ctl.sock')), 'status'], timeout=10)
    if r.rc != 0 or gw.returncode is not None:
        raise TestFailure(f'dotsgw did not survive: rc {r.rc}\n{r.stderr}')

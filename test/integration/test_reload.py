"""Live reload (SIGHUP): a narrowed client scope applies to the next
request on the same DTLS session; an invalid file changes nothing and
each of its errors is logged as FILE:LINE; a removed client's session is
closed while the others carry on; a new listener opens."""

import re
import signal

from harness import TestFailure
from topo import GW_PSK, MITIGATE, Topology, scope_body

TIMEOUT = 90

P = f'{MITIGATE}/cuid=cuid-alice'
# dotsgw learns of a DTLS session at its first request (GnuTLS raises no
# event for server handshakes, LIBRARY-NOTES): each script starts with one.
HELLO = {'method': 'GET', 'path': '/.well-known/dots/config'}


def put(mid, prefix='203.0.113.0/28'):
    return {'method': 'PUT', 'path': f'{P}/mid={mid}',
            'body': scope_body(prefix)}


def reload(topo, expect='reloaded'):
    """SIGHUP, then the log line saying how it ended; returns the log
    position before the signal."""
    mark = topo.gateway.log_mark()
    topo.gateway.popen.send_signal(signal.SIGHUP)
    topo.gateway.wait_log(re.compile(r'\b(reloaded|reload refused)\b'), 15,
                          since=mark)
    lines = topo.gateway.stderr_lines[mark:]
    if not any(expect in ln for ln in lines):
        raise TestFailure(f'reload did not end with "{expect}":\n' +
                          '\n'.join(lines))
    return mark


def no_new_session(topo, mark):
    new = [ln for ln in topo.gateway.stderr_lines[mark:]
           if 'session up' in ln or 'session down' in ln]
    if new:
        raise TestFailure('the reload re-established sessions:\n' +
                          '\n'.join(new))


def test_narrowed_scope_applies_on_same_session(ctx):
    topo = Topology(ctx)
    c = topo.client([put(1), {'wait_stdin': 30000}, put(2),
                     {'wait_stdin': 30000}, put(3, '203.0.113.128/28'),
                     {'wait_stdin': 30000}],
                    name='alice')
    ev = c.expect({'event': 'response', 'step': 0}, 15)
    if ev['code'] != '2.01':
        raise TestFailure(f'before the reload: {ev}')

    topo.config['clients'][0]['allowed-prefixes'] = ['203.0.113.128/25']
    ctx.write_config(topo.config)
    mark = reload(topo)
    c.send('go')
    ev = c.expect({'event': 'response', 'step': 2}, 15)
    if ev['code'] != '4.03':
        raise TestFailure(f'a scope outside the narrowed policy: {ev}')
    c.send('go')
    ev = c.expect({'event': 'response', 'step': 4}, 15)
    if ev['code'] != '2.01':
        raise TestFailure(f'a scope inside the narrowed policy: {ev}')
    no_new_session(topo, mark)
    c.send('go')
    if c.wait(15) != 0:
        raise TestFailure('the client did not finish its script cleanly')
    # The mitigation accepted before the reload is still relayed.
    if not topo.server_requests('PUT', 'mid=1'):
        raise TestFailure('mid=1 never reached the upstream')


def test_invalid_file_changes_nothing_and_logs_each_error(ctx):
    topo = Topology(ctx)
    c = topo.client([HELLO, {'wait_stdin': 30000}, put(1),
                     {'wait_stdin': 30000}], name='alice')
    c.expect({'event': 'response', 'step': 0}, 15)
    good = topo.config_path.read_text()
    bad = dict(topo.config)
    bad['gateway'] = dict(bad['gateway'], **{'hop-limit': 0,
                                             'no-such-key': 1})
    clients = [dict(x) for x in bad['clients']]
    clients[0]['allowed-prefixes'] = ['192.0.2.0/24']  # valid, narrower
    bad['clients'] = tuple(clients)
    path, lines = ctx.write_config(bad)
    mark = reload(topo, expect='reload refused')
    logged = '\n'.join(topo.gateway.stderr_lines[mark:])
    for key in ('gateway.hop-limit', 'gateway.no-such-key'):
        want = f'{path}:{lines[key]}: '
        if want not in logged:
            raise TestFailure(f'no "{want}" error logged for {key}:\n{logged}')
    # The old configuration runs on: alice's old scope is still allowed.
    c.send('go')
    ev = c.expect({'event': 'response', 'step': 2}, 15)
    if ev['code'] != '2.01':
        raise TestFailure(f'after a refused reload: {ev}')
    no_new_session(topo, mark)
    c.send('go')
    # And a good file reloads afterwards.
    path.write_text(good)
    reload(topo)


def test_removed_client_closed_others_carry_on(ctx):
    topo = Topology(ctx)
    a = topo.client([HELLO, {'wait_stdin': 30000}, put(1)], name='alice')
    b = topo.client([HELLO, {'wait_stdin': 30000},
                     {'method': 'GET', 'path': f'{MITIGATE}/cuid=cuid-bob'}],
                    name='bob')
    a.expect({'event': 'response', 'step': 0}, 15)
    b.expect({'event': 'response', 'step': 0}, 15)
    topo.config['clients'] = (topo.config['clients'][0],)
    ctx.write_config(topo.config)
    mark = reload(topo)
    topo.gateway.wait_log('client=bob removed', 5, since=mark)
    # bob's DTLS session is closed by the gateway: its pending step fails.
    b.send('go')
    ev = b.expect({'event': 'timeout', 'step': 2}, 20)
    if 'session down' not in (ev.get('reason') or ''):
        raise TestFailure(f'bob after its removal: {ev}')
    a.send('go')
    ev = a.expect({'event': 'response', 'step': 2}, 15)
    if ev['code'] != '2.01':
        raise TestFailure(f'alice after bob was removed: {ev}')


def test_new_listener_opens(ctx):
    topo = Topology(ctx)
    port = ctx.free_port()
    listen = list(topo.config['server']['listen'])
    listen.append({'transport': 'dtls', 'address': '127.0.0.1', 'port': port})
    topo.config['server']['listen'] = tuple(listen)
    ctx.write_config(topo.config)
    reload(topo)
    c = ctx.start_test_client(port, transport='dtls', script=[put(1)],
                              name='alice-new-port',
                              args=('--timeout-ms', '8000'),
                              **topo.client_cred('alice'))
    ev = c.expect({'event': 'response', 'step': 0}, 15)
    if ev['code'] != '2.01':
        raise TestFailure(f'on the new listener: {ev}')
    # Removing a listener needs a restart: refused, old ones stay.
    topo.config['server']['listen'] = tuple(listen[:1] + listen[2:])
    ctx.write_config(topo.config)
    reload(topo, expect='reload refused')


def test_changed_upstream_rehomes_active_mitigations(ctx):
    topo = Topology(ctx)
    c = topo.client([put(1), {'wait_stdin': 30000}], name='alice')
    ev = c.expect({'event': 'response', 'step': 0}, 15)
    if ev['code'] != '2.01':
        raise TestFailure(f'before the reload: {ev}')
    other = ctx.start_test_server(transport='dtls', psk=GW_PSK,
                                  name='provider-2')
    topo.config['upstreams'][0]['port'] = other.port
    ctx.write_config(topo.config)
    mark = reload(topo)
    topo.gateway.wait_log('re-homing', 5, since=mark)
    ev = other.expect(lambda e: e.get('event') == 'request' and
                      e.get('method') == 'PUT' and
                      'cuid=cuid-alice/mid=1' in (e.get('path') or ''), 20)
    # The client's session was not touched.
    no_new_session(topo, mark)
    c.send('go')
    if c.wait(15) != 0:
        raise TestFailure('the client did not finish its script cleanly')

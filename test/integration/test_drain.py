"""Drain (SIGUSR1): connected clients are redirected to the configured
alternate (RFC 9132 §4.6: 5.03 with redirected-signal and Max-Age), an
observing client at once through its observation, the others at their
next request; they reconnect there and carry on. SIGUSR2 ends it."""

import copy
import re
import signal

from harness import TestFailure
from topo import MITIGATE, SCOPE, Topology, scope_body

TIMEOUT = 90

HELLO = {'method': 'GET', 'path': '/.well-known/dots/config'}
REDIRECT = 'ietf-dots-signal-channel:redirected-signal'


def put(cuid, mid, prefix):
    return {'method': 'PUT', 'path': f'{MITIGATE}/cuid={cuid}/mid={mid}',
            'body': scope_body(prefix)}


def check_redirect(ev):
    rs = (ev.get('body') or {}).get(REDIRECT) or {}
    if ev.get('code') != '5.03' or rs.get('alt-server') != 'alt.dots.test' \
            or rs.get('alt-server-record') != ['127.0.0.2'] \
            or ev.get('max_age') != 120:
        raise TestFailure(f'not the configured redirection: {ev}')


def test_drain_redirects_clients_to_the_alternate(ctx):
    topo = Topology(ctx, gateway=None)
    # The alternate: a second dotsgw on 127.0.0.2, same port, same
    # clients and upstream.
    alt_cfg = copy.deepcopy(topo.config)
    alt_cfg['server']['listen'] = tuple(
        dict(x, address='127.0.0.2') for x in alt_cfg['server']['listen'])
    alt_cfg['gateway']['id'] = 'gw-alt'
    alt_cfg['control'] = {'socket': str(ctx.path('alt.sock'))}
    alt_path, _ = ctx.write_config(alt_cfg, 'alt.conf')
    alt = ctx.start_gateway(alt_path, name='dotsgw-alt')
    # The primary learns its alternate by reload (exercising both).
    topo.config['server']['drain'] = {'alternate': 'alt.dots.test',
                                      'addresses': ['127.0.0.2'],
                                      'ttl': 120}
    ctx.write_config(topo.config)
    mark = topo.gateway.log_mark()
    topo.gateway.popen.send_signal(signal.SIGHUP)
    topo.gateway.wait_log('reloaded', 10, since=mark)

    a = topo.client([put('cuid-alice', 1, '203.0.113.0/28'),
                     {'method': 'GET', 'observe': 0,
                      'path': f'{MITIGATE}/cuid=cuid-alice/mid=1'},
                     {'wait_stdin': 30000},
                     put('cuid-alice', 2, '203.0.113.16/28')],
                    name='alice', args=('--follow-redirect',))
    b = topo.client([HELLO, {'wait_stdin': 30000},
                     put('cuid-bob', 1, '198.51.100.0/28'),
                     {'wait_stdin': 30000},
                     put('cuid-bob', 2, '198.51.100.16/28')],
                    name='bob', args=('--follow-redirect',))
    if a.expect({'event': 'response', 'step': 0}, 15)['code'] != '2.01':
        raise TestFailure('alice not served before the drain')
    a.expect({'event': 'response', 'step': 1}, 15)
    b.expect({'event': 'response', 'step': 0}, 15)

    # Drained through the control socket (SIGUSR1 does the same).
    mark = topo.gateway.log_mark()
    r = ctx.run([ctx.binary('gateway/dotsctl'), '-s', topo.ctl_sock, 'drain'],
                timeout=15, name='dotsctl')
    if r.rc != 0 or r.stdout.strip() != 'draining: 1 observations redirected':
        raise TestFailure(f'dotsctl drain: exit {r.rc}: {r.stdout} {r.stderr}')
    # alice observes: told at once, moves without sending anything.
    # (status notifications may come first: the upstream sends them.)
    check_redirect(a.expect(lambda e: e['event'] == 'notification' and
                            e['step'] == 1 and e['code'] != '2.05', 10))
    a.expect({'event': 'redirected', 'to': '127.0.0.2'}, 10)
    a.send('go')
    ev = a.expect({'event': 'response', 'step': 3}, 15)
    if ev['code'] != '2.01':
        raise TestFailure(f'alice at the alternate: {ev}')
    alt.wait_log(re.compile(r'mid=2 mitigation active'), 10)
    # bob learns at its next request, then moves too.
    b.send('go')
    check_redirect(b.expect({'event': 'response', 'step': 2}, 15))
    b.expect({'event': 'redirected', 'to': '127.0.0.2'}, 10)
    b.send('go')
    ev = b.expect({'event': 'response', 'step': 4}, 15)
    if ev['code'] != '2.01':
        raise TestFailure(f'bob at the alternate: {ev}')
    # Nothing new is served by the drained gateway...
    c = topo.client([HELLO], name='carol', who='alice')
    check_redirect(c.expect({'event': 'response', 'step': 0}, 15))
    # ...until the drain ends.
    topo.gateway.popen.send_signal(signal.SIGUSR2)
    topo.gateway.wait_log('drain off', 10, since=mark)
    d = topo.client([HELLO], name='dave', who='alice')
    if d.expect({'event': 'response', 'step': 0}, 15)['code'] != '2.05':
        raise TestFailure('not served after the drain ended')
    # And SIGUSR1 drains as well.
    topo.gateway.popen.send_signal(signal.SIGUSR1)
    topo.gateway.wait_log(re.compile(r'draining to alt\.dots\.test: 0 '), 10,
                          since=mark)
    e = topo.client([HELLO], name='erin', who='alice')
    check_redirect(e.expect({'event': 'response', 'step': 0}, 15))


def test_drain_without_alternate_is_refused(ctx):
    topo = Topology(ctx)
    mark = topo.gateway.log_mark()
    topo.gateway.popen.send_signal(signal.SIGUSR1)
    topo.gateway.wait_log('drain refused', 10, since=mark)
    c = topo.client([HELLO], name='alice')
    if c.expect({'event': 'response', 'step': 0}, 15)['code'] != '2.05':
        raise TestFailure('a refused drain changed the service')

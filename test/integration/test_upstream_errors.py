"""Upstream errors reach the client faithfully: 4.09 with its
conflict-information, 5.xx with the diagnostic and Max-Age; a redirection
(the gateway's business, not yet followed) becomes a plain 5.03."""

from harness import TestFailure
from topo import MITIGATE, Topology, entries, scope_body

TIMEOUT = 60

P = f'{MITIGATE}/cuid=cuid-alice'


def put(topo, mid, name):
    c = topo.client([{'method': 'PUT', 'path': f'{P}/mid={mid}',
                      'body': scope_body()}], name=name, who='alice')
    ev = c.expect({'event': 'response', 'step': 0}, 15)
    c.wait(15)
    return ev


def test_upstream_conflict_error_and_redirect_relayed(ctx):
    topo = Topology(ctx)
    topo.server.send('conflict')
    topo.server.expect({'event': 'command'}, 5)
    ev = put(topo, 1, 'c1')
    if ev['code'] != '4.09':
        raise TestFailure(f'conflict answered {ev}')
    ci = entries(ev)[0].get('conflict-information') if entries(ev) else None
    if not ci or ci.get('conflict-cause') != 'overlapping-targets' or \
            ci.get('retry-timer') != 30:
        raise TestFailure(f'conflict-information not relayed: {ev}')

    topo.server.send('error 5.03')
    topo.server.expect({'event': 'command'}, 5)
    ev = put(topo, 2, 'c2')
    if ev['code'] != '5.03' or not ev.get('diagnostic'):
        raise TestFailure(f'upstream 5.03 answered {ev}')

    topo.server.send('redirect alt.dots.test 192.0.2.7')
    topo.server.expect({'event': 'command'}, 5)
    ev = put(topo, 3, 'c3')
    if ev['code'] != '5.03' or ev.get('body') or \
            'redirect' not in (ev.get('diagnostic') or ''):
        raise TestFailure(f'redirection answered {ev}')
    if ev.get('max_age') != 60:
        raise TestFailure(f'Max-Age not relayed: {ev}')

    topo.server.send('normal')
    topo.server.expect({'event': 'command'}, 5)
    ev = put(topo, 4, 'c4')
    if ev['code'] != '2.01':
        raise TestFailure(f'after the errors a request answered {ev}')

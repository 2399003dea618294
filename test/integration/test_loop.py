"""Two gateways configured as each other's upstream: the request loops
until its Hop-Limit runs out and the client gets 5.08, not a storm
(RFC 8768; RFC 9132 §4.4.1.1)."""

import re

from harness import TestFailure
from topo import ALICE_PSK, MITIGATE, scope_body

TIMEOUT = 90


def gateway_config(ctx, name, port, peer_port, my_id, peer_id, clients):
    return {
        'gateway': {'mode': 'map', 'log-level': 'debug', 'id': name,
                    'request-timeout': 20},
        'server': {'listen': ({'transport': 'dtls', 'address': '127.0.0.1',
                               'port': port},)},
        'clients': tuple(clients),
        'upstreams': ({'name': 'peer', 'address': '127.0.0.1',
                       'port': peer_port, 'transport': 'dtls',
                       'psk-identity': my_id[0], 'psk-key': my_id[1],
                       'heartbeat-interval': 5, 'missing-hb-allowed': 3,
                       'reconnect-min': 1, 'reconnect-max': 2},),
    }


def test_gateway_loop_ends_in_508(ctx):
    gw1_id = ('gw1', 'gw1-secret-0000')
    gw2_id = ('gw2', 'gw2-secret-1111')
    p1, p2 = ctx.free_port(), ctx.free_port()
    scope = ['203.0.113.0/24']
    c1 = gateway_config(ctx, 'gw1', p1, p2, gw1_id, gw2_id, [
        {'name': 'alice', 'psk-identity': ALICE_PSK[0],
         'psk-key': ALICE_PSK[1], 'upstream': 'peer',
         'allowed-prefixes': scope},
        {'name': 'gw2', 'psk-identity': gw2_id[0], 'psk-key': gw2_id[1],
         'upstream': 'peer', 'allowed-prefixes': scope}])
    c2 = gateway_config(ctx, 'gw2', p2, p1, gw2_id, gw1_id, [
        {'name': 'gw1', 'psk-identity': gw1_id[0], 'psk-key': gw1_id[1],
         'upstream': 'peer', 'allowed-prefixes': scope}])
    path1, _ = ctx.write_config(c1, 'gw1.conf')
    path2, _ = ctx.write_config(c2, 'gw2.conf')
    gw1 = ctx.start_gateway(path1, name='gw1')
    gw2 = ctx.start_gateway(path2, name='gw2')
    client = ctx.start_test_client(
        p1, psk=ALICE_PSK, args=('--timeout-ms', '20000'),
        script=[{'method': 'PUT', 'path': f'{MITIGATE}/cuid=looped/mid=1',
                 'body': scope_body()}])
    ev = client.expect({'event': 'response', 'step': 0}, 30)
    if ev['code'] != '5.08':
        raise TestFailure(f'looping request answered {ev}')
    if 'gw1' not in (ev.get('diagnostic') or ''):
        raise TestFailure(f'5.08 diagnostic names no gateway: {ev}')
    client.wait(10)
    relays = sum(1 for g in (gw1, gw2) for line in g.stderr_lines
                 if re.search(r'send REQ_RELAY_PUT', line))
    # 16 hops at most (RFC 8768 default), each relayed once.
    if relays > 16:
        raise TestFailure(f'{relays} relays for one request: a storm')
    if relays < 2:
        raise TestFailure(f'only {relays} relays: the loop was not exercised')

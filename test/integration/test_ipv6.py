"""IPv6 on both sides: a client on [::1] through dotsgw to an upstream on
[::1]."""

import socket

from harness import Skip, TestFailure
from topo import ALICE_PSK, GW_PSK, MITIGATE, entries, scope_body

TIMEOUT = 60


def test_ipv6_both_sides(ctx):
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(('::1', 0))
        s.close()
    except OSError as e:
        raise Skip(f'no IPv6 loopback: {e}')
    server = ctx.start_test_server(transport='dtls', host='::1', psk=GW_PSK)
    port = ctx.free_port('::1')
    conf, _ = ctx.write_config({
        'gateway': {'mode': 'map', 'log-level': 'info'},
        'server': {'listen': ({'transport': 'dtls', 'address': '::1',
                               'port': port},)},
        'clients': ({'name': 'alice', 'psk-identity': ALICE_PSK[0],
                     'psk-key': ALICE_PSK[1], 'upstream': 'provider',
                     'allowed-prefixes': ['2001:db8:6401::/48']},),
        'upstreams': ({'name': 'provider', 'address': '::1',
                       'port': server.port, 'transport': 'dtls',
                       'psk-identity': GW_PSK[0], 'psk-key': GW_PSK[1]},),
    })
    ctx.start_gateway(conf)
    client = ctx.start_test_client(('::1', port), psk=ALICE_PSK, script=[
        {'method': 'PUT', 'path': f'{MITIGATE}/cuid=v6/mid=1',
         'body': scope_body('2001:db8:6401::/64')}])
    ev = client.expect({'event': 'response', 'step': 0}, 15)
    if ev['code'] != '2.01':
        raise TestFailure(f'PUT over IPv6 answered {ev}')
    req = server.expect({'event': 'request', 'method': 'PUT', 'mid': 1}, 10)
    if entries({'body': req['body']})[0]['target-prefix'] != ['2001:db8:6401::/64']:
        raise TestFailure(f'upstream got {req}')

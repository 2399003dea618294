"""Plain CoAP only behind gateway.insecure-lab, which warns at start; a
plain-UDP client then reaches a plain-UDP upstream through dotsgw, and
without the switch the same configuration is refused."""

from harness import TestFailure
from topo import MITIGATE, entries, scope_body

TIMEOUT = 60


def lab_config(server_port, port, lab):
    return {
        'gateway': {'mode': 'map', 'insecure-lab': lab, 'log-level': 'info'},
        'server': {'listen': ({'transport': 'udp', 'address': '127.0.0.1',
                               'port': port},)},
        'clients': ({'name': 'lab', 'psk-identity': 'lab', 'psk-key': 'k',
                     'upstream': 'plain',
                     'allowed-prefixes': ['203.0.113.0/24']},),
        'upstreams': ({'name': 'plain', 'address': '127.0.0.1',
                       'port': server_port, 'transport': 'udp'},),
    }


def test_plain_coap_needs_the_lab_switch(ctx):
    server = ctx.start_test_server(transport='udp')
    port = ctx.free_port()
    refused, _ = ctx.write_config(lab_config(server.port, port, False), 'refused.conf')
    res = ctx.check_config(refused)
    if res.rc == 0 or 'insecure-lab' not in res.stderr:
        raise TestFailure(f'plain transports accepted without insecure-lab: {res.stderr}')
    conf, _ = ctx.write_config(lab_config(server.port, port, True))
    gw = ctx.start_gateway(conf)
    gw.wait_log('insecure-lab is on', 5)
    client = ctx.start_test_client(port, transport='udp', script=[
        {'method': 'PUT', 'path': f'{MITIGATE}/cuid=lab/mid=1', 'body': scope_body()},
        {'method': 'GET', 'path': f'{MITIGATE}/cuid=lab/mid=1'}])
    ev = client.expect({'event': 'response', 'step': 0}, 15)
    if ev['code'] != '2.01':
        raise TestFailure(f'plain PUT answered {ev}')
    ev = client.expect({'event': 'response', 'step': 1}, 10)
    if ev['code'] != '2.05' or entries(ev)[0].get('mid') != 1:
        raise TestFailure(f'plain GET answered {ev}')
    req = server.expect({'event': 'request', 'method': 'PUT', 'mid': 1}, 10)
    if req.get('type') != 'non':
        raise TestFailure(f'mitigation request upstream not NON: {req}')

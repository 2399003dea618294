"""DHCP discovery through dotsgw itself (RFC 8973 §5), end to end: a real
DHCP server and client in two network namespaces, the shipped hook, and
dotsgw connecting where the lease says.

Namespace S holds dnsmasq (DHCPv4 with options 147/148) and a
dots-test-server on S's veth address, port 4646 (RFC 8973 §5: a
DHCP-discovered server is on the default port). Namespace C holds
dhclient running scripts/dhcp/dhclient-exit-hook (the state files go to
the test's temp dir), dotsgw with an upstream whose only source of
servers is DHCP (discovery dhcp = true, dns = false, no address) and a
DTLS listener on C's loopback, and a dots-test-client.

DHCPv4 only: the v6 path (141/142) is covered up to the candidate list
by test_discovery_dhcp.py; here a DHCPv6 candidate would come first on
the interface (§4) and needs a routed IPv6 address in C, which the test
does not set up.

The reference identifier from option 147 is checked to reach dotsgw
(its log line), but not against the server: the upstream uses a PSK
(topo.GW_PSK), and with a PSK there is no certificate, so nothing is
matched against the name (README, Discovery via DHCP).

Same skips and clean-up as test_discovery_dhcp.py: not root, no
namespaces, dnsmasq or dhclient missing; both namespaces deleted and
what ran in them killed at the end.
"""

import re

from harness import TestFailure
from test_discovery_dhcp import (LEASE, SERVER_V4, Netns, _name, _need,
                                 _v4, start_dnsmasq, HOOKS, _tool)
from topo import ALICE_PSK, GW_PSK, MITIGATE, scope_body

TIMEOUT = 150

REF_ID = 'dots.example.com'
P = f'{MITIGATE}/cuid=cuid-alice'


def _dhclient_script(ctx, state):
    """What dhclient runs: the lease's address put on the interface (the
    one thing dhclient-script does that the test needs, so that C can
    reach S), then the shipped hook with the state dir in the temp dir."""
    path = ctx.path('dhclient-script')
    path.write_text(
        '#!/bin/sh\n'
        'case "$reason" in\n'
        'BOUND|RENEW|REBIND|REBOOT)\n'
        '\tip -4 addr replace "$new_ip_address/$new_subnet_mask" '
        'dev "$interface" ;;\n'
        'esac\n'
        f'DOTSGW_DHCP_DIR={state}\n'
        'export DOTSGW_DHCP_DIR\n'
        f'. {HOOKS}/dhclient-exit-hook\n')
    path.chmod(0o755)
    return path


def _start_dhclient(ctx, net, state):
    conf = ctx.path('dhclient.conf')
    conf.write_text((ctx.src / 'scripts' / 'dhcp' /
                     'dhclient-dotsgw.conf').read_text())
    return ctx.spawn('dhclient4', net.exec_args(
        net.c, _tool('dhclient'), '-d', '-v', '-4', '-cf', conf,
        '-lf', ctx.path('dhclient4.leases'), '-pf', ctx.path('dhclient4.pid'),
        '-sf', _dhclient_script(ctx, state), net.c_if), stdin=False)


def _gateway(ctx, net, state, dn_port):
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
        'upstreams': ({'name': 'provider', 'psk-identity': GW_PSK[0],
                       'psk-key': GW_PSK[1], 'heartbeat-interval': 1,
                       'missing-hb-allowed': 3, 'reconnect-min': 1,
                       'reconnect-max': 2,
                       'discovery': {'dhcp': True, 'dhcp-dir': str(state),
                                     'dns': False,
                                     'transports': ['udp']}},),
        'control': {'socket': str(ctx.path('ctl.sock'))},
    }
    path, _ = ctx.write_config(cfg)
    return ctx.start_gateway(path, netns=net.c)


def test_dhcp_e2e_dnsmasq_dhclient_dotsgw(ctx):
    """dnsmasq hands out 147 (dots.example.com) and 148 (S's veth
    address); dhclient's hook writes the state file; dotsgw takes the
    address as its only candidate, connects over DTLS with its PSK, and a
    client's mitigation PUT reaches the server in S."""
    _need('dnsmasq', 'dhclient')
    net = Netns(ctx)
    try:
        state = ctx.path('state')
        state.mkdir(mode=0o755)
        state.chmod(0o755)
        start_dnsmasq(ctx, net, v4_opts=[(147, _name('dots', 'example',
                                                     'com')),
                                          (148, _v4(SERVER_V4))], v6=False)
        srv = ctx.start_test_server(transport='dtls', host=SERVER_V4,
                                    port=4646, psk=GW_PSK, name='server',
                                    netns=net.s)
        dn_port = ctx.free_port()
        gw = _gateway(ctx, net, state, dn_port)
        # No lease yet: no server to go to.
        gw.wait_log('upstream=provider DHCP: 0 candidate(s)', 10)
        _start_dhclient(ctx, net, state)
        line = gw.wait_log(f'{net.c_if}.v4: 1 candidate(s)', 30)
        if f'reference identifier {REF_ID}' not in line:
            raise TestFailure(f'option 147 not taken: {line}')
        text = (state / f'{net.c_if}.v4').read_text()
        if f'lifetime {LEASE}' not in text:
            raise TestFailure(f'state file:\n{text}')
        gw.wait_log(re.compile(r'upstream provider: 1 candidate\(s\), '
                               r'first %s\b' % re.escape(SERVER_V4)), 10)
        c = ctx.start_test_client(
            dn_port, transport='dtls', name='alice', psk=ALICE_PSK,
            script=[{'method': 'PUT', 'path': f'{P}/mid=7',
                     'body': scope_body('203.0.113.0/28')},
                    {'wait_stdin': 60000}],
            args=('--timeout-ms', '20000'), netns=net.c)
        ev = c.expect({'event': 'response', 'step': 0}, 30)
        if ev['code'] != '2.01':
            raise TestFailure(f'PUT through dotsgw: {ev}')
        srv.expect(lambda e: e.get('event') == 'request' and
                   e.get('method') == 'PUT' and
                   e.get('peer_identity') == GW_PSK[0] and
                   'cuid=cuid-alice/mid=7' in (e.get('path') or ''), 10,
                   what='the PUT from dotsgw at the DHCP-discovered server')
        gw.wait_log(re.compile(r'candidate 1/1: %s port 4646 \(datagram\)'
                               % re.escape(SERVER_V4)), 5)
        c.send('go')
        c.wait(30)
        # Stopped here, not killed with the namespaces, so that a
        # sanitizer report at exit is seen.
        gw.stop(10)
        srv.stop(10)
    finally:
        net.close()

"""DHCP discovery through dotsgw itself (RFC 8973 §5), end to end: a real
DHCP server and client in two network namespaces, the shipped hook, and
dotsgw connecting where the lease says.

Namespace S holds dnsmasq (DHCPv4 options 147/148, DHCPv6 141/142) and
two dots-test-servers on S's veth addresses, IPv6 and IPv4, port 4646
(RFC 8973 §5: a DHCP-discovered server is on the default port).
Namespace C holds dhclient -4 and -6 running
scripts/dhcp/dhclient-exit-hook (state files in the test's temp dir; the
test's script also puts the leased address on the interface, as
dhclient-script would, so that C can reach S), dotsgw with an upstream
whose only source of servers is DHCP (discovery dhcp = true, dns = false,
no address) and a DTLS listener on C's loopback, and a dots-test-client.

The reference identifiers from options 147 and 141 are checked to reach
dotsgw (its log lines), but not against the servers: the upstream uses a
PSK (topo.GW_PSK), and with a PSK there is no certificate, so nothing is
matched against the names (README, Discovery via DHCP).

Same skips and clean-up as test_discovery_dhcp.py: not root, no
namespaces, dnsmasq or dhclient missing; both namespaces deleted and
what ran in them killed at the end.
"""

import re

from harness import TestFailure
from test_discovery_dhcp import (HOOKS, LEASE, SERVER_V4, SERVER_V6, Netns,
                                 _name, _need, _tool, _v4, _v6, start_dnsmasq)
from topo import ALICE_PSK, GW_PSK, MITIGATE, scope_body

TIMEOUT = 150

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
        'BOUND6|RENEW6|REBIND6|REBOOT6)\n'
        '\tip -6 addr replace "$new_ip6_address/64" dev "$interface" ;;\n'
        'esac\n'
        f'DOTSGW_DHCP_DIR={state}\n'
        'export DOTSGW_DHCP_DIR\n'
        f'. {HOOKS}/dhclient-exit-hook\n')
    path.chmod(0o755)
    return path


def _start_dhclient(ctx, net, state, family):
    conf = ctx.path('dhclient.conf')
    conf.write_text((ctx.src / 'scripts' / 'dhcp' /
                     'dhclient-dotsgw.conf').read_text())
    f = str(family)
    return ctx.spawn(f'dhclient{f}', net.exec_args(
        net.c, _tool('dhclient'), '-d', '-v', f'-{f}', '-cf', conf,
        '-lf', ctx.path(f'dhclient{f}.leases'),
        '-pf', ctx.path(f'dhclient{f}.pid'),
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


def _got_put(srv, mid, timeout, what):
    return srv.expect(lambda e: e.get('event') == 'request' and
                      e.get('method') == 'PUT' and
                      e.get('peer_identity') == GW_PSK[0] and
                      f'cuid=cuid-alice/mid={mid}' in (e.get('path') or ''),
                      timeout, what=f'the PUT from dotsgw at {what}')


def test_dhcp_e2e_dnsmasq_dhclient_dotsgw(ctx):
    """dnsmasq hands out 141/142 (dots6.example.com, S's IPv6 address) and
    147/148 (dots.example.com, S's IPv4 address); dhclient's hook writes
    the state files; dotsgw lists the DHCPv6 server first (§4), connects
    there over DTLS with its PSK and relays a client's mitigation PUT;
    when that server dies, it moves to the DHCPv4 one and installs the
    mitigation there."""
    _need('dnsmasq', 'dhclient')
    net = Netns(ctx)
    try:
        state = ctx.path('state')
        state.mkdir(mode=0o755)
        state.chmod(0o755)
        start_dnsmasq(ctx, net,
                      v4_opts=[(147, _name('dots', 'example', 'com')),
                               (148, _v4(SERVER_V4))],
                      v6_opts=[(141, _name('dots6', 'example', 'com')),
                               (142, _v6(SERVER_V6))])
        srv6 = ctx.start_test_server(transport='dtls', host=SERVER_V6,
                                     port=4646, psk=GW_PSK, name='server6',
                                     netns=net.s)
        srv4 = ctx.start_test_server(transport='dtls', host=SERVER_V4,
                                     port=4646, psk=GW_PSK, name='server4',
                                     netns=net.s)
        dn_port = ctx.free_port()
        gw = _gateway(ctx, net, state, dn_port)
        # No lease yet: no server to go to.
        gw.wait_log('upstream=provider DHCP: 0 candidate(s)', 10)
        _start_dhclient(ctx, net, state, 4)
        _start_dhclient(ctx, net, state, 6)
        for fam, ref in ((4, 'dots'), (6, 'dots6')):
            line = gw.wait_log(f'{net.c_if}.v{fam}: 1 candidate(s)', 30)
            if f'reference identifier {ref}.example.com' not in line:
                raise TestFailure(f'option {147 if fam == 4 else 141} '
                                  f'not taken: {line}')
            text = (state / f'{net.c_if}.v{fam}').read_text()
            if f'lifetime {LEASE}' not in text:
                raise TestFailure(f'state file:\n{text}')
        gw.wait_log(re.compile(r'upstream provider: 2 candidate\(s\), '
                               r'first %s\b' % re.escape(SERVER_V6)), 10)
        c = ctx.start_test_client(
            dn_port, transport='dtls', name='alice', psk=ALICE_PSK,
            script=[{'method': 'PUT', 'path': f'{P}/mid=7',
                     'body': scope_body('203.0.113.0/28')},
                    {'wait_stdin': 90000}],
            args=('--timeout-ms', '20000'), netns=net.c)
        ev = c.expect({'event': 'response', 'step': 0}, 30)
        if ev['code'] != '2.01':
            raise TestFailure(f'PUT through dotsgw: {ev}')
        _got_put(srv6, 7, 10, 'the DHCPv6-discovered server')
        gw.wait_log(re.compile(r'candidate 1/2: %s port 4646 \(datagram\)'
                               % re.escape(SERVER_V6)), 5)
        if any(e.get('event') == 'request' for e in list(srv4.events)):
            raise TestFailure('the DHCPv4 server was used while the DHCPv6 '
                              'one was up')
        # Heartbeats fail (3 x 1 s), the first candidate is tried again
        # and fails (at most 10 s), then the DHCPv4 one.
        srv6.popen.kill()
        srv6.wait(10)
        _got_put(srv4, 7, 60, 'the DHCPv4-discovered server')
        gw.wait_log(re.compile(r'candidate 2/2: %s port 4646 \(datagram\)'
                               % re.escape(SERVER_V4)), 5)
        c.send('go')
        c.wait(30)
        # Stopped here, not killed with the namespaces, so that a
        # sanitizer report at exit is seen.
        gw.stop(10)
        srv4.stop(10)
    finally:
        net.close()

"""The upstream dies while a mitigation is active and observed: dotsgw
notices within the negotiated missing-heartbeat allowance, reconnects
when the upstream is back, installs the mitigation again, and the
client's observation delivers notifications again, with no client
action."""

import re
import time

from harness import TestFailure
from topo import GW_PSK, MITIGATE, Topology, entries, scope_body

TIMEOUT = 120

HB_INTERVAL = 1
MISSING_HB = 3


def test_upstream_killed_and_back(ctx):
    topo = Topology(ctx, upstream={'heartbeat-interval': HB_INTERVAL,
                                   'missing-hb-allowed': MISSING_HB,
                                   'reconnect-min': 1, 'reconnect-max': 2})
    path = f'{MITIGATE}/cuid=cuid-alice/mid=5'
    client = topo.client([
        {'method': 'PUT', 'path': path, 'body': scope_body()},
        {'method': 'GET', 'path': path, 'observe': 0, 'wait_ms': 60000},
    ], args=('--timeout-ms', '65000'))
    ev = client.expect({'event': 'response', 'step': 0}, 15)
    if ev['code'] != '2.01':
        raise TestFailure(f'PUT answered {ev}')
    client.expect(lambda e: e.get('event') == 'notification' and
                  entries(e) and entries(e)[0].get('status') ==
                  'attack-successfully-mitigated', 15, 'status 2')

    port = topo.server.port
    mark = topo.gateway.log_mark()
    topo.server.popen.kill()     # no close_notify: a crash
    killed = time.monotonic()
    topo.server.wait(10)
    # Missing heartbeats, or sooner: on loopback the next datagram draws
    # an ICMP port unreachable and the DTLS session closes.
    line = topo.gateway.wait_log(
        re.compile(r'session down \((missing heartbeats|closed|no acknowledgement)\)'),
        timeout=HB_INTERVAL * (MISSING_HB + 3), since=mark)
    noticed = time.monotonic() - killed
    allowance = HB_INTERVAL * (MISSING_HB + 1)
    if noticed > allowance + 0.5:
        raise TestFailure(f'noticed after {noticed:.1f} s, allowance '
                          f'{allowance} s: {line}')

    seen = len(client.events)
    server2 = ctx.start_test_server(transport='dtls', port=port, psk=GW_PSK,
                                    args=('--status-delay-ms', '300',
                                          '--notify-interval-ms', '200'),
                                    name='server2')
    put = server2.expect({'event': 'request', 'method': 'PUT', 'mid': 5}, 20)
    if put['cuid'] != 'cuid-alice' or not entries({'body': put['body']}):
        raise TestFailure(f'mitigation not re-installed as sent: {put}')
    server2.expect({'event': 'request', 'method': 'GET', 'mid': 5}, 10)
    ev = client.expect(lambda e: e.get('event') == 'notification' and
                       any(x is e for x in client.events[seen:]) and
                       entries(e) and entries(e)[0].get('status') ==
                       'attack-successfully-mitigated', 20,
                       'a notification relayed from the new upstream')
    if entries(ev)[0].get('mid') != 5:
        raise TestFailure(f'notification for the wrong mitigation: {ev}')


def test_silent_upstream_detected_by_heartbeats(ctx):
    """The upstream stays up but answers nothing (a saturated link): only
    the missing heartbeats can tell, within missing-hb-allowed intervals;
    once it answers again the mitigation is installed again."""
    topo = Topology(ctx, upstream={'heartbeat-interval': HB_INTERVAL,
                                   'missing-hb-allowed': MISSING_HB,
                                   'reconnect-min': 1, 'reconnect-max': 2})
    path = f'{MITIGATE}/cuid=cuid-alice/mid=9'
    client = topo.client([
        {'method': 'PUT', 'path': path, 'body': scope_body()},
        {'method': 'GET', 'path': path, 'observe': 0, 'wait_ms': 60000},
    ], args=('--timeout-ms', '65000'))
    ev = client.expect({'event': 'response', 'step': 0}, 15)
    if ev['code'] != '2.01':
        raise TestFailure(f'PUT answered {ev}')
    mark = topo.gateway.log_mark()
    topo.server.send('silent')
    topo.server.expect({'event': 'command'}, 5)
    went_silent = time.monotonic()
    topo.gateway.wait_log('session down (missing heartbeats)',
                          timeout=HB_INTERVAL * (MISSING_HB + 3), since=mark)
    noticed = time.monotonic() - went_silent
    allowance = HB_INTERVAL * (MISSING_HB + 1)
    if noticed > allowance + 0.5:
        raise TestFailure(f'noticed after {noticed:.1f} s, allowance {allowance} s')
    before = len(topo.server_requests('PUT', '/mitigate/'))
    topo.server.send('normal')
    topo.server.expect(lambda e: e.get('event') == 'request' and
                       e.get('method') == 'PUT' and e.get('mid') == 9 and
                       len(topo.server_requests('PUT', '/mitigate/')) > before,
                       20, 'the mitigation re-installed')

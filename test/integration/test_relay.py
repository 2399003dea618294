"""Map-mode relay end to end, over every transport pair and both
credential kinds (issue acceptance: PUT -> 2.01 with the same scope, cuid,
mid and cdid upstream; Observe relays status 1 then 2 and growing
bytes-dropped; efficacy update relayed; DELETE -> 2.02 and withdrawn)."""

from harness import TestFailure
from topo import MITIGATE, Topology, entries, scope_body

TIMEOUT = 90

CUID = 'cuid-alice-0001'


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def relay_scenario(ctx, dn, up, cred, server_domain):
    topo = Topology(ctx, dn=dn, up=up, cred=cred,
                    server_domain=server_domain)
    path = f'{MITIGATE}/cuid={CUID}/mid=7'
    body = scope_body()
    efficacy = scope_body(**{'attack-status': 'under-attack'})
    script = [
        {'method': 'PUT', 'path': path, 'body': body},
        {'method': 'GET', 'path': path, 'observe': 0,
         'until': {'status': 'attack-successfully-mitigated'}},
        {'method': 'GET', 'path': path, 'observe': 0, 'wait_notifications': 2},
        {'method': 'PUT', 'path': path, 'body': efficacy, 'if_match': True},
        {'method': 'DELETE', 'path': path},
    ]
    client = topo.client(script)

    created = client.expect({'event': 'response', 'step': 0}, 15)
    check(created['code'] == '2.01', f'PUT answered {created}')
    got = entries(created)
    check(got and got[0].get('mid') == 7, f'2.01 body {created}')

    put = topo.server.expect(lambda e: e.get('event') == 'request' and
                             e.get('method') == 'PUT' and
                             '/mitigate/' in e.get('path', '') and
                             not e.get('if_match'), 10)
    check(put['cuid'] == CUID and put['mid'] == 7, f'upstream saw {put}')
    check(put['cdid'] == topo.expected_cdid('alice'),
          f'cdid upstream {put["cdid"]!r}, want {topo.expected_cdid("alice")!r}')
    sent = entries({'body': put['body']})
    check(sent and sent[0].get('target-prefix') == ['203.0.113.0/28'] and
          sent[0].get('target-protocol') == [6],
          f'upstream scope {put["body"]}')
    check(put.get('hop_limit') == 16, f'Hop-Limit upstream {put.get("hop_limit")}')

    # Observe: status 1 first, then 2, from the upstream via dotsgw.
    first = client.expect({'event': 'response', 'step': 1}, 10)
    check(first['code'] == '2.05' and first['observe'] is not None,
          f'observe answer {first}')
    statuses = [entries(first)[0]['status']]
    while 'attack-successfully-mitigated' not in statuses:
        n = client.expect({'event': 'notification', 'step': 1}, 10)
        statuses.append(entries(n)[0]['status'])
    check(statuses[0] == 'attack-mitigation-in-progress',
          f'first status {statuses}')

    # bytes-dropped grows across notifications while mitigated.
    client.expect({'event': 'response', 'step': 2}, 10)
    drops = []
    for _ in range(2):
        n = client.expect({'event': 'notification', 'step': 2}, 10)
        e = entries(n)[0]
        if e.get('status') == 'attack-successfully-mitigated':
            drops.append(int(e['bytes-dropped']))
    check(len(drops) == 2 and drops[1] > drops[0],
          f'bytes-dropped not growing: {drops}')

    upd = client.expect({'event': 'response', 'step': 3}, 10)
    check(upd['code'] == '2.04', f'efficacy update answered {upd}')
    eff = topo.server.expect(lambda e: e.get('event') == 'request' and
                             e.get('method') == 'PUT' and e.get('if_match'), 10)
    check(entries({'body': eff['body']})[0].get('attack-status') ==
          'under-attack', f'efficacy upstream {eff}')

    gone = client.expect({'event': 'response', 'step': 4}, 10)
    check(gone['code'] == '2.02', f'DELETE answered {gone}')
    dele = topo.server.expect({'event': 'request', 'method': 'DELETE'}, 10)
    check(dele['cuid'] == CUID and dele['mid'] == 7, f'upstream DELETE {dele}')
    check(client.wait(20) == 0, 'client did not finish its script')
    topo.gateway.stop()


def test_dtls_dtls_psk(ctx):
    relay_scenario(ctx, 'dtls', 'dtls', 'psk', server_domain=True)


def test_tls_dtls_psk(ctx):
    relay_scenario(ctx, 'tls', 'dtls', 'psk', server_domain=False)


def test_dtls_tls_psk(ctx):
    relay_scenario(ctx, 'dtls', 'tls', 'psk', server_domain=True)


def test_tls_tls_psk(ctx):
    relay_scenario(ctx, 'tls', 'tls', 'psk', server_domain=False)


def test_dtls_dtls_x509(ctx):
    relay_scenario(ctx, 'dtls', 'dtls', 'x509', server_domain=True)


def test_tls_dtls_x509(ctx):
    relay_scenario(ctx, 'tls', 'dtls', 'x509', server_domain=True)


def test_dtls_tls_x509(ctx):
    relay_scenario(ctx, 'dtls', 'tls', 'x509', server_domain=False)


def test_tls_tls_x509(ctx):
    relay_scenario(ctx, 'tls', 'tls', 'x509', server_domain=True)

"""The dotsgw demo: test server <- dotsgw <- test client on loopback, with
a readable trace of both hops. Run through scripts/demo."""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'test' / 'integration'))

import harness  # noqa: E402

SCOPE = 'ietf-dots-signal-channel:mitigation-scope'


def short(body):
    if not body:
        return ''
    cfg = body.get('ietf-dots-signal-channel:signal-config')
    if cfg:
        idle = cfg.get('idle-config', {})
        return 'session config: ' + ' '.join(
            f'{k}={v.get("current-value", v.get("current-value-decimal"))}'
            for k, v in idle.items() if k in ('heartbeat-interval',
                                              'missing-hb-allowed'))
    scope = (body.get(SCOPE) or {}).get('scope') or []
    if not scope:
        return json.dumps(body, separators=(',', ':'))
    e = scope[0]
    keys = ('mid', 'target-prefix', 'lifetime', 'status', 'bytes-dropped',
            'attack-status')
    return ' '.join(f'{k}={e[k]}' for k in keys if k in e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', required=True)
    ap.add_argument('--transport', default='dtls', choices=('dtls', 'tls'))
    ap.add_argument('--upstream', default='dtls', choices=('dtls', 'tls'))
    ap.add_argument('--seconds', type=float, default=4.0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix='dotsgw-demo-'))
    ctx = harness.Context(Path(args.build), tmp)
    ok = False
    try:
        gw_psk, alice = ('dotsgw', 'gateway-demo-key'), ('alice', 'alice-demo-key')
        server = ctx.start_test_server(
            transport=args.upstream, psk=gw_psk,
            args=('--status-delay-ms', '1500', '--notify-interval-ms', '700'))
        port = ctx.free_port()
        cfg = {
            'gateway': {'mode': 'map', 'server-domain': True, 'id': 'demo-gw',
                        'log-level': 'info'},
            'server': {'listen': (
                {'transport': 'dtls', 'address': '127.0.0.1', 'port': port},
                {'transport': 'tls', 'address': '127.0.0.1', 'port': port})},
            'clients': ({'name': 'alice', 'psk-identity': alice[0],
                         'psk-key': alice[1], 'upstream': 'provider',
                         'allowed-prefixes': ['203.0.113.0/24']},),
            'upstreams': ({'name': 'provider', 'address': '127.0.0.1',
                           'port': server.port, 'transport': args.upstream,
                           'psk-identity': gw_psk[0], 'psk-key': gw_psk[1],
                           'heartbeat-interval': 15,
                           'reconnect-min': 1, 'reconnect-max': 10},),
        }
        conf, _ = ctx.write_config(cfg)
        print(f'# upstream DOTS test server on 127.0.0.1:{server.port} ({args.upstream})')
        gw = ctx.start_gateway(conf)
        print(f'# dotsgw listening on 127.0.0.1:{port} (dtls, tls), config {conf}')
        path = '/.well-known/dots/mitigate/cuid=demo-alice/mid=1'
        body = {SCOPE: {'scope': [{'target-prefix': ['203.0.113.0/28'],
                                   'target-protocol': [6], 'lifetime': 3600}]}}
        client = ctx.start_test_client(port, transport=args.transport, psk=alice, script=[
            {'method': 'PUT', 'path': path, 'body': body},
            {'method': 'GET', 'path': path, 'observe': 0,
             'wait_ms': int(args.seconds * 1000)},
            {'method': 'DELETE', 'path': path},
        ], args=('--timeout-ms', str(int(args.seconds * 1000) + 8000)))
        print(f'# client alice over {args.transport}: PUT, observe for '
              f'{args.seconds:g} s, DELETE\n')
        t0 = time.monotonic()
        shown_up = 0
        names = {0: 'PUT', 1: 'GET+Observe', 2: 'DELETE'}
        deadline = t0 + args.seconds + 20
        done = False
        while time.monotonic() < deadline and not done:
            try:
                ev = client.expect(lambda e: True, 0.2)
            except harness.TestFailure:
                ev = None
            ups = [e for e in server.events if e.get('event') == 'request'
                   and '/hb' not in e.get('path', '')][shown_up:]
            for e in ups:
                shown_up += 1
                print(f'{time.monotonic() - t0:6.2f}s  dotsgw -> upstream  '
                      f'{e["method"]} {e["path"]}  Hop-Limit={e.get("hop_limit")}  '
                      f'{short(e.get("body"))}')
            if ev is None:
                continue
            kind = ev.get('event')
            if kind in ('response', 'notification'):
                step = names.get(ev.get('step'), '?')
                what = 'answer to ' + step if kind == 'response' else 'notification'
                print(f'{time.monotonic() - t0:6.2f}s  client <- dotsgw    '
                      f'{ev["code"]} {what}  {short(ev.get("body"))}')
                if kind == 'response' and ev.get('step') == 2:
                    done = ev['code'] == '2.02'
            elif kind == 'timeout':
                print(f'client step timed out: {ev}')
                break
        client.wait(15)
        statuses = [e for e in client.events if e.get('event') == 'notification']
        ok = done and any('attack-successfully-mitigated' in json.dumps(e)
                          for e in statuses)
        gw.stop()
        print('\n# dotsgw log (info):')
        for line in gw.stderr_lines:
            print('  ' + line)
        print('\ndemo ' + ('succeeded' if ok else 'FAILED'))
    finally:
        ctx.close()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f'logs kept in {tmp}')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())

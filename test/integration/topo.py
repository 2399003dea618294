"""Topologies for dotsgw integration tests: a DOTS test server upstream,
dotsgw, and DOTS test clients downstream, on loopback.

Not a test module itself (run.py collects test_*.py only).
"""

import base64
import hashlib

MITIGATE = '/.well-known/dots/mitigate'
SCOPE = 'ietf-dots-signal-channel:mitigation-scope'
SIGNAL_CONFIG = 'ietf-dots-signal-channel:signal-config'

ALICE_PSK = ('alice', 'alice-secret-0123')
BOB_PSK = ('bob', 'bob-secret-4567')
GW_PSK = ('dotsgw', 'gateway-secret-89')


def derive_id(cred: bytes) -> str:
    """RFC 9132 Appendix B: base64url(SHA-256(cred)[:16]), no padding."""
    return base64.urlsafe_b64encode(
        hashlib.sha256(cred).digest()[:16]).rstrip(b'=').decode()


def spki_der(cert_path):
    """DER SubjectPublicKeyInfo of a PEM certificate (via openssl)."""
    import subprocess
    pub = subprocess.run(['openssl', 'x509', '-in', str(cert_path), '-pubkey',
                          '-noout'], check=True, capture_output=True).stdout
    return subprocess.run(['openssl', 'pkey', '-pubin', '-outform', 'DER'],
                          input=pub, check=True, capture_output=True).stdout


def scope_body(prefix='203.0.113.0/28', lifetime=3600, **extra):
    entry = {'target-prefix': [prefix], 'target-protocol': [6],
             'lifetime': lifetime}
    entry.update(extra)
    return {SCOPE: {'scope': [entry]}}


def entries(ev):
    """The scope entries of a response/notification event's body."""
    body = ev.get('body') or {}
    return (body.get(SCOPE) or {}).get('scope') or []


class Topology:
    """Upstream test server + dotsgw. Clients are started per test."""

    def __init__(self, ctx, dn='dtls', up='dtls', cred='psk',
                 server_domain=False, clients=None, gateway=None,
                 server_args=('--status-delay-ms', '300',
                              '--notify-interval-ms', '200'),
                 upstream=None, log_level='debug'):
        self.ctx = ctx
        self.dn, self.up, self.cred = dn, up, cred
        self.server_domain = server_domain
        if cred == 'x509':
            self.srv_cert = ctx.cert('upstream.dots.test',
                                     san=['upstream.dots.test'])
            self.gw_up_cert = ctx.cert('gw-client.dots.test')
            self.gw_cert = ctx.cert('gw.dots.test', san=['gw.dots.test'])
            self.alice_cert = ctx.cert('alice.dots.test')
            self.bob_cert = ctx.cert('bob.dots.test')
            self.server = ctx.start_test_server(
                transport=up, cert=self.srv_cert, args=server_args)
        else:
            self.server = ctx.start_test_server(
                transport=up, psk=GW_PSK, args=server_args)
        self.dn_port = ctx.free_port()
        ups = {
            'name': 'provider', 'address': '127.0.0.1',
            'port': self.server.port, 'transport': up,
            'heartbeat-interval': 1, 'missing-hb-allowed': 3,
            'reconnect-min': 1, 'reconnect-max': 2,
        }
        if cred == 'x509':
            ups.update({'cert': self.gw_up_cert.cert,
                        'key': self.gw_up_cert.key,
                        'ca': self.gw_up_cert.ca,
                        'server-name': 'upstream.dots.test'})
        else:
            ups.update({'psk-identity': GW_PSK[0], 'psk-key': GW_PSK[1]})
        if upstream:
            ups.update(upstream)
        if clients is None:
            clients = [self.client_record('alice', '203.0.113.0/24'),
                       self.client_record('bob', '198.51.100.0/24')]
        self.config = {
            'gateway': {'mode': 'map', 'server-domain': server_domain,
                        'log-level': log_level, 'id': 'gw-test',
                        'request-timeout': 10},
            'server': {
                'listen': ({'transport': 'dtls', 'address': '127.0.0.1',
                            'port': self.dn_port},
                           {'transport': 'tls', 'address': '127.0.0.1',
                            'port': self.dn_port}),
                'session': {'heartbeat-interval': [1, 30, 240]},
            },
            'clients': tuple(clients),
            'upstreams': (ups,),
        }
        if cred == 'x509':
            self.config['server'].update({'cert': self.gw_cert.cert,
                                          'key': self.gw_cert.key,
                                          'ca': self.gw_cert.ca})
        # The control socket in the test's own directory, not the shared
        # default /run/dotsgw (sun_path holds 107 bytes: otherwise the
        # gateway runs without one, with a warning).
        self.ctl_sock = str(ctx.path('ctl.sock'))
        if len(self.ctl_sock) < 100:
            self.config['control'] = {'socket': self.ctl_sock}
        if gateway:
            self.config['gateway'].update(gateway)
        self.config_path, _ = ctx.write_config(self.config)
        self.gateway = ctx.start_gateway(self.config_path)

    def client_record(self, name, prefix):
        rec = {'name': name, 'upstream': 'provider',
               'allowed-prefixes': [prefix]}
        if self.cred == 'x509':
            rec['cert-name'] = f'{name}.dots.test'
        else:
            psk = ALICE_PSK if name == 'alice' else BOB_PSK
            rec.update({'psk-identity': psk[0], 'psk-key': psk[1]})
        return rec

    def client_cred(self, name):
        if self.cred == 'x509':
            return {'cert': self.alice_cert if name == 'alice'
                    else self.bob_cert}
        return {'psk': ALICE_PSK if name == 'alice' else BOB_PSK}

    def expected_cdid(self, name):
        if not self.server_domain:
            return None
        if self.cred == 'x509':
            c = self.alice_cert if name == 'alice' else self.bob_cert
            return derive_id(spki_der(c.cert))
        psk = ALICE_PSK if name == 'alice' else BOB_PSK
        return derive_id(psk[0].encode())

    def client(self, script, name='alice', transport=None, args=(), who=None):
        """A test client running script as `who` (alice or bob; default:
        name)."""
        return self.ctx.start_test_client(
            self.dn_port, transport=transport or self.dn, script=script,
            name=name, args=('--timeout-ms', '8000', *args),
            **self.client_cred(who or name))

    def server_requests(self, method=None, path_part=None):
        """Requests the upstream test server recorded so far."""
        out = []
        for ev in list(self.server.events):
            if ev.get('event') != 'request':
                continue
            if method and ev.get('method') != method:
                continue
            if path_part and path_part not in (ev.get('path') or ''):
                continue
            out.append(ev)
        return out


def cbor(v):
    """Minimal CBOR encoder for building hostile test bodies by hand:
    int keys, ints (negative too), text, lists, dicts (insertion order),
    bools, and Tag(n, v)."""
    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << (8 * size):
                return bytes([major << 5 | ai]) + n.to_bytes(size, 'big')
        raise ValueError(n)
    if v is True:
        return b'\xf5'
    if v is False:
        return b'\xf4'
    if isinstance(v, Tag):
        return head(6, v.tag) + cbor(v.value)
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, (list, tuple)):
        return head(4, len(v)) + b''.join(cbor(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b''.join(cbor(k) + cbor(x)
                                          for k, x in v.items())
    raise TypeError(v)


class Tag:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


def scope_cbor(entry=None, over=None):
    """CBOR {1:{2:[entry]}} with a valid default entry (targets in alice's
    scope) updated by over (int keys)."""
    e = dict(entry or {6: ['203.0.113.0/28'], 14: 3600})
    e.update(over or {})
    return cbor({1: {2: [e]}}).hex()

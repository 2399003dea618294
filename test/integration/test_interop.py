"""An independent CoAP client (Debian's coap-client-openssl, libcoap with
OpenSSL where dotsgw uses GnuTLS) requests a mitigation through dotsgw
over DTLS with a PSK and gets 2.01."""

import re
import shutil

from harness import Skip, TestFailure
from topo import ALICE_PSK, MITIGATE, Topology, cbor

TIMEOUT = 60


def test_coap_client_openssl_dtls_psk(ctx):
    tool = shutil.which('coap-client-openssl')
    if not tool:
        raise Skip('coap-client-openssl not installed (libcoap3-bin)')
    topo = Topology(ctx)
    body = ctx.path('request.cbor')
    body.write_bytes(cbor({1: {2: [{6: ['203.0.113.0/28'], 10: [6],
                                    14: 3600}]}}))
    url = (f'coaps://127.0.0.1:{topo.dn_port}{MITIGATE}'
           '/cuid=interop-client/mid=1')
    res = ctx.run([tool, '-m', 'put', '-u', ALICE_PSK[0], '-k', ALICE_PSK[1],
                   '-t', '271', '-f', body, '-B', '5', '-v', '6', url],
                  timeout=30, name='coap-client-openssl')
    out = res.stdout if isinstance(res.stdout, str) else res.stdout.decode(
        'utf-8', 'replace')
    if not re.search(r'\bc:2\.01\b', out):
        raise TestFailure(f'coap-client-openssl did not get 2.01:\n{out}\n'
                          f'{res.stderr}')
    put = topo.server.expect({'event': 'request', 'method': 'PUT',
                              'cuid': 'interop-client', 'mid': 1}, 10)
    if put['body'] is None:
        raise TestFailure(f'upstream got no scope: {put}')

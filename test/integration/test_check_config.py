"""dotsgw --check-config: validates a config file without running.

Contract (gateway/config.h, gateway/main.c): every error is printed on
stderr as "FILE:LINE: KEY: reason", all errors are reported (not just the
first), the exit code is 1 when there is any error and 0 when the file is
valid.
"""

import re

from harness import TestFailure

TIMEOUT = 60


def error_lines(path, stderr):
    """(line, key, reason) of each 'FILE:LINE: KEY: reason' line about
    path in stderr."""
    pat = re.compile(r'^' + re.escape(str(path)) +
                     r':(\d+): ([^:]+?): (.+)$')
    found = []
    for line in stderr.splitlines():
        m = pat.match(line)
        if m:
            found.append((int(m.group(1)), m.group(2), m.group(3)))
    return found


def valid_config(ctx):
    """A complete valid config using every documented key, with both PSK
    and certificate credentials (real files, in case they are checked)."""
    server = ctx.cert('dotsgw.test', san=['dotsgw.test', '127.0.0.1'])
    upstream_client = ctx.cert('gw.dotsgw.test')
    return {
        'gateway': {
            'mode': 'map',
            'server-domain': False,
            'insecure-lab': False,
            'log-level': 'info',
            'hop-limit': 16,
            'max-body': 8192,
            'request-timeout': 20,
            'id': 'dotsgw.test',
        },
        'server': {
            'listen': (
                {'transport': 'dtls', 'address': '127.0.0.1', 'port': 4646},
                {'transport': 'tls', 'address': '::', 'port': 4646},
            ),
            'psk-hint': 'dotsgw',
            'cert': server.cert,
            'key': server.key,
            'ca': server.ca,
            'session': {
                'heartbeat-interval': [15, 30, 240],
                'missing-hb-allowed': [3, 15, 30],
                'probing-rate': [1, 5, 100],
                'max-retransmit': [2, 3, 15],
                'ack-timeout': [1.0, 2.0, 30.0],
                'ack-random-factor': [1.1, 1.5, 4.0],
            },
        },
        'clients': (
            {
                'name': 'alice',
                'psk-identity': 'alice',
                'psk-key': 'alice-secret',
                'upstream': 'provider',
                'allowed-prefixes': ['203.0.113.0/24', '2001:db8:1::/48'],
                'allowed-fqdns': ['example.com'],
                'allowed-uris': ['https://example.com/'],
                'allowed-ports': ['0-65535'],
                'allow-aliases': False,
            },
            {
                'name': 'bob',
                'cert-name': 'bob.example',
                'upstream': 'backup',
                'allowed-prefixes': ['198.51.100.0/24'],
            },
        ),
        'upstreams': (
            {
                'name': 'provider',
                'address': '127.0.0.1',
                'port': 4646,
                'transport': 'dtls',
                'psk-identity': 'gw',
                'psk-key': 'gw-secret',
                'heartbeat-interval': 30,
                'missing-hb-allowed': 5,
                'reconnect-min': 60,
                'reconnect-max': 300,
            },
            {
                'name': 'backup',
                'address': '127.0.0.1',
                'port': 4647,
                'transport': 'tls',
                'cert': upstream_client.cert,
                'key': upstream_client.key,
                'ca': upstream_client.ca,
                'server-name': 'dots.example',
            },
        ),
    }


def test_valid_config(ctx):
    path, _ = ctx.write_config(valid_config(ctx))
    r = ctx.check_config(path)
    errors = error_lines(path, r.stderr)
    if r.rc != 0 or errors:
        raise TestFailure(f'valid config rejected: exit {r.rc}, stderr:\n'
                          f'{r.stderr}\nconfig:\n{path.read_text()}')


def test_errors_reported_with_file_line_key(ctx):
    cfg = valid_config(ctx)
    gw = cfg['gateway']
    gw['hop-limit'] = 0                     # below 1..255
    gw['log-level'] = 'loud'                # not in the enum
    gw['max-body'] = 'big'                  # string for an integer
    gw['no-such-key'] = 1                   # unknown keys are errors
    cfg['server']['listen'][0]['transport'] = 'quic'
    cfg['server']['session']['heartbeat-interval'] = [240, 30, 15]
    cfg['upstreams'][0]['port'] = 70000     # not a port
    path, lines = ctx.write_config(cfg, 'bad.conf')
    # (setting path, the key name the reported KEY must contain)
    broken = [
        ('gateway.hop-limit', 'hop-limit'),
        ('gateway.log-level', 'log-level'),
        ('gateway.max-body', 'max-body'),
        ('gateway.no-such-key', 'no-such-key'),
        ('server.listen[0].transport', 'transport'),
        ('server.session.heartbeat-interval', 'heartbeat-interval'),
        ('upstreams[0].port', 'port'),
    ]
    expected = {lines[p]: leaf for p, leaf in broken}
    assert len(expected) == len(broken), 'two errors on one line'

    r = ctx.check_config(path)
    numbered = '\n'.join(f'{i:3}  {t}' for i, t in enumerate(
        path.read_text().splitlines(), 1))
    where = f'\nstderr:\n{r.stderr}\nconfig:\n{numbered}'
    if r.rc != 1:
        raise TestFailure(f'exit {r.rc}, expected 1' + where)
    errors = error_lines(path, r.stderr)
    problems = []
    for line, leaf in sorted(expected.items()):
        hits = [e for e in errors if e[0] == line]
        if not hits:
            problems.append(f'no error for line {line} ({leaf})')
        elif not any(leaf in key for _, key, _ in hits):
            problems.append(f'line {line}: KEY does not name {leaf}: {hits}')
        elif any(not reason.strip() for _, _, reason in hits):
            problems.append(f'line {line}: empty reason: {hits}')
    for line, key, reason in errors:
        if line not in expected:
            problems.append(f'unexpected error at line {line}: {key}: '
                            f'{reason}')
    if len(errors) != len(expected):
        problems.append(f'{len(errors)} error lines for {len(expected)} '
                        'errors (want one line per error)')
    if problems:
        raise TestFailure('\n'.join(problems) + where)


def test_syntax_error_has_line(ctx):
    path = ctx.path('syntax.conf')
    path.write_text('gateway = {\n'
                    '  mode = "map";\n'
                    '  hop-limit = ;\n'      # line 3: no value
                    '  max-body = 8192;\n'
                    '};\n')
    r = ctx.check_config(path)
    if r.rc != 1:
        raise TestFailure(f'exit {r.rc}, expected 1; stderr:\n{r.stderr}')
    if not re.search(r'^' + re.escape(str(path)) + r':3: ', r.stderr,
                     re.M):
        raise TestFailure(f'no "{path}:3: " line in stderr:\n{r.stderr}')


def test_missing_file(ctx):
    path = ctx.path('does-not-exist.conf')
    r = ctx.check_config(path)
    if r.rc != 1:
        raise TestFailure(f'exit {r.rc}, expected 1; stderr:\n{r.stderr}')
    if str(path) not in r.stderr:
        raise TestFailure(f'stderr does not name {path}:\n{r.stderr}')


if __name__ == '__main__':
    raise SystemExit('run through test/integration/run.py')

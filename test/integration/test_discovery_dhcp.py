"""DOTS server discovery through DHCP (RFC 8973 §5), end to end.

Each test makes two network namespaces joined by a veth pair: dnsmasq in
one serves DHCPv4 options 147/148 and DHCPv6 options 141/142 (raw bytes),
a real DHCP client (isc-dhcp-client or dhcpcd) in the other runs the
shipped hook (scripts/dhcp/), which writes the state files that
dotsgw-dhcp-watch (gateway/io_dhcp.c) reads; the test checks the candidate
list it prints, or, for malformed options, its rejection line.

Nothing touches the host's network or /etc: the clients get their config,
lease, pid and script paths in the test's temp dir (-cf/-lf/-pf/-sf, or
dhcpcd -f/-c with its state directories bind-mounted over from the temp dir
inside the namespace's own mount namespace), every process runs in the
namespaces, and both namespaces are deleted at the end, their processes
killed. Skipped, with the reason, when not root, when a tool is missing
(scripts/setup installs them) or when namespaces cannot be made.
"""

import os
import shutil
import signal
import subprocess
import time

from harness import Skip, TestFailure

TIMEOUT = 90

HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                     '..', '..', 'scripts', 'dhcp')
HOOKS = os.path.normpath(HOOKS)

SERVER_V4 = '192.0.2.1'
SERVER_V6 = 'fd00:d075::1'
LEASE = 3600


def _hex(data):
    return ':'.join(f'{b:02x}' for b in data)


def _name(*labels):
    out = b''
    for label in labels:
        out += bytes([len(label)]) + label.encode()
    return out + b'\0'


def _v4(*addrs):
    return b''.join(bytes(int(x) for x in a.split('.')) for a in addrs)


def _v6(*addrs):
    import ipaddress
    return b''.join(ipaddress.IPv6Address(a).packed for a in addrs)


def _ip(*args, check=True):
    r = subprocess.run(['ip', *args], capture_output=True, text=True,
                       timeout=20)
    if check and r.returncode != 0:
        raise TestFailure(f'ip {" ".join(args)}: {r.stderr.strip()}')
    return r


class Netns:
    """Two namespaces, S (server) and C (client), and a veth pair."""

    def __init__(self, ctx):
        if os.geteuid() != 0:
            raise Skip('needs root to create network namespaces')
        if not shutil.which('ip'):
            raise Skip('ip (iproute2) not installed')
        tag = f'{os.getpid() % 100000}'
        self.s, self.c = f'dgdS{tag}', f'dgdC{tag}'
        self.s_if, self.c_if = f'dgS{tag}', f'dgC{tag}'
        self.ctx = ctx
        r = _ip('netns', 'add', self.s, check=False)
        if r.returncode != 0:
            raise Skip(f'cannot create a network namespace: {r.stderr.strip()}')
        self.made = [self.s]
        try:
            _ip('netns', 'add', self.c)
            self.made.append(self.c)
            for ns in (self.s, self.c):
                # No DAD: addresses usable at once, no waiting on it.
                self.sysctl(ns, 'net.ipv6.conf.default.accept_dad', '0')
                self.sysctl(ns, 'net.ipv6.conf.all.accept_dad', '0')
                _ip('-n', ns, 'link', 'set', 'lo', 'up')
            _ip('link', 'add', self.s_if, 'netns', self.s, 'type', 'veth',
                'peer', 'name', self.c_if, 'netns', self.c)
            _ip('-n', self.s, 'addr', 'add', f'{SERVER_V4}/24',
                'dev', self.s_if)
            _ip('-n', self.s, 'addr', 'add', f'{SERVER_V6}/64',
                'dev', self.s_if, 'nodad')
            _ip('-n', self.s, 'link', 'set', self.s_if, 'up')
            _ip('-n', self.c, 'link', 'set', self.c_if, 'up')
            self._wait_link_local()
        except BaseException:
            self.close()
            raise

    def sysctl(self, ns, key, value):
        r = subprocess.run(['ip', 'netns', 'exec', ns, 'sysctl', '-qw',
                            f'{key}={value}'], capture_output=True,
                           text=True, timeout=20)
        if r.returncode != 0:
            raise Skip(f'sysctl in a namespace: {r.stderr.strip()}')

    def _wait_link_local(self):
        """The clients need a usable link-local address on both ends."""
        deadline = time.monotonic() + 10 * self.ctx.scale
        while True:
            ok = True
            for ns, dev in ((self.s, self.s_if), (self.c, self.c_if)):
                out = _ip('-n', ns, '-6', 'addr', 'show', 'dev', dev,
                          'scope', 'link').stdout
                ok = ok and 'fe80' in out and 'tentative' not in out
            if ok:
                return
            if time.monotonic() > deadline:
                raise TestFailure('no link-local address after 10 s')
            time.sleep(0.1)

    def exec_args(self, ns, *args):
        return ['ip', 'netns', 'exec', ns, *[str(a) for a in args]]

    def close(self):
        """Kills what still runs in the namespaces (only processes this
        test started live there) and deletes them."""
        for ns in self.made:
            r = _ip('netns', 'pids', ns, check=False)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in self.made:
            deadline = time.monotonic() + 10
            while _ip('netns', 'pids', ns, check=False).stdout.strip():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            _ip('netns', 'del', ns, check=False)
        self.made = []


def _need(*tools):
    for t in tools:
        if not shutil.which(t) and not os.path.exists(f'/usr/sbin/{t}'):
            raise Skip(f'{t} not installed (scripts/setup installs it)')


def _tool(t):
    return shutil.which(t) or f'/usr/sbin/{t}'


def start_dnsmasq(ctx, net, v4_opts=(), v6_opts=(), v6=True):
    """dnsmasq in S: DHCPv4 (and DHCPv6 with RAs) on the veth, no DNS;
    options given as (code, bytes), sent only when requested."""
    args = [_tool('dnsmasq'), '-k', '-p', '0', '--conf-file=/dev/null',
            f'--interface={net.s_if}', '--bind-interfaces',
            '--dhcp-authoritative', '--log-dhcp', '--log-facility=-',
            f'--dhcp-leasefile={ctx.path("dnsmasq.leases")}',
            f'--pid-file={ctx.path("dnsmasq.pid")}',
            f'--dhcp-range=192.0.2.100,192.0.2.150,{LEASE}']
    if v6:
        args += ['--enable-ra',
                 f'--dhcp-range=fd00:d075::100,fd00:d075::1ff,64,{LEASE}']
    args += [f'--dhcp-option={code},{_hex(val)}' for code, val in v4_opts]
    args += [f'--dhcp-option=option6:{code},{_hex(val)}'
             for code, val in v6_opts]
    proc = ctx.spawn('dnsmasq', net.exec_args(net.s, *args), stdin=False)
    proc.wait_log('started', 10)
    return proc


def start_watch(ctx, state):
    proc = ctx.spawn('watch', [ctx.binary('gateway/dotsgw-dhcp-watch'),
                               '-d', state, '-r', '1000'], stdin=False)
    ev = proc.expect({'event': 'candidates'}, 10)
    if ev['candidates']:
        raise TestFailure(f'candidates before any lease: {ev}')
    return proc


def wrapper(ctx, name, hook, state):
    """The script the DHCP client runs: only the shipped hook, with the
    state directory in the temp dir (no interface or resolver changes)."""
    path = ctx.path(name)
    path.write_text('#!/bin/sh\n'
                    f'DOTSGW_DHCP_DIR={state}\n'
                    'export DOTSGW_DHCP_DIR\n'
                    f'. {os.path.join(HOOKS, hook)}\n')
    path.chmod(0o755)
    return path


def start_dhclient(ctx, net, state, family):
    conf = ctx.path('dhclient.conf')
    conf.write_text(open(os.path.join(HOOKS, 'dhclient-dotsgw.conf')).read())
    script = wrapper(ctx, 'dhclient-script', 'dhclient-exit-hook', state)
    f = str(family)
    return ctx.spawn(f'dhclient{f}', net.exec_args(
        net.c, _tool('dhclient'), '-d', '-v', f'-{f}', '-cf', conf,
        '-lf', ctx.path(f'dhclient{f}.leases'),
        '-pf', ctx.path(f'dhclient{f}.pid'), '-sf', script, net.c_if),
        stdin=False)


def start_dhcpcd(ctx, net, state):
    """One dhcpcd for both families."""
    conf = ctx.path('dhcpcd.conf')
    conf.write_text(open(os.path.join(HOOKS, 'dhcpcd-dotsgw.conf')).read()
                    + 'noarp\nnoipv4ll\n')
    script = wrapper(ctx, 'dhcpcd-script', 'dhcpcd-hook', state)
    lib, run = ctx.path('dhcpcd-lib'), ctx.path('dhcpcd-run')
    lib.mkdir(exist_ok=True)
    run.mkdir(exist_ok=True)
    if not os.path.isdir('/var/lib/dhcpcd'):
        raise Skip('/var/lib/dhcpcd missing: dhcpcd not set up')
    # ip netns exec gives the command its own mount namespace (slave to
    # the host's): these bind mounts are invisible outside it.
    sh = (f'mount --bind {lib} /var/lib/dhcpcd && '
          f'mount --bind {run} /run && '
          f'exec {_tool("dhcpcd")} -B -d -f {conf} -c {script} {net.c_if}')
    return ctx.spawn('dhcpcd', net.exec_args(net.c, 'sh', '-c', sh),
                     stdin=False)


def _addr(c):
    return c.get('address')


def expect_list(watch, want, timeout=30):
    """Waits for a candidate list whose addresses are exactly want."""
    return watch.expect(lambda ev: ev['event'] == 'candidates' and
                        [_addr(c) for c in ev['candidates']] == want,
                        timeout, what=f'candidate list {want}')


V4_GOOD = [
    (147, _name('dots', 'example', 'com')),
    # RFC 8973 §5.2.3: loopback and multicast silently discarded.
    (148, _v4('127.0.0.1', '192.0.2.10', '224.0.0.1', '198.51.100.7')),
]
V6_GOOD = [
    (141, _name('dots6', 'example', 'com')),
    # §5.1.3: multicast and loopback silently discarded.
    (142, _v6('ff02::1', '2001:db8::1', '::1')),
]


def check_good_list(ev, net):
    cands = ev['candidates']
    # DHCPv6 first on one interface, the server's order kept.
    if [c['source'] for c in cands] != ['dhcpv6', 'dhcpv4', 'dhcpv4']:
        raise TestFailure(f'order: {cands}')
    for c in cands:
        ri = ('dots6.example.com' if c['source'] == 'dhcpv6'
              else 'dots.example.com')
        if (c['port'] != 4646 or c['reference-identifier'] != ri or
                c['resolve'] or c['interface'] != net.c_if or
                c['expires'] - c['acquired'] != LEASE):
            raise TestFailure(f'candidate {c}')


def _discovery(ctx, client):
    _need('dnsmasq', client)
    net = Netns(ctx)
    try:
        state = ctx.path('state')
        start_dnsmasq(ctx, net, V4_GOOD, V6_GOOD)
        watch = start_watch(ctx, state)
        if client == 'dhclient':
            clients = [start_dhclient(ctx, net, state, 4),
                       start_dhclient(ctx, net, state, 6)]
        else:
            clients = [start_dhcpcd(ctx, net, state)]
        ev = expect_list(watch, ['2001:db8::1', '192.0.2.10', '198.51.100.7'])
        check_good_list(ev, net)
        for name in (f'{net.c_if}.v4', f'{net.c_if}.v6'):
            if not (state / name).is_file():
                raise TestFailure(f'hook wrote no {name}')
        # The hook keeps the bytes raw: the discarded addresses are there.
        text = (state / f'{net.c_if}.v4').read_text()
        if f'option 148 {_v4("127.0.0.1").hex()}' not in text:
            raise TestFailure(f'state file:\n{text}')
        # A removed file removes its source (what EXPIRE/RELEASE do).
        (state / f'{net.c_if}.v6').unlink()
        expect_list(watch, ['192.0.2.10', '198.51.100.7'], 10)
        for c in clients:
            c.terminate(10)
        if client == 'dhcpcd':
            # dhcpcd runs the hook when it stops: the lease is gone.
            expect_list(watch, [], 10)
        watch.stop(10)
    finally:
        net.close()


def test_dhclient_discovers_v4_and_v6(ctx):
    _discovery(ctx, 'dhclient')


def test_dhcpcd_discovers_v4_and_v6(ctx):
    _discovery(ctx, 'dhcpcd')


def _rejected(ctx, family, opts, reason):
    """dnsmasq serves opts; dhclient's hook writes them; the watcher
    rejects the file with reason, applies nothing and keeps running."""
    _need('dnsmasq', 'dhclient')
    net = Netns(ctx)
    try:
        state = ctx.path('state')
        if family == 4:
            start_dnsmasq(ctx, net, v4_opts=opts, v6=False)
        else:
            start_dnsmasq(ctx, net, v6_opts=opts)
        watch = start_watch(ctx, state)
        start_dhclient(ctx, net, state, family)
        line = watch.wait_log(f'{net.c_if}.v{family}: rejected: {reason}', 30)
        if 'level=warn' not in line:
            raise TestFailure(f'rejection not a warning: {line}')
        # Still alive, nothing applied: a forced re-read gives no list
        # and no second warning for the same content.
        mark = watch.log_mark()
        watch.signal(signal.SIGHUP)
        watch.expect_none(lambda ev: ev['candidates'], 1.5, 'a candidate')
        if any('rejected' in ln for ln in watch.stderr_lines[mark:]):
            raise TestFailure('same content warned about twice')
        if any(ev['candidates'] for ev in watch.events):
            raise TestFailure(f'malformed lease applied: {watch.events}')
        watch.stop(10)
    finally:
        net.close()


def test_rejects_v4_address_length(ctx):
    # §9.3: 4*N octets.
    _rejected(ctx, 4, [(148, _v4('192.0.2.10') + b'\x01\x02')],
              'option 148: length 6 is not a positive multiple of 4')


def test_rejects_v4_name_compression(ctx):
    # RFC 8415 §10 via RFC 8973 §5.2.1: no compression; the valid
    # address list does not survive the malformed name.
    _rejected(ctx, 4, [(147, b'\x04dots\xc0\x0c'),
                       (148, _v4('192.0.2.10'))],
              'option 147: compression pointer at offset 5')


def test_rejects_v4_name_label_overrun(ctx):
    _rejected(ctx, 4, [(147, b'\x04dots\x09example\x00')],
              'option 147: label at offset 5 runs past the end')


def test_rejects_v4_name_bad_label(ctx):
    _rejected(ctx, 4, [(147, _name('dots_1', 'example'))],
              'option 147: label at offset 0: octet 0x5f')


def test_rejects_v6_address_length(ctx):
    # §5.1.2: a multiple of 16.
    _rejected(ctx, 6, [(142, _v6('2001:db8::1')[:15])],
              'option 142: length 15 is not a positive multiple of 16')


def test_rejects_v6_name_unterminated(ctx):
    _rejected(ctx, 6, [(141, b'\x04dots\x07example')],
              'option 141: name not terminated by a root label')


def _state_file(path, iface, family, lifetime, opts, acquired=None):
    lines = ['dotsgw-dhcp 1', f'interface {iface}', f'family {family}',
             f'acquired {int(time.time()) if acquired is None else acquired}',
             f'lifetime {lifetime}']
    lines += [f'option {code} {val.hex()}' for code, val in opts]
    tmp = path.parent / f'.{path.name}.tmp'
    tmp.write_text('\n'.join(lines) + '\n')
    tmp.rename(path)


def test_watch_expiry_links_and_trust(ctx):
    """The watcher alone (no DHCP): a lease leaves the list when it
    expires; a symlink is not followed; a directory others can write is
    not trusted."""
    state = ctx.path('state')
    watch = start_watch(ctx, state)
    _state_file(state / 'eth9.v4', 'eth9', 4, 4294967295,
                [(148, _v4('192.0.2.77'))])
    ev = expect_list(watch, ['192.0.2.77'], 10)
    if ev['candidates'][0]['expires'] is not None:
        raise TestFailure(f'infinite lease with an expiry: {ev}')
    # Expires 2 s from now: the timer removes it without any file event.
    _state_file(state / 'eth8.v6', 'eth8', 6, 2, [(142, _v6('2001:db8::8'))])
    expect_list(watch, ['2001:db8::8', '192.0.2.77'], 10)
    expect_list(watch, ['192.0.2.77'], 10)
    # A link to a valid file is refused (O_NOFOLLOW), nothing applied.
    other = ctx.path('elsewhere.v4')
    _state_file(other, 'eth7', 4, 600, [(148, _v4('192.0.2.7'))])
    (state / 'eth7.v4').symlink_to(other)
    watch.wait_log('eth7.v4: rejected: cannot read', 10)
    # Interface in the file differing from its name.
    _state_file(state / 'eth6.v4', 'eth5', 4, 600, [(148, _v4('192.0.2.6'))])
    watch.wait_log('eth6.v4: rejected: interface or family differs', 10)
    # Writable by others: treated as empty until fixed.
    state.chmod(0o777)
    watch.signal(signal.SIGHUP)
    expect_list(watch, [], 10)
    watch.wait_log('ignored: writable by group or others', 10)
    state.chmod(0o755)
    watch.signal(signal.SIGHUP)
    expect_list(watch, ['192.0.2.77'], 10)
    if any(c['address'] in ('192.0.2.7', '192.0.2.6')
           for ev in watch.events for c in ev['candidates']):
        raise TestFailure(f'a refused file was applied: {watch.events}')
    watch.stop(10)

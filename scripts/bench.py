#!/usr/bin/env python3
"""dotsgw benchmarks: measures in one run, prints one table (target,
measured, PASS/MISS) and writes bench/results/<date>.json and latest.json.

Run through scripts/bench, which builds build-bench/ (release). Phases:

  rate       relayed mitigation PUT+response rate and latency through
             dotsgw versus directly to the upstream dots-test-server, with
             1, 16 and 64 requests in flight, plain UDP->UDP and
             DTLS->DTLS, direct and relayed runs interleaved (bench/loadgen).
  sessions   1k, 5k, 10k concurrent DTLS-PSK downstream clients with
             heartbeats every 30 s: dotsgw RSS per session, idle CPU,
             handshakes accepted per second while they open.
  storm      the time to re-establish 5,000 sessions after a gateway
             restart (clients notice the close and reconnect themselves).
  admission  the core's cost to admit a mitigation request with 100k active
             (bench/bench-admission, no I/O).
  fdprobe    a check: 1,100 clients in map mode with a DTLS upstream (one
             socket per upstream session; libcoap 4.3.1 GnuTLS cannot go
             past FD_SETSIZE).

Everything runs on loopback on this machine: load generator, gateway and
upstream share its cores, and whatever else runs here competes (the
system's CPU use by other processes is recorded for each phase).

    bench.py --build DIR [--only rate,sessions,storm,admission,fdprobe]
             [--duration 5] [--reps 3] [--sessions 1000,5000,10000]
             [--idle-window 60] [--storm 5000] [--profile] [--quick]
"""

import argparse
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'test' / 'integration'))

import harness  # noqa: E402

TICK = os.sysconf('SC_CLK_TCK')
PAGE_KB = os.sysconf('SC_PAGE_SIZE') // 1024
GW_PSK = ('dotsgw', 'bench-gateway-key')
RATE_PSK = ('bench', 'bench-client-key')
# One loadgen process holds at most this many DTLS sessions: libcoap 4.3.1
# (GnuTLS) select()s on client sockets and aborts past FD_SETSIZE.
SESSIONS_PER_PROC = 900
# libcoap ignores new DTLS peers while 100 handshakes are in progress on
# an endpoint (COAP_DEFAULT_MAX_HANDSHAKE_SESSIONS): the opening phases
# keep all loadgens together below that.
OPEN_WINDOW_TOTAL = 64


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------
# /proc

def proc_cpu_s(pid):
    """utime + stime of pid in seconds (None when gone)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_kb(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_fds(pid):
    try:
        return len(os.listdir(f'/proc/{pid}/fd'))
    except OSError:
        return None


def udp_rcvbuf_errors():
    """System-wide UDP datagrams dropped on full receive buffers."""
    try:
        with open('/proc/net/snmp') as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for head, vals in zip(lines, lines[1:]):
        if head.startswith('Udp:') and vals.startswith('Udp:'):
            return int(dict(zip(head.split()[1:], vals.split()[1:]))
                       .get('RcvbufErrors', 0))
    return None


def udp_socket_drops(port):
    """Datagrams dropped by the UDP sockets bound to local port (the
    'drops' column of /proc/net/udp and udp6)."""
    total = 0
    for name in ('/proc/net/udp', '/proc/net/udp6'):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if int(parts[1].rsplit(':', 1)[1], 16) == port:
                        total += int(parts[-1])
        except (OSError, ValueError, IndexError, StopIteration):
            pass
    return total


def system_busy_s():
    """CPU seconds the whole system spent busy (all cores)."""
    with open('/proc/stat') as f:
        parts = f.readline().split()
    v = [int(x) for x in parts[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / TICK


class CpuWindow:
    """CPU use of some processes and of the rest of the system over a
    wall-clock window."""

    def __init__(self, pids):
        self.pids = list(pids)
        self.t0 = time.monotonic()
        self.sys0 = system_busy_s()
        self.cpu0 = {p: proc_cpu_s(p) or 0.0 for p in self.pids}
        self.rcvbuf0 = udp_rcvbuf_errors()

    def add(self, pid):
        """A process started after the window opened (counted from 0)."""
        self.pids.append(pid)
        self.cpu0[pid] = 0.0

    def finish(self):
        wall = time.monotonic() - self.t0
        per = {}
        for p in self.pids:
            c = proc_cpu_s(p)
            per[p] = ((c if c is not None else self.cpu0[p]) - self.cpu0[p])
        busy = system_busy_s() - self.sys0
        return {
            'wall_s': wall,
            'pids': self.pids,
            'cpu_s': per,
            'core_pct': {p: 100.0 * v / wall for p, v in per.items()},
            'system_busy_cores': busy / wall,
            # What the rest of the machine used meanwhile (others share it).
            'others_cores': max(0.0, busy - sum(per.values())) / wall,
            # System-wide (other users' tests count too).
            'udp_rcvbuf_drops': (udp_rcvbuf_errors() or 0) -
            (self.rcvbuf0 or 0),
        }


# ---------------------------------------------------------------------------
# Processes

class Proc:
    """A child process; stdout parsed as JSON lines (events) unless
    discarded; stderr to a file."""

    def __init__(self, name, args, logdir, json_stdout=True, discard_after=0):
        self.name = name
        self.args = [str(a) for a in args]
        self.stderr_path = Path(logdir) / f'{name}.stderr.log'
        self.events = []
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        self._err = open(self.stderr_path, 'wb')
        self.popen = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self._err, start_new_session=True)
        self.t_start = time.monotonic()
        self._discard_after = discard_after
        self._json = json_stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def pid(self):
        return self.popen.pid

    def _read(self):
        fd = self.popen.stdout.fileno()
        n = 0
        buf = b''
        while True:
            if not self._json and n >= self._discard_after:
                # The test server prints one JSON line per request: drop
                # them in big reads (cheap) once what we need is in.
                if not os.read(fd, 1 << 20):
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            while b'\n' in buf:
                line, buf = buf.split(b'\n', 1)
                n += 1
                text = line.decode('utf-8', 'replace')
                ev = None
                if text.startswith('{'):
                    try:
                        ev = json.loads(text)
                    except ValueError:
                        ev = None
                with self.cond:
                    self.lines.append(text)
                    if isinstance(ev, dict):
                        ev['_rx'] = time.monotonic()
                        self.events.append(ev)
                    self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_event(self, pred, timeout, since=0, what='event'):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev in self.events[since:]:
                    if pred(ev):
                        return ev
                if self.eof:
                    raise BenchError(f'{self.name}: exited before {what}'
                                     f'{self.tail()}')
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f'{self.name}: no {what} within '
                                     f'{timeout:g} s{self.tail()}')
                self.cond.wait(min(left, 1.0))

    def nevents(self):
        with self.cond:
            return len(self.events)

    def last(self, kind):
        with self.cond:
            for ev in reversed(self.events):
                if ev.get('event') == kind:
                    return ev
        return None

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors='replace')
        except OSError:
            return ''

    def tail(self, n=15):
        lines = self.stderr_text().splitlines()[-n:]
        rc = self.popen.poll()
        state = 'running' if rc is None else f'exit {rc}'
        return f' ({state}); stderr tail:\n  ' + '\n  '.join(lines)

    def wait_log(self, pattern, timeout, what=None):
        """Polls the stderr file for a line matching pattern."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.stderr_text().splitlines():
                if rx.search(line):
                    return time.monotonic(), line
            if self.popen.poll() is not None:
                raise BenchError(f'{self.name}: exited before '
                                 f'{what or pattern}{self.tail()}')
            if time.monotonic() > deadline:
                raise BenchError(f'{self.name}: no {what or pattern} within '
                                 f'{timeout:g} s{self.tail()}')
            time.sleep(0.01)

    def alive(self):
        return self.popen.poll() is None

    def stop(self, timeout=30):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(30)
        self._thread.join(10)
        self._err.close()
        if self._json and self.lines:
            # Keep what it said, for a post-mortem.
            path = self.stderr_path.with_name(f'{self.name}.stdout.log')
            with self.cond:
                path.write_text('\n'.join(self.lines) + '\n')
        return self.popen.returncode


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = Path(args.build).resolve()
        self.tmp = Path(args.tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.procs = []
        self.results = {}
        self.profiles = {}

    def bin(self, rel):
        p = self.build / rel
        if not os.access(p, os.X_OK):
            raise BenchError(f'{p} is not built')
        return p

    def spawn(self, name, args, **kw):
        p = Proc(name, args, self.tmp, **kw)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            try:
                p.stop(10)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass

    # -- peers ---------------------------------------------------------------

    def start_server(self, transport, name, extra=()):
        port = harness.free_port()
        args = [self.bin('test/peers/dots-test-server'),
                '--listen', f'127.0.0.1:{port}', '--transport', transport,
                '--notify-interval-ms', '60000', '--status-delay-ms', '500',
                *extra]
        if transport == 'dtls':
            args += ['--psk-id', GW_PSK[0], '--psk-key', GW_PSK[1]]
        p = self.spawn(name, args, json_stdout=False, discard_after=1)
        p.wait_event(lambda e: e.get('event') == 'listening', 10,
                     what='listening')
        p.port = port
        return p

    def write_gw_config(self, name, listen, upstream, clients, port):
        ups = {'name': 'provider', 'address': '127.0.0.1', 'port': port,
               'transport': upstream, 'heartbeat-interval': 30,
               'missing-hb-allowed': 5, 'reconnect-min': 1,
               'reconnect-max': 10}
        if upstream == 'dtls':
            ups.update({'psk-identity': GW_PSK[0], 'psk-key': GW_PSK[1]})
        dn_port = harness.free_port()
        cfg = {
            'gateway': {'mode': 'map', 'log-level': 'info', 'id': 'bench-gw',
                        'insecure-lab': upstream == 'udp' or listen == 'udp'},
            'server': {'listen': ({'transport': listen,
                                   'address': '127.0.0.1',
                                   'port': dn_port},)},
            'clients': tuple(clients),
            'upstreams': (ups,),
        }
        if self.args.udp_rcvbuf is not None:
            cfg['server']['udp-receive-buffer'] = self.args.udp_rcvbuf
        path = self.tmp / f'{name}.conf'
        harness.write_gateway_config(path, cfg)
        return path, dn_port

    def start_gateway(self, name, conf, timeout=120):
        p = self.spawn(name, [self.bin('gateway/dotsgw'), '-c', conf])
        t_ready, _ = p.wait_log(r'\bready\b', timeout, 'ready')
        p.t_ready = t_ready
        return p

    def loadgen(self, name, args, **kw):
        return self.spawn(name, [self.bin('bench/loadgen'), *args], **kw)

    def perf(self, pid, seconds, name, cmd=None):
        """perf record (DWARF call graphs: the release build has no frame
        pointers) on pid for seconds, or on cmd; keeps the report (self
        time by symbol, then inclusive time) in the results directory."""
        data = self.tmp / f'{name}.perf.data'
        rec = ['perf', 'record', '-F', '499', '--call-graph', 'dwarf,16384',
               '-o', str(data)]
        try:
            if cmd:
                subprocess.run(rec + [str(c) for c in cmd],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=3600)
            else:
                subprocess.run(rec + ['-p', str(pid), '--', 'sleep',
                                      str(seconds)],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               timeout=seconds + 60)
            rep_self = subprocess.run(
                ['perf', 'report', '-i', str(data), '--no-children',
                 '--stdio', '--percent-limit', '1', '-g', 'none',
                 '--sort', 'dso,symbol'], capture_output=True, text=True,
                timeout=600).stdout
            rep_incl = subprocess.run(
                ['perf', 'report', '-i', str(data), '--children', '--stdio',
                 '--percent-limit', '3', '-g', 'none', '--sort', 'symbol'],
                capture_output=True, text=True, timeout=600).stdout
        except (OSError, subprocess.SubprocessError) as e:
            self.profiles[name] = f'perf failed: {e}'
            return
        finally:
            try:
                data.unlink()
            except OSError:
                pass

        def top(rep, n):
            return [ln.rstrip() for ln in rep.splitlines()
                    if ln.strip() and not ln.startswith('#')][:n]
        self.profiles[name] = {'self': top(rep_self, 25),
                               'inclusive': top(rep_incl, 40)}
        out = Path(self.args.out) / f'profile-{name}.txt'
        out.write_text('# self time\n' + rep_self +
                       '\n# inclusive time\n' + rep_incl)
        log(f'  profile {name}: {out}')

    # -- (a) rate ---------------------------------------------------------------

    def phase_rate(self):
        a = self.args
        res = {'duration_s': a.duration, 'warmup_s': a.warmup,
               'reps': a.reps, 'points': []}
        for tr in ('udp', 'dtls'):
            srv = self.start_server(tr, f'rate-server-{tr}')
            client = {'name': 'bench', 'upstream': 'provider',
                      'psk-identity': RATE_PSK[0], 'psk-key': RATE_PSK[1],
                      'allowed-prefixes': ['10.0.0.0/8']}
            conf, dn_port = self.write_gw_config(f'rate-{tr}', tr, tr,
                                                 [client], srv.port)
            gw = self.start_gateway(f'rate-gw-{tr}', conf)
            for n in (1, 16, 64):
                point = {'transport': tr, 'inflight': n, 'direct': [],
                         'relayed': [], 'gw_core_pct': [],
                         'server_core_pct': [], 'system_busy_cores': [],
                         'others_cores': [], 'cpu_us_per_req': []}
                for rep in range(a.reps):
                    order = ('direct', 'relayed') if rep % 2 == 0 else \
                        ('relayed', 'direct')
                    for path in order:
                        r, cpu = self.rate_run(tr, n, path, srv, gw, dn_port,
                                               rep)
                        point[path].append(r)
                        if path == 'relayed':
                            point['gw_core_pct'].append(
                                cpu['core_pct'][gw.pid])
                        point['server_core_pct'].append(
                            cpu['core_pct'][srv.pid])
                        point['system_busy_cores'].append(
                            cpu['system_busy_cores'])
                        point['others_cores'].append(cpu['others_cores'])
                        # CPU time each process spent per completed
                        # request: where the cost is.
                        done = r['rate'] * cpu['wall_s']
                        point['cpu_us_per_req'].append({
                            'path': path, 'rep': rep,
                            'gateway': cpu['cpu_s'][gw.pid] * 1e6 / done
                            if path == 'relayed' else None,
                            'server': cpu['cpu_s'][srv.pid] * 1e6 / done,
                            'loadgen': cpu['cpu_s'][cpu['pids'][2]] * 1e6 /
                            done})
                self.summarise_point(point)
                res['points'].append(point)
                log(f'  {tr} N={n}: direct {point["direct_rate"]:.0f}/s '
                    f'p50 {point["direct_p50_us"]:.0f} us, relayed '
                    f'{point["relayed_rate"]:.0f}/s p50 '
                    f'{point["relayed_p50_us"]:.0f} us '
                    f'(ratio {point["ratio"]:.2f}, gw '
                    f'{statistics.median(point["gw_core_pct"]):.0f}% core)')
            if a.profile:
                lg = self.loadgen(f'rate-prof-{tr}', self.rate_args(
                    tr, 64, 'relayed', srv, dn_port, 99, a.duration + 4))
                time.sleep(2)
                self.perf(gw.pid, max(2, a.duration - 1), f'rate-{tr}-64-gw')
                lg.stop(a.duration + 30)
            res.setdefault('gateway_log_lines', {})[tr] = len(
                gw.stderr_text().splitlines())
            gw.stop()
            srv.stop()
        self.results['rate'] = res

    def rate_args(self, tr, n, path, srv, dn_port, rep, duration=None):
        a = self.args
        if path == 'direct':
            target, psk = srv.port, GW_PSK
        else:
            target, psk = dn_port, RATE_PSK
        args = ['--connect', f'127.0.0.1:{target}', '--transport', tr,
                '--inflight', n, '--duration', duration or a.duration,
                # A cuid per run: the gateway looks a mid up among its
                # cuid's mitigations, so each run sees exactly N of them.
                '--warmup', a.warmup, '--cuid', f'{path}-{tr}-n{n}-r{rep}',
                '--mid-base', 1]
        if tr == 'dtls':
            args += ['--psk-id', psk[0], '--psk-key', psk[1]]
        return args

    def rate_run(self, tr, n, path, srv, gw, dn_port, rep):
        a = self.args
        lg = self.loadgen(f'rate-{tr}-{n}-{path}-{rep}',
                          self.rate_args(tr, n, path, srv, dn_port, rep))
        # Measure CPU over the measurement window only.
        time.sleep(a.warmup + 0.3)
        cpu = CpuWindow([gw.pid, srv.pid, lg.pid])
        ev = lg.wait_event(lambda e: e.get('event') == 'rate',
                           a.duration + 60, what='rate result')
        c = cpu.finish()
        lg.stop(30)
        ok = sum(v for k, v in ev.get('codes', {}).items()
                 if k.startswith('2.'))
        if not ev['completed'] or ok != ev['completed']:
            raise BenchError(f'{tr} N={n} {path}: {ev}')
        return ev, c

    @staticmethod
    def summarise_point(p):
        med = statistics.median
        for path in ('direct', 'relayed'):
            runs = p[path]
            p[f'{path}_rate'] = med(r['rate'] for r in runs)
            for k in ('p50_us', 'p99_us', 'p999_us'):
                p[f'{path}_{k}'] = med(r[k] for r in runs)
            p[f'{path}_timeouts'] = sum(r['timeouts'] for r in runs)
        # Ratios and added latency per rep (direct and relayed of one rep
        # ran back to back), then the median.
        pairs = list(zip(p['direct'], p['relayed']))
        p['ratio'] = med(r['rate'] / d['rate'] for d, r in pairs)
        p['added_p50_us'] = med(r['p50_us'] - d['p50_us'] for d, r in pairs)
        cpu = p['cpu_us_per_req']
        for who in ('gateway', 'server', 'loadgen'):
            for path in ('direct', 'relayed'):
                v = [c[who] for c in cpu if c['path'] == path and
                     c[who] is not None]
                if v:
                    p[f'{path}_{who}_cpu_us'] = med(v)

    # -- (b, c) sessions, handshakes, storm -----------------------------------

    def session_clients(self, n):
        return [{'name': f'c{i:05d}', 'upstream': 'provider',
                 'psk-identity': f'c{i:05d}', 'psk-key': f'bench-key-{i:05d}',
                 'allowed-prefixes': ['10.0.0.0/8']} for i in range(1, n + 1)]

    def open_sessions(self, first, count, dn_port, tag, cpu):
        """Starts loadgen processes for clients first..first+count-1 (their
        CPU counted in cpu) and waits until all are up. Returns (procs,
        seconds)."""
        nproc = -(-count // SESSIONS_PER_PROC)
        window = max(4, OPEN_WINDOW_TOTAL // nproc)
        sizes = [count // nproc + (1 if i < count % nproc else 0)
                 for i in range(nproc)]
        procs, start = [], first
        t0 = time.monotonic()
        for i, size in enumerate(sizes):
            procs.append(self.loadgen(f'sess-{tag}-{i}', [
                '--connect', f'127.0.0.1:{dn_port}', '--transport', 'dtls',
                '--sessions', size, '--first', start, '--hb', self.args.hb,
                '--window', window]))
            cpu.add(procs[-1].pid)
            start += size
        limit = self.args.open_timeout
        for p in procs:
            p.wait_event(lambda e: e.get('event') == 'all-up',
                         max(1, limit - (time.monotonic() - t0)),
                         what='all sessions up')
        # The loadgens' own clock is CLOCK_MONOTONIC, as time.monotonic().
        t1 = max(p.last('all-up')['t'] for p in procs)
        return procs, t1 - t0

    def phase_sessions(self):
        """Steps of concurrent sessions on one gateway; the reconnect storm
        runs when the step total equals --storm (before larger steps, which
        may not hold). A step whose sessions do not all come up within
        --open-timeout is recorded as failed and ends the phase."""
        a = self.args
        want_storm = 'storm' in a.only
        steps = sorted(set(a.sessions) | ({a.storm} if want_storm else set()))
        nmax = max(steps)
        res = {'steps': [], 'heartbeat_s': a.hb, 'upstream': a.sessions_upstream,
               'idle_window_s': a.idle_window, 'open_timeout_s': a.open_timeout,
               'sessions_per_loadgen_process': SESSIONS_PER_PROC}
        self.results['sessions'] = res
        srv = self.start_server(a.sessions_upstream, 'sess-server',
                                extra=('--heartbeat-ms', str(a.hb * 1000)))
        conf, dn_port = self.write_gw_config(
            'sessions', 'dtls', a.sessions_upstream,
            self.session_clients(nmax), srv.port)
        self.sess_dn_port = dn_port
        # Configuration load time (duplicate checks are quadratic).
        t = time.monotonic()
        r = subprocess.run([self.bin('gateway/dotsgw'), '--check-config',
                            conf], capture_output=True, text=True, timeout=600)
        res['config_clients'] = nmax
        res['config_check_s'] = time.monotonic() - t
        if r.returncode != 0:
            raise BenchError(f'config invalid: {r.stderr[-2000:]}')
        gw = self.start_gateway('sess-gw', conf, timeout=600)
        res['gateway_start_to_ready_s'] = gw.t_ready - gw.t_start
        log(f'  config with {nmax} clients: check {res["config_check_s"]:.2f} s,'
            f' start to ready {res["gateway_start_to_ready_s"]:.2f} s')
        time.sleep(2)
        rss0 = proc_rss_kb(gw.pid)
        fds0 = proc_fds(gw.pid)
        idle0 = CpuWindow([gw.pid])
        time.sleep(min(10, a.idle_window))
        base_idle = idle0.finish()
        res['baseline'] = {'rss_kb': rss0, 'fds': fds0,
                           'idle_core_pct': base_idle['core_pct'][gw.pid]}
        all_procs, groups = [], []
        have, prev_rss = 0, rss0
        try:
            for target in steps:
                step = self.session_step(gw, srv, dn_port, have, target,
                                         all_procs, groups, rss0, fds0,
                                         prev_rss)
                res['steps'].append(step)
                if step.get('failed'):
                    break
                have, prev_rss = target, step['rss_kb']
                if want_storm and target == a.storm:
                    gw = self.storm(gw, conf, all_procs, srv)
                    prev_rss = proc_rss_kb(gw.pid)
                if not gw.alive():
                    raise BenchError('gateway died' + gw.tail())
        finally:
            for p in all_procs:
                p.stop(30)
            gw.stop(60)
            srv.stop()

    def session_step(self, gw, srv, dn_port, have, target, all_procs, groups,
                     rss0, fds0, prev_rss):
        a = self.args
        add = target - have
        log(f'  opening {add} sessions ({have} -> {target})')
        drops0 = udp_socket_drops(dn_port)
        cpu = CpuWindow([gw.pid, srv.pid])
        t0 = time.monotonic()
        try:
            procs, secs = self.open_sessions(have + 1, add, dn_port,
                                             f'{target}', cpu)
        except BenchError as e:
            # Not all up in time: say how far it got and in what state.
            c = cpu.finish()
            procs = [p for p in self.procs if p.name.startswith(
                f'sess-{target}-')]
            all_procs += procs
            up = sum(p.last('progress')['up'] for p in all_procs
                     if p.last('progress'))
            step = {'sessions': target, 'opened': add, 'failed': str(e)[:300],
                    'open_s': time.monotonic() - t0, 'sessions_up': up,
                    'gateway_alive': gw.alive(),
                    'open_gw_core_pct': c['core_pct'][gw.pid],
                    'open_others_cores': c['others_cores'],
                    'open_udp_rcvbuf_drops': c['udp_rcvbuf_drops'],
                    'rss_kb': proc_rss_kb(gw.pid),
                    'gw_fds': proc_fds(gw.pid),
                    'gw_sessions_lost': len(re.findall(
                        r'session lost', gw.stderr_text()))}
            log(f'    NOT all up after {step["open_s"]:.0f} s: {up} of '
                f'{target} up, gw {step["open_gw_core_pct"]:.0f}% core, '
                f'{step["gw_sessions_lost"]} sessions declared lost by the '
                f'gateway so far')
            if a.profile:
                self.perf(gw.pid, 20, f'overload-{target}-gw')
            return step
        c = cpu.finish()
        all_procs += procs
        groups.append((target, procs))
        step = {'sessions': target, 'opened': add, 'open_s': secs,
                'handshakes_per_s': add / secs if secs > 0 else None,
                'open_gw_core_pct': c['core_pct'][gw.pid],
                'open_server_core_pct': c['core_pct'][srv.pid],
                'open_system_busy_cores': c['system_busy_cores'],
                'open_others_cores': c['others_cores'],
                'open_udp_rcvbuf_drops': c['udp_rcvbuf_drops'],
                # Datagrams the gateway's DTLS listener dropped (receive
                # buffer full): each costs a client a DTLS retransmission
                # timeout (1 s, then 2 s...).
                'open_listener_drops': udp_socket_drops(dn_port) - drops0,
                'open_loadgen_core_pct': sum(
                    c['core_pct'][p.pid] for p in procs),
                'loadgen_processes': len(procs),
                'handshake_ms': {k: max(p.last('all-up').get(k, 0)
                                        for p in procs)
                                 for k in ('hs_p50_ms', 'hs_p99_ms',
                                           'hs_max_ms')},
                'loadgen_failures': sum(p.last('all-up')['failures']
                                        for p in procs)}
        log(f'    {add} up in {secs:.2f} s ({step["handshakes_per_s"]:.0f}'
            f'/s; gw {step["open_gw_core_pct"]:.0f}%, loadgens '
            f'{step["open_loadgen_core_pct"]:.0f}%, others '
            f'{100 * step["open_others_cores"]:.0f}% of a core; handshake '
            f'p50/p99 {step["handshake_ms"]["hs_p50_ms"]:.0f}/'
            f'{step["handshake_ms"]["hs_p99_ms"]:.0f} ms; listener drops '
            f'{step["open_listener_drops"]})')
        # Let each client's upstream session open and configure: one
        # socket per upstream session (map mode). dotsgw learns of a
        # session at its first message (libcoap 4.3.1 GnuTLS raises no
        # DTLS_CONNECTED for server sessions), i.e. within one heartbeat.
        deadline = time.monotonic() + a.hb + 60
        while time.monotonic() < deadline:
            if (proc_fds(gw.pid) or 0) >= fds0 + target:
                break
            if not gw.alive():
                raise BenchError('gateway died' + gw.tail())
            time.sleep(0.5)
        step['gw_fds'] = proc_fds(gw.pid)
        time.sleep(3)
        hb0 = self.hb_counts(all_procs)
        drops0 = udp_socket_drops(dn_port)
        cpu = CpuWindow([gw.pid, srv.pid] + [p.pid for p in all_procs])
        time.sleep(a.idle_window)
        c = cpu.finish()
        step['idle_listener_drops'] = udp_socket_drops(dn_port) - drops0
        hb1 = self.hb_counts(all_procs)
        rss = proc_rss_kb(gw.pid)
        step.update({
            'idle_gw_core_pct': c['core_pct'][gw.pid],
            'idle_server_core_pct': c['core_pct'][srv.pid],
            'idle_loadgen_core_pct': sum(c['core_pct'][p.pid]
                                         for p in all_procs),
            'idle_system_busy_cores': c['system_busy_cores'],
            'idle_others_cores': c['others_cores'],
            'idle_udp_rcvbuf_drops': c['udp_rcvbuf_drops'],
            'rss_kb': rss,
            'rss_per_session_kb': (rss - rss0) / target,
            'rss_per_added_session_kb': (rss - prev_rss) / add,
            'hb_sent': hb1[0] - hb0[0], 'hb_ok': hb1[1] - hb0[1],
            'gw_hb_received': hb1[2] - hb0[2],
            'sessions_up_after': sum(p.last('progress')['up']
                                     for p in all_procs
                                     if p.last('progress')),
        })
        log(f'    idle {a.idle_window:g} s: gw {step["idle_gw_core_pct"]:.2f}%'
            f' core, RSS {rss / 1024:.1f} MB '
            f'({step["rss_per_session_kb"]:.1f} KB/session, '
            f'{step["rss_per_added_session_kb"]:.1f} per added one), '
            f'heartbeats {step["hb_ok"]}/{step["hb_sent"]} answered')
        if a.profile and target == max(a.sessions):
            self.perf(gw.pid, 20, f'idle-{target}-gw')
        return step

    @staticmethod
    def hb_counts(procs):
        s = [0, 0, 0]
        for p in procs:
            ev = p.last('progress')
            if ev:
                s[0] += ev['hb_sent']
                s[1] += ev['hb_ok']
                s[2] += ev['hb_rx']
        return s

    def storm(self, gw, conf, keep, srv):
        """Restarts the gateway under the current sessions twice: clients
        paced by their --window (at most 90 handshakes in progress, under
        libcoap's cap of 100 per endpoint), then unpaced (each client
        retries on its own backoff alone). Returns the gateway left
        running."""
        have = self.results['sessions']['steps'][-1]['sessions']
        runs = []
        for mode in ('paced', 'unpaced'):
            if mode == 'unpaced':
                for p in keep:
                    p.popen.send_signal(signal.SIGUSR1)
            gw, r = self.storm_once(gw, conf, keep, srv, have, mode)
            runs.append(r)
            time.sleep(5)
        self.results['storm'] = {'sessions': have, 'runs': runs,
                                 'client_backoff': '100 ms doubling to 2 s, '
                                 'jittered 50-100%'}
        return gw

    def storm_once(self, gw, conf, keep, srv, have, mode):
        a = self.args
        log(f'  storm ({mode}): restarting the gateway with {have} sessions')
        marks = {p: p.nevents() for p in keep}
        t_term = time.monotonic()
        gw.stop(60)
        t_down = time.monotonic()
        gw2 = self.start_gateway(f'storm-gw-{mode}', conf, timeout=600)
        t_ready = gw2.t_ready
        cpu = CpuWindow([gw2.pid, srv.pid] + [p.pid for p in keep])
        prof = None
        if a.profile and mode == 'unpaced':
            prof = threading.Thread(target=self.perf,
                                    args=(gw2.pid, 5, 'storm-gw'))
            prof.start()
        ups = []
        for p in keep:
            ups.append(p.wait_event(
                lambda e: e.get('event') == 'all-up' and e['_rx'] > t_term,
                a.open_timeout, since=marks[p], what='all-up after restart'))
        c = cpu.finish()
        if prof:
            prof.join()
        t_done = max(e['t'] for e in ups)
        res = {'mode': mode, 'sessions': have,
               'gateway_stop_s': t_down - t_term,
               'gateway_start_to_ready_s': t_ready - gw2.t_start,
               'ready_to_all_up_s': t_done - t_ready,
               'restart_to_all_up_s': t_done - t_term,
               'handshakes_per_s': have / (t_done - t_ready)
               if t_done > t_ready else None,
               'gw_core_pct': c['core_pct'][gw2.pid],
               'loadgen_core_pct': sum(c['core_pct'][p.pid] for p in keep),
               'others_cores': c['others_cores'],
               'udp_rcvbuf_drops': c['udp_rcvbuf_drops'],
               # The new gateway's listener: its counter started at 0.
               'listener_drops': udp_socket_drops(self.sess_dn_port),
               'handshake_ms': {k: max(e.get(k, 0) for e in ups)
                                for k in ('hs_p50_ms', 'hs_p99_ms',
                                          'hs_max_ms')},
               'loadgen_failures': sum(e['failures'] for e in ups)}
        log(f'    {have} sessions back {res["ready_to_all_up_s"]:.2f} s after '
            f'"ready" ({res["restart_to_all_up_s"]:.2f} s after SIGTERM; gw '
            f'{res["gw_core_pct"]:.0f}% core; handshake p50/p99 '
            f'{res["handshake_ms"]["hs_p50_ms"]:.0f}/'
            f'{res["handshake_ms"]["hs_p99_ms"]:.0f} ms; listener drops '
            f'{res["listener_drops"]})')
        return gw2, res

    # -- a check: map mode with a DTLS upstream past FD_SETSIZE ---------------

    def phase_fdprobe(self):
        """Map mode opens one upstream session, hence one socket, per
        client. libcoap 4.3.1 (GnuTLS) select()s on DTLS client sockets
        (receive_timeout() in coap_gnutls.c), so a socket numbered 1024
        or more aborts the process. This opens N > 1000 downstream
        sessions with a DTLS upstream and reports whether dotsgw lives."""
        a = self.args
        n = a.fdprobe
        srv = self.start_server('dtls', 'probe-server')
        conf, dn_port = self.write_gw_config(
            'probe', 'dtls', 'dtls', self.session_clients(n), srv.port)
        gw = self.start_gateway('probe-gw', conf, timeout=120)
        res = {'clients': n}
        procs, start = [], 1
        per = -(-n // 2)
        for i in range(2):
            size = min(per, n - start + 1)
            procs.append(self.loadgen(f'probe-{i}', [
                '--connect', f'127.0.0.1:{dn_port}', '--transport', 'dtls',
                '--sessions', size, '--first', start, '--hb', 2,
                '--window', 40]))
            start += size
        deadline = time.monotonic() + 120
        max_fds = 0
        while time.monotonic() < deadline and gw.alive():
            max_fds = max(max_fds, proc_fds(gw.pid) or 0)
            if max_fds >= n + 20:
                time.sleep(10)  # and keep running a while
                break
            time.sleep(0.5)
        alive = gw.alive()
        res.update({'gateway_alive': alive, 'max_fds_seen': max_fds,
                    'exit': gw.popen.poll()})
        if not alive:
            last = [ln for ln in gw.stderr_text().splitlines()
                    if 'level=' not in ln]
            res['stderr'] = last[-3:]
        log(f'  {n} clients, DTLS upstream: gateway '
            f'{"alive" if alive else "DIED (exit %s)" % res["exit"]}, '
            f'{max_fds} fds seen {res.get("stderr", "")}')
        for p in procs:
            p.stop(30)
        gw.stop(30)
        srv.stop()
        self.results['fdprobe'] = res

    # -- (d) admission -----------------------------------------------------------

    def phase_admission(self):
        a = self.args
        runs = []
        for name, args in (
                ('main', ['--mitigations', a.mitigations, '--clients', 100,
                          '--cuids', 10, '--samples', a.samples]),
                ('one-cuid', ['--mitigations', 3000, '--clients', 1,
                              '--cuids', 1, '--samples', 1000])):
            t = time.monotonic()
            r = subprocess.run([self.bin('bench/bench-admission'),
                                *map(str, args)], capture_output=True,
                               text=True, timeout=3600)
            if r.returncode != 0:
                raise BenchError(f'bench-admission failed: {r.stderr}')
            ev = json.loads(r.stdout.strip().splitlines()[-1])
            ev['name'] = name
            ev['wall_s'] = time.monotonic() - t
            runs.append(ev)
            log(f'  {name}: {ev["mitigations"]} active over {ev["cuids"]} '
                f'cuids: p50 {ev["total"]["p50_us"]:.1f} us, p99 '
                f'{ev["total"]["p99_us"]:.1f} us, p99.9 '
                f'{ev["total"]["p999_us"]:.1f} us')
        if a.profile:
            self.perf(None, None, 'admission', cmd=[
                self.bin('bench/bench-admission'), '--mitigations',
                a.mitigations, '--samples', 3000])
        self.results['admission'] = {'runs': runs}

    # -- targets and the table -----------------------------------------------------

    def targets(self):
        rows = []
        r = self.results

        def row(name, target, measured, ok, unit=''):
            rows.append({'name': name, 'target': target,
                         'measured': measured, 'unit': unit,
                         'pass': None if ok is None else bool(ok)})

        for p in r.get('rate', {}).get('points', []):
            tr = f'{p["transport"]}->{p["transport"]}'
            if p['inflight'] == 64:
                row(f'relayed/direct rate, 64 in flight, {tr}', '>= 50%',
                    f'{100 * p["ratio"]:.0f}% ({p["relayed_rate"]:.0f} vs '
                    f'{p["direct_rate"]:.0f}/s)', p['ratio'] >= 0.5)
            if p['inflight'] == 1:
                row(f'added median latency, 1 in flight, {tr}', '<= 100 us',
                    f'{p["added_p50_us"]:.0f} us ({p["relayed_p50_us"]:.0f} vs '
                    f'{p["direct_p50_us"]:.0f})', p['added_p50_us'] <= 100)
        s = r.get('sessions')
        if s and s['steps']:
            ok = [st for st in s['steps'] if not st.get('failed')]
            bad = [st for st in s['steps'] if st.get('failed')]
            want = max(st['sessions'] for st in s['steps'])
            if bad:
                f = bad[0]
                last = ok[-1] if ok else None
                extra = ''
                if last:
                    est = (last['rss_kb'] + (want - last['sessions']) *
                           last['rss_per_added_session_kb']) / 1024
                    extra = (f'; {last["rss_kb"] / 1024:.0f} MB at '
                             f'{last["sessions"]}, ~{est:.0f} MB by '
                             'extrapolation')
                row(f'RSS with {want} DTLS sessions', '<= 300 MB',
                    f'not held ({f["sessions_up"]} of {want} up after '
                    f'{f["open_s"]:.0f} s){extra}', None)
                row(f'idle CPU with {want} sessions, {s["heartbeat_s"]} s '
                    'heartbeats', '< 5% of a core',
                    f'not held: gw at {f["open_gw_core_pct"]:.0f}% of a core '
                    f'opening them' + (
                        f'; {last["idle_gw_core_pct"]:.1f}% idle at '
                        f'{last["sessions"]}' if last else ''), False)
            if ok:
                st = ok[-1]
                big = st['sessions']
                row(f'RSS with {big} DTLS sessions', '<= 300 MB' if
                    big >= 10000 else '(at 10k)',
                    f'{st["rss_kb"] / 1024:.0f} MB '
                    f'({st["rss_per_added_session_kb"]:.1f} KB per added '
                    'session)',
                    st['rss_kb'] <= 300 * 1024 if big >= 10000 else None)
                row(f'idle CPU with {big} sessions, {s["heartbeat_s"]} s '
                    'heartbeats', '< 5% of a core' if big >= 10000 else
                    '(at 10k)', f'{st["idle_gw_core_pct"]:.2f}%',
                    st['idle_gw_core_pct'] < 5 if big >= 10000 else None)
                first = ok[0]
                row(f'PSK handshakes/s (0 -> {first["sessions"]} sessions)',
                    '>= 1000/s', f'{first["handshakes_per_s"]:.0f}/s',
                    first['handshakes_per_s'] >= 1000)
        for st in r.get('storm', {}).get('runs', []):
            row(f'reconnect storm ({st["mode"]}): {st["sessions"]} sessions '
                'back after a restart', '(none)',
                f'{st["ready_to_all_up_s"]:.2f} s after ready '
                f'({st["restart_to_all_up_s"]:.2f} s after SIGTERM)', None)
        fp = r.get('fdprobe')
        if fp:
            row(f'check: {fp["clients"]} clients, DTLS upstream (socket '
                'per upstream session)', 'gateway runs',
                'alive' if fp['gateway_alive'] else
                f'aborted (exit {fp["exit"]}) at ~{fp["max_fds_seen"]} fds',
                fp['gateway_alive'])
        ad = r.get('admission')
        if ad:
            m = ad['runs'][0]
            row(f'admission p99 with {m["mitigations"]} active '
                f'({m["mitigations"] // m["cuids"]} per cuid)', '<= 100 us',
                f'{m["total"]["p99_us"]:.1f} us', m['total']['p99_us'] <= 100)
        return rows

    def print_tables(self, rows):
        r = self.results
        if 'rate' in r:
            print('\nCPU time per completed request, us (median of reps):')
            print(f'{"path":<11}{"N":>4} {"loadgen d/r":>13} {"server d/r":>12}'
                  f' {"gateway":>8}')
            for p in r['rate']['points']:
                print(f'{p["transport"] + "->" + p["transport"]:<11}'
                      f'{p["inflight"]:>4} {p["direct_loadgen_cpu_us"]:>6.1f}/'
                      f'{p["relayed_loadgen_cpu_us"]:<6.1f}'
                      f' {p["direct_server_cpu_us"]:>5.1f}/'
                      f'{p["relayed_server_cpu_us"]:<6.1f}'
                      f' {p["relayed_gateway_cpu_us"]:>8.1f}')
            print('\nrate (median of reps; PUT refreshes, NON):')
            print(f'{"path":<11}{"N":>4} {"direct/s":>10} {"relayed/s":>10}'
                  f' {"ratio":>6} {"p50 d/r us":>14} {"p99 d/r us":>16}'
                  f' {"p99.9 d/r us":>16} {"gw core":>8} {"others":>7}')
            for p in r['rate']['points']:
                print(f'{p["transport"] + "->" + p["transport"]:<11}'
                      f'{p["inflight"]:>4} {p["direct_rate"]:>10.0f} '
                      f'{p["relayed_rate"]:>10.0f} {p["ratio"]:>6.2f} '
                      f'{p["direct_p50_us"]:>6.0f}/{p["relayed_p50_us"]:<7.0f}'
                      f' {p["direct_p99_us"]:>7.0f}/{p["relayed_p99_us"]:<8.0f}'
                      f' {p["direct_p999_us"]:>7.0f}/{p["relayed_p999_us"]:<8.0f}'
                      f' {statistics.median(p["gw_core_pct"]):>7.0f}%'
                      f' {100 * statistics.median(p["others_cores"]):>6.0f}%')
        if 'sessions' in r:
            s = r['sessions']
            print(f'\nsessions (DTLS-PSK downstream, {s["upstream"]} upstream,'
                  f' heartbeats {s["heartbeat_s"]} s; config of '
                  f'{s["config_clients"]} clients: check '
                  f'{s["config_check_s"]:.2f} s, start to ready '
                  f'{s["gateway_start_to_ready_s"]:.2f} s; baseline RSS '
                  f'{s["baseline"]["rss_kb"] / 1024:.1f} MB):')
            print('(KB/sess: RSS growth per session added in the step; '
                  'open %: gateway/loadgens/other processes, of one core)')
            print(f'{"sessions":>9} {"open s":>7} {"hs/s":>6} {"open gw/lg/oth %":>17}'
                  f' {"RSS MB":>7} {"KB/sess":>8} {"idle gw %":>9} {"srv %":>6}'
                  f' {"oth %":>6} {"hb ok/sent":>12} {"fds":>6}')
            for st in s['steps']:
                if st.get('failed'):
                    print(f'{st["sessions"]:>9}  NOT all up: {st["sessions_up"]}'
                          f' up after {st["open_s"]:.0f} s, gw '
                          f'{st["open_gw_core_pct"]:.0f}% of a core, RSS '
                          f'{(st["rss_kb"] or 0) / 1024:.1f} MB, '
                          f'{st["gw_sessions_lost"]} sessions declared lost'
                          ' by the gateway')
                    continue
                print(f'{st["sessions"]:>9} {st["open_s"]:>7.2f} '
                      f'{st["handshakes_per_s"]:>6.0f} '
                      f'{st["open_gw_core_pct"]:>7.0f}/'
                      f'{st["open_loadgen_core_pct"]:.0f}/'
                      f'{100 * st["open_others_cores"]:<5.0f} '
                      f'{st["rss_kb"] / 1024:>7.1f} '
                      f'{st["rss_per_added_session_kb"]:>8.1f} '
                      f'{st["idle_gw_core_pct"]:>9.2f} '
                      f'{st["idle_server_core_pct"]:>6.1f} '
                      f'{100 * st["idle_others_cores"]:>6.0f} '
                      f'{st["hb_ok"]:>6}/{st["hb_sent"]:<6}'
                      f'{st["gw_fds"]:>6}')
        if 'admission' in r:
            print('\nadmission (core only; total = core_on_dn_request + '
                  'core_on_up_response for the 2.01):')
            for m in r['admission']['runs']:
                print(f'  {m["name"]:<9} {m["mitigations"]:>7} active over '
                      f'{m["cuids"]:>5} cuids: total p50/p99/p99.9 '
                      f'{m["total"]["p50_us"]:.1f}/{m["total"]["p99_us"]:.1f}/'
                      f'{m["total"]["p999_us"]:.1f} us (request '
                      f'{m["dn"]["p99_us"]:.1f}, answer {m["up"]["p99_us"]:.1f}'
                      f' at p99); {m["install_per_s"]:.0f} installs/s')
        print('\ntargets:')
        w = max([len(x['name']) for x in rows] + [10])
        print(f'{"measurement":<{w}}  {"target":<15} {"measured":<40} result')
        for x in rows:
            res = {True: 'PASS', False: 'MISS', None: '-'}[x['pass']]
            print(f'{x["name"]:<{w}}  {x["target"]:<15} {x["measured"]:<40} '
                  f'{res}')


def git_rev():
    """HEAD, with '+dirty' when tracked files differ from it."""
    try:
        head = subprocess.run(['git', '-C', str(ROOT), 'rev-parse', 'HEAD'],
                              capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(['git', '-C', str(ROOT), 'status',
                                '--porcelain', '--untracked-files=no'],
                               capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ('+dirty' if dirty else '')


def host_info():
    model = None
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return {'cpus': os.cpu_count(), 'cpu_model': model,
            'kernel': platform.release(), 'loadavg_start': os.getloadavg()}


def parse_list(s):
    return [int(x) for x in s.split(',') if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument('--build', required=True)
    ap.add_argument('--only',
                    default='rate,sessions,storm,admission,fdprobe')
    ap.add_argument('--duration', type=float, default=5.0)
    ap.add_argument('--warmup', type=float, default=1.0)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--sessions', type=parse_list, default=[1000, 5000, 10000])
    ap.add_argument('--sessions-upstream', choices=('udp', 'dtls'),
                    default='udp')
    ap.add_argument('--hb', type=int, default=30)
    ap.add_argument('--idle-window', type=float, default=60.0)
    ap.add_argument('--storm', type=int, default=5000)
    ap.add_argument('--udp-rcvbuf', type=int, default=None,
                    help="the gateway's server.udp-receive-buffer (bytes; "
                    "0: the kernel's default); unset: the gateway's default")
    ap.add_argument('--open-timeout', type=float, default=300.0,
                    help='a step whose sessions are not all up by then is '
                    'recorded as failed')
    ap.add_argument('--fdprobe', type=int, default=1100,
                    help='clients for the DTLS-upstream FD_SETSIZE check')
    ap.add_argument('--mitigations', type=int, default=100000)
    ap.add_argument('--samples', type=int, default=20000)
    ap.add_argument('--profile', action='store_true',
                    help='also record perf profiles (outside the measured '
                    'windows) into the results directory')
    ap.add_argument('--quick', action='store_true',
                    help='a short smoke run: small sizes, one rep')
    ap.add_argument('--out', default=str(ROOT / 'bench' / 'results'))
    ap.add_argument('--tmp', default=None)
    args = ap.parse_args()
    args.only = set(args.only.split(','))
    if args.quick:
        args.duration, args.warmup, args.reps = 2.0, 0.5, 1
        args.sessions, args.storm, args.idle_window = [300, 600], 600, 5.0
        args.mitigations, args.samples = 10000, 2000
    if 'storm' in args.only and 'sessions' not in args.only:
        args.only.add('sessions')
    stamp = datetime.datetime.now().strftime('%Y-%m-%dT%H%M%S')
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.tmp is None:
        args.tmp = str(Path('/tmp') / f'dotsgw-bench-{stamp}')
    b = Bench(args)
    t0 = time.monotonic()
    rev = git_rev()  # what was built (at the start: others may commit)
    info = host_info()
    log(f'dotsgw bench: {info["cpus"]} cpus ({info["cpu_model"]}), load '
        f'{info["loadavg_start"][0]:.2f}; logs in {args.tmp}')
    errors = []
    try:
        for phase in ('rate', 'sessions', 'admission', 'fdprobe'):
            if phase not in args.only:
                continue
            log(f'== {phase}')
            try:
                getattr(b, f'phase_{phase}')()
            except BenchError as e:
                errors.append(f'{phase}: {e}')
                log(f'{phase} FAILED: {e}')
                b.stop_all()
    finally:
        b.stop_all()
    info['loadavg_end'] = os.getloadavg()
    rows = b.targets()
    out = {'date': stamp, 'git': rev, 'build': str(b.build),
           'host': info, 'wall_s': time.monotonic() - t0,
           'command': ' '.join(sys.argv), 'targets': rows, 'errors': errors,
           'profiles': b.profiles, **b.results}
    for name in (f'{stamp}.json', 'latest.json'):
        (Path(args.out) / name).write_text(json.dumps(out, indent=1) + '\n')
    b.print_tables(rows)
    for e in errors:
        print(f'ERROR {e}')
    print(f'\nwall time {out["wall_s"]:.0f} s; load average '
          f'{info["loadavg_start"][0]:.2f} -> {info["loadavg_end"][0]:.2f}; '
          f'results in {Path(args.out) / (stamp + ".json")}')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())

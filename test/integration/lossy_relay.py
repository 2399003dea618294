#!/usr/bin/env python3
"""A lossy UDP relay: a userspace stand-in for tc netem (Python 3 standard
library only).

It listens on one UDP address and forwards every datagram to a target,
and the target's answers back, like a NAT: each client address gets its
own socket towards the target, so the target sees one 5-tuple per client
(as a DTLS server needs). Each direction is impaired on its own:

  loss       a datagram is dropped with probability P
  duplicate  a datagram that survives is sent twice with probability D
  reorder    a copy is held back for about --reorder-delay-ms (uniform in
             [0.5, 1.5] times it) with probability R, so later datagrams
             overtake it
  delay      every copy is also held for --delay-ms (a base latency)

Decisions come from one random.Random(seed): a run is reproducible as far
as the order in which datagrams reach the relay is. "fwd" is the
direction towards the target, "rev" the one back to the clients.

Output: JSON lines on stdout (the integration harness reads them):
  {"event": "listening", "name": N, "port": P, ...parameters}
  {"event": "stats", "name": N, "fwd": {...}, "rev": {...}, "flows": n}
Counters per direction: rx (datagrams received), dropped, duplicated,
reordered (copies held back), tx (copies sent), send_errors.

Commands, one per line on stdin:
  stats                       print the counters now
  set KEY VALUE [DIR]         change loss|duplicate|reorder (a probability)
                              or reorder-delay-ms|delay-ms (ms), for both
                              directions or DIR = fwd|rev
  quit                        print the counters and exit
SIGTERM and SIGINT also print the counters and exit 0.

Usage:
  lossy_relay.py --listen HOST:PORT --target HOST:PORT [--loss P]
      [--duplicate D] [--reorder R] [--reorder-delay-ms MS] [--delay-ms MS]
      [--loss-fwd P] [--loss-rev P] [--seed N] [--name NAME]
Port 0 in --listen picks a free port (reported in "listening").
"""

import argparse
import errno
import heapq
import ipaddress
import json
import os
import random
import selectors
import signal
import socket
import sys
import time

MAX_DATAGRAM = 65535
MAX_FLOWS = 4096          # client addresses tracked at most
PROB_KEYS = ('loss', 'duplicate', 'reorder')
MS_KEYS = ('reorder-delay-ms', 'delay-ms')
DIRECTIONS = ('fwd', 'rev')


def split_hostport(text):
    """'HOST:PORT' or '[V6]:PORT' -> (host, port); raises ValueError."""
    if text.startswith('['):
        host, sep, port = text[1:].partition(']:')
        if not sep:
            raise ValueError(f'bad address {text!r}')
    else:
        host, sep, port = text.rpartition(':')
        if not sep:
            raise ValueError(f'bad address {text!r}')
    ipaddress.ip_address(host)
    port = int(port)
    if not 0 <= port <= 65535:
        raise ValueError(f'bad port in {text!r}')
    return host, port


def family_of(host):
    return (socket.AF_INET6 if ipaddress.ip_address(host).version == 6
            else socket.AF_INET)


def probability(text):
    v = float(text)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f'{text} is not a probability')
    return v


def milliseconds(text):
    v = float(text)
    if not 0.0 <= v <= 60000.0:
        raise ValueError(f'{text} ms is out of range 0..60000')
    return v


class Impairment:
    """The parameters and counters of one direction."""

    def __init__(self, loss=0.0, duplicate=0.0, reorder=0.0,
                 reorder_delay_ms=30.0, delay_ms=0.0):
        self.params = {'loss': loss, 'duplicate': duplicate,
                       'reorder': reorder,
                       'reorder-delay-ms': reorder_delay_ms,
                       'delay-ms': delay_ms}
        self.counters = dict.fromkeys(
            ('rx', 'dropped', 'duplicated', 'reordered', 'tx',
             'send_errors'), 0)

    def plan(self, rng):
        """Decides the fate of one datagram: a list of delays in seconds,
        one per copy to send (empty: dropped)."""
        p = self.params
        self.counters['rx'] += 1
        if rng.random() < p['loss']:
            self.counters['dropped'] += 1
            return []
        copies = 1
        if rng.random() < p['duplicate']:
            copies = 2
            self.counters['duplicated'] += 1
        delays = []
        for _ in range(copies):
            d = p['delay-ms']
            if rng.random() < p['reorder']:
                d += p['reorder-delay-ms'] * rng.uniform(0.5, 1.5)
                self.counters['reordered'] += 1
            delays.append(d / 1000.0)
        return delays


class Relay:
    """The relay itself; run() serves until quit, SIGTERM or SIGINT."""

    def __init__(self, listen, target, fwd, rev, seed, name='relay',
                 out=sys.stdout, commands=True):
        self.listen = listen
        self.target = target
        self.dirs = {'fwd': fwd, 'rev': rev}
        self.rng = random.Random(seed)
        self.seed = seed
        self.name = name
        self.out = out
        self.sel = selectors.DefaultSelector()
        self.front = socket.socket(family_of(listen[0]), socket.SOCK_DGRAM)
        self.front.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.front.bind(listen)
        self.front.setblocking(False)
        self.port = self.front.getsockname()[1]
        self.sel.register(self.front, selectors.EVENT_READ, ('front', None))
        self.flows = {}      # client address -> socket towards the target
        self.timers = []     # (due, seq, sock, data, addr, direction)
        self.seq = 0
        self.running = True
        self.stdin_buf = b''
        # Signals wake the loop through this pair (PEP 475 would otherwise
        # resume select() with no datagram to wake it).
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, ('wake', None))
        self.commands = commands
        if commands:
            try:
                os.set_blocking(0, False)
                self.sel.register(0, selectors.EVENT_READ, ('stdin', None))
            except (OSError, ValueError):
                self.commands = False

    # output -----------------------------------------------------------------

    def emit(self, obj):
        obj.setdefault('name', self.name)
        try:
            self.out.write(json.dumps(obj, sort_keys=True) + '\n')
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass

    def stats(self):
        return {'event': 'stats', 'name': self.name,
                'fwd': dict(self.dirs['fwd'].counters),
                'rev': dict(self.dirs['rev'].counters),
                'flows': len(self.flows)}

    def announce(self):
        self.emit({'event': 'listening', 'port': self.port,
                   'target': f'{self.target[0]}:{self.target[1]}',
                   'seed': self.seed,
                   'fwd': dict(self.dirs['fwd'].params),
                   'rev': dict(self.dirs['rev'].params)})

    # datagrams ------------------------------------------------------------

    def flow_socket(self, client):
        s = self.flows.get(client)
        if s is not None:
            return s
        if len(self.flows) >= MAX_FLOWS:
            return None
        s = socket.socket(family_of(self.target[0]), socket.SOCK_DGRAM)
        s.setblocking(False)
        try:
            s.connect(self.target)
        except OSError:
            s.close()
            return None
        self.flows[client] = s
        self.sel.register(s, selectors.EVENT_READ, ('back', client))
        return s

    def transmit(self, direction, sock, data, addr):
        counters = self.dirs[direction].counters
        try:
            if addr is None:
                sock.send(data)
            else:
                sock.sendto(data, addr)
            counters['tx'] += 1
        except OSError:
            # The target is not listening (ECONNREFUSED from an earlier
            # ICMP error), or a buffer is full: a lost datagram either way.
            counters['send_errors'] += 1

    def impair(self, direction, sock, data, addr):
        now = time.monotonic()
        for delay in self.dirs[direction].plan(self.rng):
            if delay <= 0:
                self.transmit(direction, sock, data, addr)
            else:
                self.seq += 1
                heapq.heappush(self.timers, (now + delay, self.seq, sock,
                                             data, addr, direction))

    def on_front(self):
        for _ in range(256):  # bounded batch, then let timers run
            try:
                data, client = self.front.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                continue
            s = self.flow_socket(client)
            if s is not None:
                self.impair('fwd', s, data, None)

    def on_back(self, sock, client):
        for _ in range(256):
            try:
                data = sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH,
                               errno.ENETUNREACH):
                    continue
                return
            self.impair('rev', self.front, data, client)

    def run_timers(self):
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, sock, data, addr, direction = heapq.heappop(self.timers)
            self.transmit(direction, sock, data, addr)

    # commands -------------------------------------------------------------

    def command(self, line):
        words = line.split()
        if not words:
            return
        if words[0] == 'stats':
            self.emit(self.stats())
        elif words[0] == 'quit':
            self.running = False
        elif words[0] == 'set' and len(words) in (3, 4):
            key, value = words[1], words[2]
            dirs = DIRECTIONS if len(words) == 3 else (words[3],)
            try:
                if any(d not in DIRECTIONS for d in dirs):
                    raise ValueError('direction must be fwd or rev')
                if key in PROB_KEYS:
                    v = probability(value)
                elif key in MS_KEYS:
                    v = milliseconds(value)
                else:
                    raise ValueError(f'unknown key {key}')
            except ValueError as e:
                self.emit({'event': 'command', 'ok': False,
                           'command': line, 'error': str(e)})
                return
            for d in dirs:
                self.dirs[d].params[key] = v
            self.emit({'event': 'command', 'ok': True, 'command': line})
        else:
            self.emit({'event': 'command', 'ok': False, 'command': line,
                       'error': 'usage: stats | set KEY VALUE [fwd|rev] '
                                '| quit'})

    def on_stdin(self):
        try:
            chunk = os.read(0, 4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b''
        if not chunk:
            # EOF: no more commands, keep relaying.
            self.sel.unregister(0)
            self.commands = False
            return
        self.stdin_buf += chunk
        if len(self.stdin_buf) > 65536:
            self.stdin_buf = b''
            return
        while b'\n' in self.stdin_buf:
            line, self.stdin_buf = self.stdin_buf.split(b'\n', 1)
            self.command(line.decode('utf-8', 'replace').strip())

    # loop -----------------------------------------------------------------

    def stop(self, *_):
        self.running = False

    def run(self):
        self.announce()
        while self.running:
            timeout = None
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - time.monotonic())
            try:
                events = self.sel.select(timeout)
            except InterruptedError:
                events = []
            for key, _ in events:
                kind, client = key.data
                if kind == 'front':
                    self.on_front()
                elif kind == 'back':
                    self.on_back(key.fileobj, client)
                elif kind == 'wake':
                    try:
                        self.wake_r.recv(4096)
                    except OSError:
                        pass
                else:
                    self.on_stdin()
            self.run_timers()
        self.emit(self.stats())
        self.close()

    def close(self):
        for s in self.flows.values():
            s.close()
        self.front.close()
        self.wake_r.close()
        self.wake_w.close()
        self.sel.close()


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description='Lossy UDP relay (a userspace stand-in for tc netem).')
    ap.add_argument('--listen', required=True, type=split_hostport,
                    help='HOST:PORT to listen on (port 0: any)')
    ap.add_argument('--target', required=True, type=split_hostport,
                    help='HOST:PORT to forward to')
    ap.add_argument('--loss', type=probability, default=0.0)
    ap.add_argument('--loss-fwd', type=probability, default=None,
                    help='loss towards the target (default --loss)')
    ap.add_argument('--loss-rev', type=probability, default=None,
                    help='loss back to the clients (default --loss)')
    ap.add_argument('--duplicate', type=probability, default=0.0)
    ap.add_argument('--reorder', type=probability, default=0.0)
    ap.add_argument('--reorder-delay-ms', type=milliseconds, default=30.0)
    ap.add_argument('--delay-ms', type=milliseconds, default=0.0)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--name', default='relay')
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def impairment(loss):
        return Impairment(loss=args.loss if loss is None else loss,
                          duplicate=args.duplicate, reorder=args.reorder,
                          reorder_delay_ms=args.reorder_delay_ms,
                          delay_ms=args.delay_ms)

    relay = Relay(args.listen, args.target, impairment(args.loss_fwd),
                  impairment(args.loss_rev), args.seed, name=args.name)
    signal.signal(signal.SIGTERM, relay.stop)
    signal.signal(signal.SIGINT, relay.stop)
    signal.set_wakeup_fd(relay.wake_w.fileno(), warn_on_full_buffer=False)
    relay.run()
    return 0


if __name__ == '__main__':
    sys.exit(main())

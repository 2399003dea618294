#!/usr/bin/env python3
"""Runs the dotsgw integration tests.

Discovers test/integration/test_*.py; every function test_*(ctx) in them is
one test, run in its own process (and process group) with a timeout: the
module's TIMEOUT (default 120 s), or the function's own TIMEOUT attribute,
times the build's timeout scale (3 under sanitizers). A test passes when it
returns, is skipped when it raises harness.Skip, and fails otherwise, or
when any process it started left a sanitizer report.

Each test gets a fresh temp dir (ctx.tmp) holding its logs; it is removed
when the test passes or is skipped and kept, and printed, when it fails.
Certificates are shared by the tests of one run.

Prints one PASS/FAIL/SKIP line per test, the log of each failure, and a
closing line "N passed, N failed[, N skipped]"; exits 1 if any test failed.

    run.py [--build DIR] [-k SUBSTRING]... [--label L] [--keep] [--list]
"""

import argparse
import faulthandler
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_TIMEOUT = 120
EXIT_SKIP = 77
RESULT_FILE = '.result.json'

sys.path.insert(0, str(HERE))
import harness  # noqa: E402


class Terminated(Exception):
    pass


def _on_sigterm(signo, frame):
    raise Terminated()


def discover(patterns):
    """Returns (tests, errors): tests as (module, function, timeout) in
    file and source order; errors as (module, traceback) for modules that
    cannot be imported."""
    tests, errors = [], []
    for path in sorted(HERE.glob('test_*.py')):
        modname = path.stem
        try:
            mod = importlib.import_module(modname)
        except BaseException:
            if not patterns or any(p in modname or modname in p
                                   for p in patterns):
                errors.append((modname, traceback.format_exc()))
            continue
        default = getattr(mod, 'TIMEOUT', DEFAULT_TIMEOUT)
        funcs = [f for n, f in vars(mod).items()
                 if n.startswith('test_') and callable(f) and
                 getattr(f, '__module__', None) == modname]
        funcs.sort(key=lambda f: f.__code__.co_firstlineno)
        for f in funcs:
            full = f'{modname}.{f.__name__}'
            if patterns and not any(p in full for p in patterns):
                continue
            tests.append((modname, f.__name__,
                          float(getattr(f, 'TIMEOUT', default))))
    return tests, errors


def group_alive(pgid):
    """True while a live (not zombie) process is in process group pgid.
    Zombies matter: in a container whose init does not reap orphans they
    stay in the group forever, so kill(-pgid, 0) alone would say alive."""
    try:
        entries = os.listdir('/proc')
    except OSError:
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', 'rb') as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold anything.
        fields = stat[stat.rfind(b')') + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and \
                fields[0] not in (b'Z', b'X'):
            return True
    return False


def kill_group(pgid, grace):
    """SIGTERM the process group, SIGKILL it after grace seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        # Polling is the only way to learn that a whole process group,
        # not just our child, is gone: bounded by grace.
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def print_log(title, path):
    print(f'----- {title} -----')
    try:
        text = path.read_text(encoding='utf-8', errors='replace')
    except OSError:
        text = ''
    print(text.rstrip('\n') or '(empty)')
    print(f'----- end of {title} -----')


def run_one(args, label, modname, func, timeout, cert_dir, tmp_root):
    """Runs one test in a child process, prints its result line (and its
    log when it failed); returns its status."""
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f'dotsgw-{modname}.{func}-',
                                dir=tmp_root))
    log = tmp / 'test.log'
    cmd = [sys.executable, str(Path(__file__).resolve()), '--child',
           modname, func, '--build', str(args.build), '--tmp', str(tmp),
           '--cert-dir', str(cert_dir), '--timeout', str(timeout)]
    timed_out = False
    with open(log, 'wb') as out:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, cwd=ROOT,
                                 start_new_session=True)
        try:
            rc = child.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(child.pid, 5)
            rc = child.wait(30)
        except BaseException:
            kill_group(child.pid, 2)
            child.wait(30)
            raise
        # Whatever the test left running (it should have left nothing).
        kill_group(child.pid, 2)

    status, reason = 'FAIL', ''
    try:
        result = json.loads((tmp / RESULT_FILE).read_text())
        status, reason = result['status'], result.get('reason', '')
    except (OSError, ValueError, KeyError):
        reason = f'test process exited with {rc} and no result'
    if timed_out:
        status, reason = 'FAIL', f'timed out after {timeout:g} s'
    elif ((status == 'PASS' and rc != 0) or
          (status == 'SKIP' and rc != EXIT_SKIP)):
        status, reason = 'FAIL', f'test process exited with {rc}'

    took = time.monotonic() - start
    print(f'{status} {label}{modname}.{func} ({took:.1f}s)' +
          (f': {reason}' if reason else ''), flush=True)
    if status == 'FAIL':
        print_log(f'{modname}.{func} log', log)
        print(f'kept: {tmp}')
    elif args.keep:
        print(f'kept: {tmp}')
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.flush()
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default=str(ROOT / 'build'),
                    help='meson build directory (default: build)')
    ap.add_argument('-k', dest='patterns', action='append', default=[],
                    metavar='SUBSTRING',
                    help='run only tests whose module.function contains it'
                    ' (repeatable)')
    ap.add_argument('--label', default='',
                    help='prefix for result lines, e.g. asan')
    ap.add_argument('--keep', action='store_true',
                    help='keep the temp dirs of passing tests too')
    ap.add_argument('--list', action='store_true', help='list tests only')
    ap.add_argument('--child', nargs=2, metavar=('MODULE', 'FUNCTION'),
                    help=argparse.SUPPRESS)
    ap.add_argument('--tmp', help=argparse.SUPPRESS)
    ap.add_argument('--cert-dir', help=argparse.SUPPRESS)
    ap.add_argument('--timeout', type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.build = Path(args.build).resolve()

    if args.child:
        return child_main(args)

    tests, errors = discover(args.patterns)
    if args.list:
        for modname, func, timeout in tests:
            print(f'{modname}.{func} (timeout {timeout:g} s)')
        return 0

    signal.signal(signal.SIGTERM, _on_sigterm)
    label = f'[{args.label}] ' if args.label else ''
    scale = harness.timeout_scale(args.build)
    passed = failed = skipped = 0
    tmp_root = os.environ.get('DOTSGW_TEST_TMPDIR') or None
    cert_dir = Path(tempfile.mkdtemp(prefix='dotsgw-certs-', dir=tmp_root))
    try:
        for modname, tb in errors:
            print(f'FAIL {label}{modname} (import)')
            print(tb.rstrip('\n'))
            failed += 1
        for modname, func, timeout in tests:
            status = run_one(args, label, modname, func, timeout * scale,
                             cert_dir, tmp_root)
            if status == 'PASS':
                passed += 1
            elif status == 'SKIP':
                skipped += 1
            else:
                failed += 1
    except (KeyboardInterrupt, Terminated):
        print(f'FAIL {label}interrupted')
        failed += 1
    finally:
        if failed:
            print(f'kept: {cert_dir} (certificates)')
        else:
            shutil.rmtree(cert_dir, ignore_errors=True)

    summary = f'{passed} passed, {failed} failed'
    if skipped:
        summary += f', {skipped} skipped'
    print(summary, flush=True)
    return 1 if failed else 0


def child_main(args):
    """Runs one test function in this process (run.py --child)."""
    modname, funcname = args.child
    tmp = Path(args.tmp)
    # On a hang, dump every thread's stack to the log shortly before the
    # parent kills us, so the log shows where the test was waiting.
    if args.timeout and args.timeout > 4:
        faulthandler.dump_traceback_later(args.timeout - 2, exit=False)
    status, reason = 'PASS', ''
    ctx = harness.Context(args.build, tmp, cert_dir=args.cert_dir)
    print(f'test {modname}.{funcname}: build {ctx.build}, tmp {ctx.tmp}, '
          f'sanitized {ctx.sanitized}, timeout scale {ctx.scale:g}',
          flush=True)
    try:
        mod = importlib.import_module(modname)
        getattr(mod, funcname)(ctx)
    except harness.Skip as e:
        status, reason = 'SKIP', str(e)
    except BaseException as e:
        traceback.print_exc()
        status = 'FAIL'
        reason = (str(e).split('\n', 1)[0] or type(e).__name__)[:200]
    finally:
        problems = ctx.close()
    if problems:
        for p in problems:
            print(p)
        if status != 'FAIL':
            status = 'FAIL'
            reason = problems[0].split('\n', 1)[0][:200]
    faulthandler.cancel_dump_traceback_later()
    sys.stdout.flush()
    sys.stderr.flush()
    (tmp / RESULT_FILE).write_text(json.dumps({'status': status,
                                               'reason': reason}))
    return {'PASS': 0, 'SKIP': EXIT_SKIP}.get(status, 1)


if __name__ == '__main__':
    sys.exit(main())

"""Full-scale loss measurement for dotsgw (issue 4, part 2). Run through
scripts/loss.

For each loss rate (default 30 % then 50 %, on both links, both
directions, with 5 % duplication and 10 % reordering) it sends REQUESTS
mitigation requests through dotsgw, one per client session, WAVE sessions
at a time, and measures the fraction whose 2.01 (or 2.04) and whose
status 2 reach the client within WINDOW seconds, with their latency
distributions. The machinery, the gateway configuration and the caveats
are those of test/integration/test_loss.py (read its docstring).

Prints one summary per rate and the causes of the failures (from dotsgw's
debug log), and writes everything to bench/results/loss-<UTC date>.json
(or --out). Exit status: 0 every target met (all at 30 %, >= 99 % at
50 %; other rates have no target), 1 a target missed, 2 the measurement
itself failed.

    scripts/loss [--requests 200] [--wave 50] [--loss 30,50]
                 [--mechanism auto|netem|relay] [--window 30] [--seed 1]
                 [--out FILE] [--keep] [--build DIR]
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'test' / 'integration'))

import harness  # noqa: E402
import test_loss  # noqa: E402

TARGETS = {30: 1.0, 50: 0.99}


def percents(text):
    out = []
    for part in text.split(','):
        v = float(part)
        if not 0 <= v < 100:
            raise argparse.ArgumentTypeError(f'{part}: a percentage 0..99')
        out.append(v)
    return out


def git_commit():
    try:
        r = subprocess.run(['git', '-C', str(ROOT), 'rev-parse', 'HEAD'],
                           capture_output=True, text=True, timeout=10)
        commit = r.stdout.strip() if r.returncode == 0 else None
        r = subprocess.run(['git', '-C', str(ROOT), 'status', '--porcelain',
                            '--untracked-files=no'],
                           capture_output=True, text=True, timeout=10)
        return commit, bool(r.stdout.strip()) if r.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def fmt_dist(d):
    if not d.get('n'):
        return 'none'
    return (f'p50 {d["p50"]:.1f} p90 {d["p90"]:.1f} p99 {d["p99"]:.1f} '
            f'max {d["max"]:.1f} s (n={d["n"]})')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default=str(ROOT / 'build'))
    ap.add_argument('--requests', type=int, default=200)
    ap.add_argument('--wave', type=int, default=test_loss.WAVE)
    ap.add_argument('--loss', type=percents, default=[30.0, 50.0],
                    help='comma-separated percentages (default 30,50)')
    ap.add_argument('--mechanism', default='auto',
                    choices=('auto', 'netem', 'relay'))
    ap.add_argument('--window', type=float, default=test_loss.WINDOW_S)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--out', help='default: bench/results/loss-<date>.json')
    ap.add_argument('--keep', action='store_true',
                    help='keep the logs of every run')
    args = ap.parse_args()
    if args.requests < 1 or args.wave < 1:
        ap.error('--requests and --wave must be at least 1')

    build = Path(args.build).resolve()
    now = datetime.now(timezone.utc)
    out = Path(args.out) if args.out else (
        ROOT / 'bench' / 'results' /
        f'loss-{now.strftime("%Y-%m-%dT%H%M%SZ")}.json')
    try:
        mech, why = test_loss.choose_mechanism(args.mechanism)
    except harness.Skip as e:
        print(f'loss: {e}', file=sys.stderr)
        return 2
    print(f'loss: {test_loss.describe_mechanism(mech, why)}', flush=True)

    top = Path(tempfile.mkdtemp(prefix='dotsgw-loss-'))
    commit, dirty = git_commit()
    report = {
        'date': now.strftime('%Y-%m-%dT%H:%M:%SZ'),
        'host': platform.node(), 'kernel': platform.release(),
        'cpus': os.cpu_count(), 'git_commit': commit, 'git_dirty': dirty,
        'build': str(build),
        'sanitized': harness.build_is_sanitized(build),
        'mechanism': mech, 'mechanism_note': why,
        'gateway_config': test_loss.GATEWAY_CFG,
        'upstream_config': test_loss.UPSTREAM_CFG,
        'server_args': list(test_loss.SERVER_ARGS),
        'client': {'requests': 'NON, repeated until answered',
                   'args': list(test_loss.CLIENT_ARGS),
                   'step_timeout_ms': test_loss.STEP_TIMEOUT_MS},
        'targets': {f'{k}%': v for k, v in TARGETS.items()},
        'runs': [],
    }
    status = 0
    failed = False
    try:
        for pct in args.loss:
            tmp = top / f'loss{pct:g}'
            ctx = harness.Context(build, tmp)
            res = None
            try:
                res = test_loss.run_loss(ctx, mech, why, pct / 100,
                                         args.requests, wave=args.wave,
                                         window=args.window,
                                         seed=args.seed + int(pct))
            except Exception:
                traceback.print_exc()
                failed = True
            finally:
                problems = ctx.close()
            if problems:
                for p in problems:
                    print(p)
                failed = True
            if res is None:
                print(f'loss {pct:g}%: the measurement failed; logs in {tmp}')
                args.keep = True
                continue
            res['sanitizer_problems'] = problems
            report['runs'].append(res)
            target = TARGETS.get(int(pct)) if pct == int(pct) else None
            if target is not None:
                met = (res['fraction_accepted'] >= target and
                       res['fraction_status2'] >= target)
                res['target'] = target
                res['target_met'] = met
                if not met:
                    status = 1
    finally:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + '\n')
        if args.keep:
            print(f'logs kept in {top}')
        else:
            shutil.rmtree(top, ignore_errors=True)

    print()
    print(f'mechanism: {test_loss.describe_mechanism(mech, why)}')
    head_rsp = f'2.01/2.04 <= {args.window:g}s'
    head_st = f'status 2 <= {args.window:g}s'
    print(f'{"loss":>5}  {"requests":>8}  {head_rsp:>16}  {head_st:>15}  '
          'target')
    for res in report['runs']:
        n = res['requests']
        t = res.get('target')
        verdict = ('-' if t is None else
                   f'{t:.0%} {"met" if res["target_met"] else "MISSED"}')
        acc, st = res['accepted_in_window'], res['status2_in_window']
        print(f'{res["loss"]:>5.0%}  {n:>8}  '
              f'{acc:>5}/{n:<4} {res["fraction_accepted"]:>6.1%}  '
              f'{st:>5}/{n:<4}{res["fraction_status2"]:>6.1%}  {verdict}')
        print(f'       answer latency:   {fmt_dist(res["response_latency_s"])}'
              f' ({res["accepted_2_01"]} x 2.01, {res["accepted_2_04"]} x '
              '2.04 in the window)')
        print(f'       status 2 latency: {fmt_dist(res["status2_latency_s"])}')
        if res['failure_causes']:
            print('       failure causes: ' + '; '.join(
                f'{c}: {k}' for c, k in sorted(
                    res['failure_causes'].items(), key=lambda x: -x[1])))
    print(f'results: {out}')
    if failed:
        return 2
    return status


if __name__ == '__main__':
    sys.exit(main())

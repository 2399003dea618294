"""scripts/demo's topology runs to completion (the README's first command,
minus set-up and build, which scripts/test has done)."""

import sys

from harness import TestFailure

TIMEOUT = 90


def test_demo_runs(ctx):
    res = ctx.run([sys.executable, ctx.src / 'scripts' / 'demo.py',
                   '--build', ctx.build, '--seconds', '2'], timeout=60,
                  name='demo')
    out = res.stdout if isinstance(res.stdout, str) else res.stdout.decode()
    if res.rc != 0 or 'demo succeeded' not in out:
        raise TestFailure(f'demo failed (rc {res.rc}):\n{out}\n{res.stderr}')
    for needle in ('2.01 answer to PUT', 'attack-successfully-mitigated',
                   '2.02 answer to DELETE', 'dotsgw -> upstream  PUT'):
        if needle not in out:
            raise TestFailure(f'demo trace lacks {needle!r}:\n{out}')

"""One of several processes started together that race for the same workdir locks
(tests/test_reliability.py): at each round all take `WorkdirLock(dirs[i])` at once."""


def race(dirs, barrier, results, me):
    from jaxdl.errors import UserError
    from jaxdl.train.lock import WorkdirLock

    for i, workdir in enumerate(dirs):
        barrier.wait()
        lock = WorkdirLock(workdir)
        try:
            lock.__enter__()
            won = lock.held
        except UserError:
            won = False
        barrier.wait()  # everyone has tried while the winner holds it
        results.put((i, me, won))
        lock.__exit__(None, None, None)

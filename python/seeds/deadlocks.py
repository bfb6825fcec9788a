# Seed 001 (seeds/001_e61eb7862117a6fc.txt), "ThreadPoolExecutor 96", item 2:
# the two deadlocks of CPython's documentation, one code block in the seed.
# Changes: the import of ThreadPoolExecutor, which the seed leaves out; the
# seed's block lost the documentation's indentation (everything after
# `wait_on_b` is indented under it, which would make it dead code after
# `return 5`), so it is dedented back to the top level; the seed's "And:"
# between the two cases became a comment.
# With CPython's concurrent.futures and with concurrent_futures_rs alike
# (the Python package has none of the Rust crate's deadlock handling, SPEC
# B7) the first case hangs forever, as the seed says: run.py runs the
# program under a time limit and expects wait_on_b and wait_on_a blocked in
# result(). The second case rarely gets to hang when run as a script: the
# main thread ends right after submitting, and a worker that reaches
# executor.submit(pow, 5, 2) after the interpreter began exiting gets
# RuntimeError('cannot schedule new futures after interpreter shutdown'),
# which ends wait_on_future (nobody sees it); only a worker faster than
# that blocks in f.result(). Which happens is a race, in both.
# ruff: noqa
# fmt: off
from concurrent.futures import ThreadPoolExecutor
import time
def wait_on_b():
   time.sleep(5)
   print(b.result())  # b will never complete because it is waiting on a.
   return 5

def wait_on_a():
    time.sleep(5)
    print(a.result())  # a will never complete because it is waiting on b.
    return 6


executor = ThreadPoolExecutor(max_workers=2)
a = executor.submit(wait_on_b)
b = executor.submit(wait_on_a)

# And:

def wait_on_future():
    f = executor.submit(pow, 5, 2)
    # This will never complete because there is only one worker thread and
    # it is executing this function.
    print(f.result())

executor = ThreadPoolExecutor(max_workers=1)
executor.submit(wait_on_future)

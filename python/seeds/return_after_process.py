# Seed 004 (seeds/004_9fc8917e8ab4ac00.txt), after masnun's "A quick
# introduction to the concurrent.futures module", "ProcessPoolExecutor".
# Changes: none. Note the seed has no `if __name__ == '__main__':` guard,
# which CPython's default start method on Linux before 3.14 (fork) forgives.
# ruff: noqa
# fmt: off
from concurrent.futures import ProcessPoolExecutor
from time import sleep

def return_after_5_secs(message):
    sleep(5)
    return message

pool = ProcessPoolExecutor(3)

future = pool.submit(return_after_5_secs, ("hello"))
print(future.done())
sleep(5)
print(future.done())
print("Result: " + future.result())

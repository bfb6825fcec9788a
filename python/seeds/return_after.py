# Seed 004 (seeds/004_9fc8917e8ab4ac00.txt), after masnun's "A quick
# introduction to the concurrent.futures module", "ThreadPoolExecutor".
# Changes: none.
# The seed checks done() after sleeping exactly as long as the task does, so
# whether the second line says True (as the seed's comment has it) is a race
# between the two sleeps, with CPython's module as with ours.
# ruff: noqa
# fmt: off
from concurrent.futures import ThreadPoolExecutor
from time import sleep

def return_after_5_secs(message):
    sleep(5)
    return message

pool = ThreadPoolExecutor(3)

future = pool.submit(return_after_5_secs, ("hello"))
print(future.done()) #False
sleep(5)
print(future.done()) #True
print(future.result())

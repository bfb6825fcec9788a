# Seed 004 (seeds/004_9fc8917e8ab4ac00.txt), "as_completed() & wait()",
# "wait()": wait() with its default return_when=ALL_COMPLETED. The seed then
# describes FIRST_COMPLETED and FIRST_EXCEPTION without code; seed 001
# ("模块函数 369") only tabulates them.
# Changes: none.
# ruff: noqa
# fmt: off
from concurrent.futures import ThreadPoolExecutor, wait, as_completed
from time import sleep
from random import randint

def return_after_5_secs(num):
    sleep(randint(1, 5))
    return "Return of {}".format(num)

pool = ThreadPoolExecutor(5)
futures = []
for x in range(5):
    futures.append(pool.submit(return_after_5_secs, x))

print(wait(futures))

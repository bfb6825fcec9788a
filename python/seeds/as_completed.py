# Seed 004 (seeds/004_9fc8917e8ab4ac00.txt), "as_completed() & wait()",
# "as_completed()".
# Changes: none. The tasks sleep randint(1, 5) seconds, so the order of the
# lines is random; run.py compares them as a set.
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

for x in as_completed(futures):
    print(x.result()) # 先执行完的先输出

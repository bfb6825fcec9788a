# Seed 000 (seeds/000_7229fb4a8c74d04a.txt), "ThreadPoolExecutor", "一个简单的例子";
# the same code is in seed 001 ("submit 33") and seed 002 ("使用方法"), there
# without the import.
# Changes: none; the seed's code, taken out of its Markdown list item.
# ruff: noqa
# fmt: off
from concurrent.futures import ThreadPoolExecutor


with ThreadPoolExecutor(max_workers=1) as executor:
    future = executor.submit(pow, 323, 1235)	# 返回future对象
    print(future.result())

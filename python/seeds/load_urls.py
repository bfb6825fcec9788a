# Seed 000 (seeds/000_7229fb4a8c74d04a.txt), "ThreadPoolExecutor",
# "异步执行请求多个网址"; seed 001 ("ThreadPoolExecutor 例子") and seed 004
# ("Executor.map()", CPython's documentation example) have the same program
# without the `timer` decorator and its imports.
# Changes: none; the seed's code, taken out of its Markdown list item.
# run.py answers these http:// URLs from a local HTTP proxy on 127.0.0.1
# (through the `http_proxy` environment variable, which urllib honours), so
# the program never reaches the internet.
# ruff: noqa
# fmt: off
import concurrent.futures
import urllib.request
from concurrent.futures import ThreadPoolExecutor
import time

def timer(func):
    def deco(*args):
        start_time = time.time()
        func(*args)
        end_time = time.time()
        cost = end_time - start_time
        print("总共耗时：", cost)

    return deco

URLS = ['http://www.foxnews.com/',
        'http://www.cnn.com/',
        'http://europe.wsj.com/',
        'http://www.bbc.co.uk/',
        'http://some-made-up-domain.com/']

# Retrieve a single page and report the URL and contents
def load_url(url, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as conn:
        return conn.read()

# 使用上下文管理器，不需要显示调用shutdown()
with concurrent.futures.ThreadPoolExecutor(max_workers=5) as executor:
    # 创建future对象对应每个url
    future_to_url = {executor.submit(load_url, url, 60): url for url in URLS}
    for future in concurrent.futures.as_completed(future_to_url):
        # 返回future实例的迭代器
        url = future_to_url[future]
        try:
            data = future.result()
        except Exception as exc:
            print('%r generated an exception: %s' % (url, exc))
        else:
            print('%r page is %d bytes' % (url, len(data)))

# Seed 002 (seeds/002_638c34ddae862709.txt), "ThreadPoolExecutor例子".
# Changes: the seed gives this program one line per code block, losing the
# indentation of the `while True:` loop (its `flag = True` ... `break` lines
# are at the left margin, where `break` is a syntax error); it is restored
# as in the seed's ProcessPoolExecutor version of the same program. The
# seed's FORMAT string is broken over two lines (a syntax error inside a
# '...' literal); the line break and the spaces before it are removed. The
# seed's prose lines "输出格式定义" and "创建线程池，池的容量为3" are kept
# as comments, as that version has them.
# ruff: noqa
# fmt: off
import threading
from concurrent import futures
import logging
import time

# 输出格式定义
FORMAT = '%(asctime)-15s\t [%(processName)s:%(threadName)s, %(process)d:%(thread)8d] %(message)s'
logging.basicConfig(level=logging.INFO, format=FORMAT)

def worker(n):
    logging.info('begin to work{}'.format(n))
    time.sleep(5)
    logging.info('finished{}'.format(n))

# 创建线程池，池的容量为3
executor = futures.ThreadPoolExecutor(max_workers=3)
fs = []
for i in range(3):
    future = executor.submit(worker, i)
    fs.append(future)
for i in range(3, 6):
    future = executor.submit(worker, i)
    fs.append(future)
while True:
    time.sleep(2)
    logging.info(threading.enumerate())
    flag = True
    for f in fs: # 判断是否还有未完成任务
        logging.info(f.done())
        flag = flag and f.done()
        # if not flag: # 注释if看的清楚
        #     break
    print('-'*30)
    if flag:
        executor.shutdown() # 清理池，池中线程全部杀掉
        logging.info(threading.enumerate())
        break
# 线程池一旦创建了线程，就不需要频繁清除

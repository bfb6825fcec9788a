# Seed 002 (seeds/002_638c34ddae862709.txt), "ProcessPoolExecutor对象", the
# first program (shutdown() in the polling loop).
# Changes: from the second `future = executor.submit(worker, i)` on, the
# seed's lines lost their indentation (a syntax error after `for ...:`);
# they are indented back into the `for` loop and the
# `if __name__ == '__main__':` block they belong to. The seed's FORMAT
# string is broken over two lines (a syntax error inside a '...' literal);
# the line break and the spaces before it are removed.
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

if __name__ == '__main__':
    # 创建进程池，池的容量为3
    executor = futures.ProcessPoolExecutor(max_workers=3)
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
        for f in fs: # 判断是否还有未完成的任务
            logging.info(f.done())
            flag = flag and f.done()
            # if not flag: # 注释if看的清楚
            #     break

        print('-'*30)

        if flag:
            executor.shutdown() # 清理池。除非不用，不用频繁清理池
            logging.info(threading.enumerate()) # 多进程时看主线程已没有必要了
            break

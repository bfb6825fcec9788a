# Seed 002 (seeds/002_638c34ddae862709.txt), "支持上下文管理", "使用上下文改造
# 上面的例子，增加返回计算的结果": the ProcessPoolExecutor program in a `with`
# block, its tasks returning n + 100.
# Changes: the seed's last code block (from `print('-'*30)` on) lost its
# indentation, leaving `break` outside the loop (a syntax error); its first
# two lines go back into the `while` loop and the two final log lines after
# it, inside `if __name__ == '__main__':`. The seed's FORMAT string is broken
# over two lines (a syntax error inside a '...' literal); the line break is
# removed.
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
    return n + 100 # 返回结果

if __name__ == '__main__':
    # 创建进程池，池的容量为3
    executor = futures.ProcessPoolExecutor(max_workers=3)

    with executor: # 上下文
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
            if f.done(): # 如果做完了，看看结果
                logging.info("result = {}".format(f.result()))
            # if not flag: # 注释if看的清楚
            #     break

        print('-'*30)
        if flag: break
        # executor.shutdown() # 上下文清理了资源
    logging.info('====end====')
    logging.info(threading.enumerate()) # 多进程时看主线程已没有必要了

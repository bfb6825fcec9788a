# Seed 003 (seeds/003_d6908cd87ac9c146.txt), after Fluent Python's flags
# example: download_many with Executor.map, then rewritten with submit and
# as_completed.
# Changes: the seed's `futures.ThreadExecutor(5)` (no such class) is
# ThreadPoolExecutor, and its `max_worker=4` (no such argument) is
# max_workers=4; the seed never calls download_many nor defines its country
# codes, so the program defines POP20_CC (Fluent Python's twenty most
# populous countries) and prints what each version returns. The seed's
# download_one stays the stub it is (`pass`), so every future returns None.
# The state a future is in when printed right after submit() is a race
# between the main thread and the workers; run.py does not compare it.
# ruff: noqa
# fmt: off
from  concurrent import futures

def download_one(cc):
    pass

def download_many(cc_list):
    with futures.ThreadPoolExecutor(5) as executor:
        res = executor.map(download_one, cc_list)
    return len(list(res))

POP20_CC = ('CN IN US ID BR PK NG BD RU JP '
            'MX PH VN ET EG DE IR TR CD FR').split()
print(download_many(POP20_CC))

def  download_many(cc_list):
    cc_list = cc_list[:5]
    with futures.ThreadPoolExecutor(max_workers=4) as executor:
        to_do = []
        for cc in sorted(cc_list):
            future = executor.submit(download_one, cc) # 排定可调用对象的执行时间, 然后返回一个期物, 表示这个待执行的操作
            to_do.append(future)
            msg = 'Scheduled for {}: {}'
            print(msg.format(cc, future))

        results = []
        for future in futures.as_completed(to_do):
            res = future.result()
            msg = '{} result: {!r}'
            print(msg.format(future, res))
            results.append(res)

        return len(results)

print(download_many(POP20_CC))

# Seed 000 (seeds/000_7229fb4a8c74d04a.txt), "ProcessPoolExecutor"; seed 001
# ("ProcessPoolExecutor 例子") has the same code without the comment on
# `sqrt_n`, and seed 004 ("Executor.map()") the same program with an
# `is_prime` lacking the `n < 2` and `n == 2` cases (the same answers for
# these numbers).
# Changes: none.
# ruff: noqa
# fmt: off
import concurrent.futures
import math

PRIMES = [
    112272535095293,
    112582705942171,
    112272535095293,
    115280095190773,
    115797848077099,
    1099726899285419]

def is_prime(n):
    if n < 2:
        return False
    if n == 2:
        return True
    if n % 2 == 0:
        return False

    sqrt_n = int(math.floor(math.sqrt(n)))  # 返回数字下舍取整
    for i in range(3, sqrt_n + 1, 2):
        if n % i == 0:
            return False
    return True

def main():
    with concurrent.futures.ProcessPoolExecutor() as executor:
        for number, prime in zip(PRIMES, executor.map(is_prime, PRIMES)):
            print('%d is prime: %s' % (number, prime))

if __name__ == '__main__':
    main()

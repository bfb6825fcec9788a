# Seed 001 (seeds/001_e61eb7862117a6fc.txt), "执行器对象", "shutdown 72", item 5.
# Changes: the import of ThreadPoolExecutor, which the seed's snippet leaves
# out. The seed's src1.txt ... src4.txt are made by run.py, which runs the
# program in a fresh working directory and then checks each destN.txt.
# ruff: noqa
# fmt: off
from concurrent.futures import ThreadPoolExecutor
import shutil
with ThreadPoolExecutor(max_workers=4) as e:
	e.submit(shutil.copy, 'src1.txt', 'dest1.txt')
	e.submit(shutil.copy, 'src2.txt', 'dest2.txt')
	e.submit(shutil.copy, 'src3.txt', 'dest3.txt')
	e.submit(shutil.copy, 'src4.txt', 'dest4.txt')

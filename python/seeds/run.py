"""Runs the seeds' Python examples (this directory, one file each, the
seeds' code unchanged) twice: with the standard library's
``concurrent.futures`` and with ``concurrent_futures_rs`` aliased in its
place; prints each example's output under a header naming its seed
(ours, and the standard library's too where it differs or with
``--stdlib-output``) and compares the two runs::

    target/py/bin/python python/seeds/run.py [--strict] [--stdlib-output] [NAME ...]

Each run is a fresh interpreter (this one's, so target/py's) that runs the
example as ``__main__`` through ``_launch.py``, in a fresh working directory.
The comparison first normalises what legitimately varies between runs:
timestamps, process and thread ids, object addresses, worker process and
pool thread names, CPython's private helper threads in
``threading.enumerate()``, the order of results that complete at the same
time, and how many polls of a seed's polling loop saw the same state.

``load_urls`` reaches no network: its http:// URLs go, through the
``http_proxy`` variable that urllib honours, to a local HTTP proxy started
here on 127.0.0.1, which answers like the seed's output: three pages of the
sizes shown there and two sites that time out (504 Gateway Timeout).

``deadlocks`` hangs forever in both, as the seed says: it runs under a time
limit, and its threads' stacks (faulthandler) must show ``wait_on_b`` and
``wait_on_a`` blocked in both runs (whether ``wait_on_future`` is blocked
too is a race at interpreter exit, see deadlocks.py).

Exit status 1 when an example fails, an expected hang does not happen, the
alias is not in effect, or the two outputs differ in substance. A known,
documented difference of the package (``return_after_process``: a script
without the ``__main__`` guard) is shown but fails only with ``--strict``.
The whole run takes about 20 s: the seeds sleep 5 s per task and the
examples run in parallel.
"""

from __future__ import annotations

import argparse
import difflib
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCH = os.path.join(HERE, "_launch.py")
PYTHON = sys.executable
MODES = ("stdlib", "ours")
TITLES = {
    "stdlib": "the standard library's concurrent.futures",
    "ours": "concurrent_futures_rs as concurrent.futures",
}


@dataclass(frozen=True)
class Example:
    """One seed program and how to judge its two runs."""

    name: str
    seed: str
    # "exact": the same lines in the same order; "unordered": the same
    # lines in any order; "polls": seed 002's log-and-poll programs (see
    # canonical()).
    compare: str = "exact"
    timeout: float = 60.0
    # The seed's own deadlock: expected to hang with both, killed after
    # `timeout`, with these functions of the example blocked.
    hangs: tuple[str, ...] = ()
    # Lines (0-based) that print a bool which is a race in the seed's code.
    racy_lines: tuple[int, ...] = ()
    # CPU-bound: run before the others, not beside them.
    cpu_bound: bool = False
    # A documented difference of concurrent_futures_rs; the outputs are
    # expected to differ, which fails only under --strict.
    known_difference: str | None = None

    @property
    def path(self) -> str:
        return os.path.join(HERE, self.name + ".py")


EXAMPLES: tuple[Example, ...] = (
    Example("pow_submit", "seeds 000/001/002: submit(pow, 323, 1235) and result()"),
    Example("load_urls", "seeds 000/001/004: load five URLs, as_completed"),
    Example(
        "logging_worker",
        "seed 002, ThreadPoolExecutor例子: workers that log, polling done(), shutdown()",
        compare="polls",
    ),
    Example(
        "process_logging_shutdown",
        "seed 002, ProcessPoolExecutor对象: the same with processes",
        compare="polls",
    ),
    Example(
        "process_logging_worker",
        "seed 002, 支持上下文管理: processes in a `with` block, results n + 100",
        compare="polls",
    ),
    Example("copy_files", "seed 001, shutdown: shutil.copy in a `with` block"),
    Example("download_many", "seed 003: download_many with map, then with as_completed"),
    Example(
        "return_after",
        "seed 004: done() before and after sleep(5)",
        # The main thread's sleep(5) against the task's: either may end first.
        racy_lines=(1,),
    ),
    Example(
        "return_after_process",
        "seed 004: the same with ProcessPoolExecutor",
        racy_lines=(1,),
    ),
    Example("as_completed", "seed 004: as_completed() over random sleeps", compare="unordered"),
    Example("wait_return_when", "seed 004: wait() with the default ALL_COMPLETED"),
    Example(
        "deadlocks",
        "seed 001, ThreadPoolExecutor: the documentation's two deadlocks",
        timeout=8.0,
        hangs=("wait_on_b", "wait_on_a"),
    ),
    Example(
        "primes",
        "seeds 000/001/004: is_prime with ProcessPoolExecutor.map",
        cpu_bound=True,
    ),
)

# --- the local HTTP proxy for load_urls ---------------------------------

# host: (delay in s, status, page size); the sizes and failures are those of
# seed 000's output, the delays give its order of completion.
SITES: dict[str, tuple[float, int, int]] = {
    "www.foxnews.com": (0.05, 200, 323030),
    "some-made-up-domain.com": (0.25, 200, 64668),
    "europe.wsj.com": (0.45, 504, 0),
    "www.bbc.co.uk": (0.65, 504, 0),
    "www.cnn.com": (0.85, 200, 1146114),
}


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Answers a proxy's ``GET http://host/`` for the hosts of SITES; the
    real sites are never contacted."""

    requests: list[str] = []
    lock = threading.Lock()

    def do_GET(self) -> None:
        host = urllib.parse.urlsplit(self.path).hostname or ""
        with self.lock:
            self.requests.append(host)
        delay, status, size = SITES.get(host, (0.0, 502, 0))
        time.sleep(delay)
        if status == 200:
            body = b"x" * size
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
        else:
            body = b""
            self.send_error(status)
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Proxy:
    """A ThreadingHTTPServer on 127.0.0.1 in a thread of this process."""

    def __init__(self) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ProxyHandler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- running ------------------------------------------------------------


@dataclass
class Run:
    """One run of one example."""

    mode: str
    pid: int
    rc: int | None
    output: str
    seconds: float
    timed_out: bool
    report: dict[str, object]
    # Where a hung run's threads were, in the example's own code.
    blocked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Result:
    """Both runs of one example and the verdict."""

    example: Example
    runs: dict[str, Run]
    status: str  # "same", "known difference", "differs", "failed"
    details: list[str]

    @property
    def ok(self) -> bool:
        return self.status == "same"


COPY_SOURCES = {f"src{i}.txt": f"file number {i}\n" * (i * 100) for i in range(1, 5)}


def child_env(proxy_url: str, report: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(
        {
            "http_proxy": proxy_url,
            "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1",
            "PYTHONIOENCODING": "utf-8",
            "SEEDS_REPORT": report,
        }
    )
    return env


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signals the process group of one of our runs (the example and its
    workers)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


FAULT_DUMP = re.compile(r"^Fatal Python error: Aborted", re.M)


def blocked_frames(dump: str, example: Example) -> list[str]:
    """From a faulthandler dump, the innermost frame of the example's own
    code in each thread, e.g. ``deadlocks.py:21 in wait_on_b``."""
    frames: set[str] = set()
    for thread in re.split(r"^(?:Thread|Current thread) 0x[0-9a-f]+", dump, flags=re.M)[1:]:
        for match in re.finditer(r'File "([^"]+)", line (\d+) in (\S+)', thread):
            path, line, function = match.groups()
            if os.path.abspath(path) == example.path:
                frames.add(f"{os.path.basename(path)}:{line} in {function}")
                break
    return sorted(frames)


def run_once(example: Example, mode: str, proxy: Proxy, workdir: str) -> Run:
    cwd = os.path.join(workdir, f"{example.name}-{mode}")
    os.makedirs(cwd)
    if example.name == "copy_files":
        for name, text in COPY_SOURCES.items():
            with open(os.path.join(cwd, name), "w", encoding="utf-8") as f:
                f.write(text)
    report_path = cwd + ".json"
    start = time.monotonic()
    proc = subprocess.Popen(
        [PYTHON, LAUNCH, mode, example.path],
        cwd=cwd,
        env=child_env(proxy.url, report_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=example.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        # faulthandler (PYTHONFAULTHANDLER) prints every thread's stack.
        proc.send_signal(signal.SIGABRT)
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            out, _ = proc.communicate()
    finally:
        kill_group(proc.pid)
    seconds = time.monotonic() - start
    output = out.decode("utf-8", "replace")
    run = Run(
        mode, proc.pid, None if timed_out else proc.returncode, output, seconds, timed_out, {}
    )
    try:
        with open(report_path, encoding="utf-8") as f:
            run.report = json.load(f)
    except (OSError, ValueError):
        run.problems.append("the launcher wrote no report")
    if timed_out:
        found = FAULT_DUMP.search(output)
        if found:
            run.blocked = blocked_frames(output[found.start() :], example)
            run.output = output[: found.start()]
    if example.name == "copy_files":
        run.output += check_copies(cwd)
    run.problems += check_alias(run)
    return run


def check_copies(cwd: str) -> str:
    """What run.py finds after copy_files: each destination and its source."""
    lines = []
    for i, (name, text) in enumerate(COPY_SOURCES.items(), 1):
        dest = os.path.join(cwd, f"dest{i}.txt")
        try:
            with open(dest, encoding="utf-8") as f:
                copied = f.read()
        except OSError as e:
            lines.append(f"[run.py] dest{i}.txt: missing ({e.strerror})")
            continue
        same = "the same as" if copied == text else "DIFFERENT from"
        lines.append(f"[run.py] dest{i}.txt: {len(copied)} bytes, {same} {name}")
    return "".join(line + "\n" for line in lines)


def check_alias(run: Run) -> list[str]:
    """Whether the run had the concurrent.futures it was meant to have."""
    report = run.report
    if not report:
        return []
    want = "concurrent.futures" if run.mode == "stdlib" else "concurrent_futures_rs"
    problems = []
    if report.get("module") != want:
        problems.append(f"concurrent.futures was {report.get('module')!r}, not {want!r}")
    found = report.get("globals")
    if isinstance(found, dict):
        wrong = {k: v for k, v in found.items() if not str(v).startswith(want)}
        if wrong:
            problems.append(f"globals not from {want}: {wrong}")
        if run.mode == "ours" and not found:
            problems.append("no global of the example comes from concurrent_futures_rs")
        if run.mode == "stdlib" and report.get("concurrent_futures_rs_loaded"):
            problems.append("the stdlib run imported concurrent_futures_rs")
    return problems


# --- normalising and comparing ------------------------------------------

LOG_HEAD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}(\s+)\[([^\[\]:]+):([^\[\],]+), (\d+):\s*(\d+)\] "
)
MAIN_LOG = "[MainProcess:MainThread, <pid>:<tid>] "
PRIVATE_THREADS = re.compile(
    # CPython's process pool helpers, which ours does not have.
    r", <_ExecutorManagerThread\([^()]*\)>|, <Thread\(QueueFeederThread[^()]*\)>"
)


def normalise_line(line: str, main_pid: int, workdir: str) -> str:
    line = line.replace(workdir, "<workdir>")
    head = LOG_HEAD.match(line)
    if head:
        space, process, thread, pid, _tid = head.groups()
        if process != "MainProcess":
            process = "<worker process>"
        thread = re.sub(r"^(ThreadPoolExecutor-\d+)_\d+$", r"\1_<n>", thread)
        pid = "<pid>" if int(pid) == main_pid else "<worker pid>"
        line = f"<time>{space}[{process}:{thread}, {pid}:<tid>] " + line[head.end() :]
    line = re.sub(r"0x[0-9a-f]+", "0x<addr>", line)
    line = re.sub(r"(started(?: daemon)?) \d+", r"\1 <tid>", line)
    line = PRIVATE_THREADS.sub("", line)
    if line.startswith("Scheduled for "):
        # Whether a worker has taken the future yet is a race.
        line = re.sub(r"state=\w+(?: (?:returned|raised) \w+)?", "state=<any>", line)
    return line


def normalised(run: Run, workdir: str) -> list[str]:
    return [normalise_line(line, run.pid, workdir) for line in run.output.splitlines()]


def canonical(example: Example, lines: list[str]) -> list[str]:
    """What must be the same in both runs, one line per item."""
    for i in example.racy_lines:
        if i < len(lines) and lines[i] in ("True", "False"):
            lines[i] = "<True or False: a race>"
    if example.compare == "unordered":
        return sorted(lines)
    if example.compare != "polls":
        return lines

    # Seed 002: workers log as they start and finish (the order of those
    # that do so at the same moment varies); the main thread polls every
    # 2 s, printing a block that ends with a line of dashes, until every
    # task is done. Tasks take 5 s, so each state of the tasks lasts two
    # or three polls, and how many is a race; so is a state that a single
    # poll sees between two others (that poll caught tasks finishing). So
    # consecutive identical polls count as one, and a single poll between
    # two different ones is left out (never the first or the last).
    def is_worker(line: str) -> bool:
        return bool(LOG_HEAD_NORMAL.match(line)) and MAIN_LOG not in line

    workers = sorted(line for line in lines if is_worker(line))
    polls: list[list[str]] = [[]]
    for line in lines:
        if not is_worker(line):
            polls[-1].append(line)
            if re.fullmatch(r"-{30}", line):
                polls.append([])
    after = polls.pop()  # what follows the last poll
    runs: list[tuple[list[str], int]] = []
    for poll in polls:
        if runs and runs[-1][0] == poll:
            runs[-1] = (poll, runs[-1][1] + 1)
        else:
            runs.append((poll, 1))
    kept = [poll for i, (poll, n) in enumerate(runs) if n > 1 or i in (0, len(runs) - 1)]
    merged = [line for i, poll in enumerate(kept) if i == 0 or poll != kept[i - 1] for line in poll]
    return [
        "workers, in any order:",
        *workers,
        "main thread, polls merged:",
        *merged,
        "after the last poll:",
        *after,
    ]


LOG_HEAD_NORMAL = re.compile(r"^<time>\s+\[")


def judge(example: Example, runs: dict[str, Run], workdir: str) -> Result:
    details: list[str] = []
    failed = False
    for run in runs.values():
        for problem in run.problems:
            details.append(f"{run.mode}: {problem}")
            failed = True
        if example.hangs:
            if not run.timed_out:
                details.append(f"{run.mode}: expected to hang, ended with exit status {run.rc}")
                failed = True
            for function in example.hangs:
                if not any(f.endswith(" in " + function) for f in run.blocked):
                    details.append(f"{run.mode}: {function} was not blocked")
                    failed = True
        elif run.timed_out:
            details.append(f"{run.mode}: timed out after {example.timeout:.0f} s")
            failed = True
        elif run.rc != 0:
            details.append(f"{run.mode}: exit status {run.rc}")
            failed = True
    if failed:
        return Result(example, runs, "failed", details)
    std, ours = (canonical(example, normalised(runs[m], workdir)) for m in MODES)
    if std == ours:
        if example.known_difference:
            details.append("the known difference did not show this time")
        return Result(example, runs, "same", details)
    diff = difflib.unified_diff(std, ours, "stdlib (normalised)", "ours (normalised)", lineterm="")
    details += list(diff)
    status = "known difference" if example.known_difference else "differs"
    return Result(example, runs, status, details)


def run_example(example: Example, proxy: Proxy, workdir: str) -> Result:
    with ThreadPoolExecutor(max_workers=len(MODES)) as pool:
        futures = {m: pool.submit(run_once, example, m, proxy, workdir) for m in MODES}
        runs = {m: f.result() for m, f in futures.items()}
    return judge(example, runs, workdir)


def run_all(names: Sequence[str] = (), workdir: str | None = None) -> list[Result]:
    """Runs the examples named (all by default), the CPU-bound ones first,
    then the rest side by side; results in EXAMPLES order."""
    chosen = [e for e in EXAMPLES if not names or e.name in names]
    unknown = set(names) - {e.name for e in EXAMPLES}
    if unknown:
        raise ValueError(f"no such example: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="seeds-") as tmp, Proxy() as proxy:
        where = workdir or tmp
        results = {e.name: run_example(e, proxy, where) for e in chosen if e.cpu_bound}
        rest = [e for e in chosen if not e.cpu_bound]
        if rest:
            with ThreadPoolExecutor(max_workers=len(rest)) as pool:
                for e, r in zip(rest, pool.map(lambda e: run_example(e, proxy, where), rest)):
                    results[e.name] = r
        if any(e.name == "load_urls" for e in chosen):
            check_proxy(results["load_urls"])
    return [results[e.name] for e in chosen]


def check_proxy(result: Result) -> None:
    """load_urls must have asked the local proxy for each of its URLs, once
    per run."""
    asked = sorted(ProxyHandler.requests)
    ProxyHandler.requests.clear()
    want = sorted(list(SITES) * len(MODES))
    if asked != want and result.status == "same":
        result.status = "failed"
        result.details.append(f"the local proxy was asked for {asked}, not {want}")


# --- printing -----------------------------------------------------------


# Longer lines are shortened when printed (compared in full).
LONG_LINE = 300


def indent(text: str) -> Iterator[str]:
    for line in text.rstrip("\n").splitlines() or ["(no output)"]:
        if len(line) > LONG_LINE:
            line = f"{line[:100]} ... {line[-40:]} ({len(line)} characters)"
        yield "    " + line


def describe(run: Run) -> str:
    if run.timed_out:
        how = "killed after the time limit"
    else:
        how = f"exit status {run.rc}"
    return f"{TITLES[run.mode]} ({run.seconds:.1f} s, {how})"


def report_lines(result: Result, stdlib_output: bool) -> Iterator[str]:
    e = result.example
    yield "=" * 78
    yield f"{e.name}.py - {e.seed}"
    yield "=" * 78
    modes = MODES if stdlib_output or not result.ok else ("ours",)
    for mode in modes:
        run = result.runs[mode]
        yield f"--- {describe(run)}"
        yield from indent(run.output)
        if run.timed_out:
            how = "hung, as the seed says" if e.hangs else "hung"
            if run.blocked:
                yield f"    ({how}; its threads were blocked at:"
                yield from ("      " + frame for frame in run.blocked)
                yield "    )"
            else:
                yield f"    ({how}; faulthandler showed no thread in the example's code)"
    if not stdlib_output and result.ok:
        yield f"--- {describe(result.runs['stdlib'])}: the same, normalised"
    verdict = {
        "same": "SAME as the standard library",
        "known difference": "KNOWN DIFFERENCE: " + (e.known_difference or ""),
        "differs": "DIFFERS from the standard library",
        "failed": "FAILED",
    }[result.status]
    yield f">>> {verdict}"
    yield from ("    " + line for line in result.details)
    yield ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0] + ".")
    parser.add_argument("names", nargs="*", help="examples to run (default: all)")
    parser.add_argument(
        "--stdlib-output",
        action="store_true",
        help="print the standard library's output too, also where it is the same",
    )
    parser.add_argument("--strict", action="store_true", help="known differences fail too")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        results = run_all(args.names)
    except ValueError as e:
        parser.error(str(e))
    for result in results:
        for line in report_lines(result, args.stdlib_output):
            print(line)
    bad = [r for r in results if r.status in ("differs", "failed")]
    known = [r for r in results if r.status == "known difference"]
    if args.strict:
        bad += known
    print(
        f"{len(results)} examples in {time.monotonic() - start:.1f} s: "
        f"{sum(r.ok for r in results)} the same, {len(known)} known difference(s), "
        f"{len(bad) - (len(known) if args.strict else 0)} failed or different"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""The load generator of ``tests.benchmarks.load``: HTTP clients on ``http.client`` (the
connection is kept open whenever the server allows it, and reopened when it does not), spread
as threads over several processes, driven for a fixed window after a warm-up; and what the
clients, the server and everything else on the machine spent in CPU during that window, so the
report can say whether the load generator itself was the bottleneck.
"""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

HOST = "127.0.0.1"
TIMEOUT_SECONDS = 120
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Client:
    """One user agent: its connection and its cookies (the session cookie changes at every
    request, since the portal records when the session was last seen)."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None):
        self.port = port
        self.cookies = dict(cookies or {})
        self.connection = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT_SECONDS)

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Response:
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            reused = self.connection.sock is not None
            try:
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the server closed meanwhile: retry once on a new one.
                self.connection.close()
                if attempt == 2 or not reused:
                    raise
        for header in response.headers.get_all("Set-Cookie") or []:
            self._remember(header)
        return Response(response.status, response.headers, data)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str]) -> Response:
        return self.request("POST", path, form)

    def close(self) -> None:
        self.connection.close()

    def _remember(self, header: str) -> None:
        try:
            parsed = SimpleCookie(header)
        except CookieError:
            return
        for name, morsel in parsed.items():
            expires = morsel["expires"]
            if (
                not morsel.value
                or morsel["max-age"] == "0"
                or expires.startswith("Thu, 01 Jan 1970")
            ):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value


@dataclass
class Plan:
    """What one client does over and over: a GET, or (``autosave``) the POST the answer page's
    script sends for one question, with a new value each time and the revision it last saw."""

    name: str
    cookies: dict[str, str]
    path: str
    autosave: dict[str, str] | None = None  # the fixed fields: csrf_token, question, r:<key>
    answer_field: str = ""  # the field whose value changes ("a:<question key>")
    revision_field: str = ""  # "r:<question key>"

    def form(self, number: int) -> dict[str, str] | None:
        if self.autosave is None:
            return None
        return {**self.autosave, self.answer_field: f"ベンチマーク {self.name} 第{number}回"}


@dataclass
class Window:
    start: float  # time.monotonic(), shared by every process on Linux
    end: float


@dataclass
class ClientResult:
    latencies: list[float] = field(default_factory=list)  # seconds, requests in the window
    statuses: Counter = field(default_factory=Counter)  # status code (or exception name)
    sample_error: str = ""


def _drive(port: int, plan: Plan, window: Window, result: ClientResult) -> None:
    client = Client(port, plan.cookies)
    number = 0
    while True:
        started = time.monotonic()
        if started >= window.end:
            break
        number += 1
        try:
            response = client.request(
                "POST" if plan.autosave is not None else "GET", plan.path, plan.form(number)
            )
            outcome: int | str = response.status
        except (OSError, http.client.HTTPException) as exc:
            response, outcome = None, type(exc).__name__
            client.close()
        finished = time.monotonic()
        if started >= window.start and finished <= window.end:
            result.latencies.append(finished - started)
            result.statuses[outcome] += 1
            if not (isinstance(outcome, int) and 200 <= outcome < 300) and not result.sample_error:
                body = response.text[:300] if response is not None else ""
                result.sample_error = f"{outcome} {plan.path} {body}".strip()
        if plan.autosave is not None and response is not None and response.status == 200:
            # As the page's script does: the next save says which revision it is based on.
            revision = json.loads(response.body).get("revision")
            if revision is not None:
                plan.autosave[plan.revision_field] = str(revision)
    client.close()


def _process_main(port: int, plans: list[Plan], window: Window, pipe) -> None:
    results = [ClientResult() for _ in plans]
    threads = [
        threading.Thread(target=_drive, args=(port, plan, window, result), daemon=True)
        for plan, result in zip(plans, results, strict=True)
    ]
    for thread in threads:
        thread.start()
    _sleep_until(window.start)
    cpu_start = time.process_time()
    _sleep_until(window.end)
    cpu = time.process_time() - cpu_start
    for thread in threads:
        thread.join()
    pipe.send((results, cpu))
    pipe.close()


def _sleep_until(moment: float) -> None:
    while (left := moment - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU of one process, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def machine_busy_seconds() -> float:
    """CPU seconds spent not idle by the whole machine since boot (all cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


@dataclass
class Measurement:
    seconds: float
    latencies: list[float]
    statuses: Counter
    sample_error: str
    client_cpu: list[float]  # CPU seconds of each client process in the window
    server_cpu: float
    machine_cpu: float

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        return sum(
            n for s, n in self.statuses.items() if not (isinstance(s, int) and 200 <= s < 300)
        )

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        ordered = sorted(self.latencies)
        if not ordered:
            return math.nan
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000

    def cores(self, cpu_seconds: float) -> float:
        return cpu_seconds / self.seconds

    @property
    def client_busiest(self) -> float:
        """The share of one core used by the busiest client process (1.0 = saturated)."""
        return max(self.client_cpu) / self.seconds if self.client_cpu else 0.0


def run(
    port: int,
    plans: list[Plan],
    *,
    processes: int,
    warmup: float,
    duration: float,
    server_pids: list[int],
) -> Measurement:
    """Drive ``plans`` (one client each) from ``processes`` processes: ``warmup`` seconds,
    then ``duration`` seconds measured."""
    context = multiprocessing.get_context("fork")
    window = Window(time.monotonic() + 0.2 + warmup, 0.0)
    window.end = window.start + duration
    workers = []
    for index in range(processes):
        share = plans[index::processes]
        if not share:
            continue
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_process_main, args=(port, share, window, sender))
        process.start()
        sender.close()
        workers.append((process, receiver))
    _sleep_until(window.start)
    server_before = sum(process_cpu_seconds(pid) for pid in server_pids)
    machine_before = machine_busy_seconds()
    _sleep_until(window.end)
    server_cpu = sum(process_cpu_seconds(pid) for pid in server_pids) - server_before
    machine_cpu = machine_busy_seconds() - machine_before
    latencies: list[float] = []
    statuses: Counter = Counter()
    sample_error = ""
    client_cpu = []
    for process, receiver in workers:
        results, cpu = receiver.recv()
        process.join()
        client_cpu.append(cpu)
        for result in results:
            latencies += result.latencies
            statuses.update(result.statuses)
            sample_error = sample_error or result.sample_error
    return Measurement(
        duration, latencies, statuses, sample_error, client_cpu, server_cpu, machine_cpu
    )

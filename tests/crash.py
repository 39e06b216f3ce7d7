"""Crash and restore (issue 8; SECURITY.md "Reliability": the server killed mid-write loses no
committed answer; backups of the database and the evidence store).

gunicorn (2 workers, loopback) serves a database holding a vendor company whose assessment is in
draft. Several contacts of the company log in through the real login form and autosave answers
without pause, exactly as the page's script does (``static/js/autosave.js``: the form's CSRF
token, the question, its field and the ``r:<key>`` revision the page showed, updated from each
reply); one of them also attaches certificate PDFs through the evidence form. A reply is an
acknowledgement only when it is a 200 whose JSON says ``saved`` with a revision (for an upload:
the page after the redirect shows the success message). A connection error is never one: like
the script, the client keeps posting with what it has, and reloads its page only when the
server says the page is stale (409), as the message asks the vendor to.

Meanwhile the gunicorn **master** gets SIGKILL. Its workers are orphaned and keep the listening
socket — a sync worker looks for a new parent only when no connection is waiting, so under load
it keeps serving — and a new gunicorn could not bind the port. After a short window they are
killed by process group, which is what a real deployment's supervisor does: systemd kills every
process left in the unit's control group when its main process dies (``KillMode=control-group``,
the default) before ``Restart=`` starts it again, and in a container the kernel kills the whole
PID namespace when its PID 1 (``exec gunicorn …``) dies. gunicorn is then started again on the
same port, the clients carry on, and the checks in ``tests/test_crash_restore.py`` (or
``main()`` below) look at the database: every acknowledged save is there with its value, the
last one of each question is the answer, nothing sent while the server was down is there,
``PRAGMA integrity_check`` (SQLite) and the audit chain hold, every file row has its file.
Finally ``flask backup create`` / ``backup restore`` copy it all into a fresh location, which
must hold the same rows and the same files.

    .venv/bin/python -m tests.crash [--clients N] [--database-url URL] [--keep]

Without ``--database-url`` a temporary SQLite database is used; a PostgreSQL URL must name an
empty database (it is migrated and filled). Exit status 0 when every check holds.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess  # noqa: S404 - starts gunicorn with fixed arguments
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import requests
import sqlalchemy as sa
from bs4 import BeautifulSoup
from pypdf import PdfWriter
from sqlalchemy.engine import make_url

from portal import create_app
from portal.assessments.models import Answer, AnswerRevision
from portal.audit import service as audit
from portal.audit.models import AuditEvent
from portal.db import Base, engine_for
from portal.evidence import storage
from portal.evidence.models import EvidenceFile
from portal.questionnaires import loader
from tests.factories import PASSWORD, Factory

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SECRET_KEY = "crash-and-restore-secret-key-0123456789-abcdefghij"
CHEAP_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024, "ARGON2_PARALLELISM": 1}

SECTION = "company"  # always shown; its text questions have no condition
EVIDENCE_SECTION = "certifications"
EVIDENCE_QUESTION = "certifications.certificate_evidence"
MAX_UPLOADS = 8  # acknowledged or lost; the question takes 10 files
UPLOAD_EVERY = 3  # the uploading client attaches a file every third operation
UPLOADED = "ファイルを添付しました"

REQUEST_TIMEOUT = 60  # seconds; a request that hangs this long is lost, never acknowledged
RETRY_PAUSE = 0.05
WAIT_LIMIT = 90  # seconds for any phase before the run gives up (never reached when healthy)

LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")

# Phases of the run, as seen by the clients when they send a request.
BEFORE_KILL, ORPHANED, DOWN, RESTARTED = range(4)
PHASE_NAMES = {
    BEFORE_KILL: "before the kill",
    ORPHANED: "master killed, workers orphaned",
    DOWN: "every process dead, server starting again",
    RESTARTED: "after the restart",
}


class CrashRunError(RuntimeError):
    """The run itself could not proceed (a server that never started, a client that broke)."""


# ---------------------------------------------------------------------------------------------
# Arranging
# ---------------------------------------------------------------------------------------------


@dataclass
class Scene:
    assessment_id: int
    vendors: list[tuple[int, str]]  # (user id, e-mail)


def arrange(app, clients: int) -> Scene:
    """A department's engagement whose assessment, in draft, is addressed to a company with
    ``clients`` vendor contacts (no TOTP for vendors: the password form alone logs them in)."""
    session = app.extensions["db_sessionmaker"]()
    try:
        make = Factory(session, app)
        org = make.org(name="障害試験市")
        department = make.department(org, "情報政策課")
        staff = make.user(org, departments=[department], email="crash-staff@example.jp")
        company = make.company(org, "障害試験システム株式会社")
        engagement = make.engagement(org, department, staff, title="住民窓口システム運用保守")
        assessment = make.assessment(engagement, company, staff)
        vendors = [
            make.user(
                company=company,
                invited_by=org,
                email=f"crash-vendor-{n}@example.jp",
                name=f"回答者{n}",
            )
            for n in range(1, clients + 1)
        ]
        return Scene(assessment.id, [(v.id, v.email) for v in vendors])
    finally:
        session.close()


def server_env(app, instance: Path) -> dict[str, str]:
    """The environment gunicorn's workers build the same app from (``wsgi:app``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(
        {
            "PORTAL_ENV": "testing",
            "PORTAL_SECRET_KEY": SECRET_KEY,
            "PORTAL_INSTANCE_PATH": str(instance),
            "PORTAL_DATABASE_URL": app.config["DATABASE_URL"],
            "PORTAL_EVIDENCE_DIR": app.config["EVIDENCE_DIR"],
            "PORTAL_MAIL_OUTBOX": app.config["MAIL_OUTBOX"],
            "PORTAL_CLAMD": "",
            # The hashes were made with these: no rehash at login (README, argon2 parameters).
            "PORTAL_ARGON2_TIME_COST": str(CHEAP_ARGON2["ARGON2_TIME_COST"]),
            "PORTAL_ARGON2_MEMORY_COST": str(CHEAP_ARGON2["ARGON2_MEMORY_COST"]),
            "PORTAL_ARGON2_PARALLELISM": str(CHEAP_ARGON2["ARGON2_PARALLELISM"]),
        }
    )
    return env


# ---------------------------------------------------------------------------------------------
# gunicorn and its process group
# ---------------------------------------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` still running (zombies hold nothing: left out)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return sorted(members)


def alive(pid: int) -> bool:
    """Is ``pid`` a running process (not gone, not a zombie)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def port_is_free(port: int) -> bool:
    """Can a new server bind the port (with SO_REUSEADDR, as gunicorn does)?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Gunicorn:
    """``gunicorn --workers 2`` on loopback in a process group of its own (its pgid is the
    master's pid), so the workers can be found and killed after the master is gone."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int = 0):
        self.env = env
        self.log_path = log_path
        self.port = port
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pgid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> int:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--no-control-socket",  # several servers on one machine: no shared socket file
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
                "wsgi:app",
            ],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + WAIT_LIMIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CrashRunError(f"gunicorn exited at start:\n{self.log_tail()}")
            if not self.port and (found := LISTENING.search(self.log_text())):
                self.port = int(found.group(1))
            if self.port and self._answers():
                return self.port
            time.sleep(0.1)
        raise CrashRunError(f"gunicorn did not answer within {WAIT_LIMIT} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        try:
            with requests.get(f"{self.url}/auth/login", timeout=REQUEST_TIMEOUT) as response:
                return response.status_code == 200
        except requests.RequestException:
            return False

    def workers(self) -> list[int]:
        return [pid for pid in group_members(self.pgid) if pid != self.pgid]

    def kill_master(self) -> list[int]:
        """SIGKILL to the master alone; returns the workers it leaves behind."""
        assert self.process is not None
        workers = self.workers()
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        return [pid for pid in workers if pid in group_members(self.pgid)]

    def kill_group(self) -> None:
        """SIGKILL to every process of the group; returns once none is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        if self.process is not None and self.process.poll() is None:
            self.process.wait()
        deadline = time.monotonic() + WAIT_LIMIT
        while group_members(self.pgid):
            if time.monotonic() > deadline:
                raise CrashRunError(f"processes of group {self.pgid} survive SIGKILL")
            time.sleep(0.02)

    def stop(self) -> None:
        """A clean stop (SIGTERM to the master), then whatever is left is killed."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        if self.process is not None:
            self.kill_group()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# Vendor clients
# ---------------------------------------------------------------------------------------------


class Phase:
    def __init__(self):
        self.value = BEFORE_KILL


@dataclass(frozen=True)
class Ack:
    """A save the server acknowledged: 200, ``{"status": "saved", "revision": n}``."""

    client: str
    question: str
    value: str
    revision: int
    phase: int


@dataclass(frozen=True)
class Attempt:
    """A save (or upload) without an acknowledgement: ``outcome`` says what happened."""

    client: str
    question: str
    value: str
    outcome: str
    phase: int
    connection_error: bool


@dataclass(frozen=True)
class Upload:
    client: str
    name: str
    sha256: str
    phase: int


def certificate_pdf(title: str) -> bytes:
    """A small, valid and unique PDF (its title differs), so each upload has its own hash."""
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.add_metadata({"/Title": title})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


class PageError(RuntimeError):
    pass


class VendorClient(threading.Thread):
    """One vendor contact in a browser: logs in, opens the section page and autosaves its own
    questions one after another, with a new value each time."""

    def __init__(
        self,
        name: str,
        user_id: int,
        email: str,
        server: Callable[[], str],
        assessment_id: int,
        questions: list[str],
        phase: Phase,
        stop: threading.Event,
        uploads: bool = False,
    ):
        super().__init__(name=name, daemon=True)
        self.user_id = user_id
        self.email = email
        self.server = server
        self.assessment_id = assessment_id
        self.questions = questions
        self.phase = phase
        self.stop = stop
        self.uploads = uploads
        self.abandon = threading.Event()
        self.http = requests.Session()
        self.acks: list[Ack] = []
        self.lost: list[Attempt] = []
        self.refused: list[Attempt] = []
        self.uploaded: list[Upload] = []
        self.uploads_lost: list[Attempt] = []
        self.reloads = 0
        self.error: BaseException | None = None
        self._token = ""
        self._autosave_url = ""
        self._revisions: dict[str, str] = {}
        self._upload_form: tuple[str, str] | None = None
        self._count = 0

    # Pages ---------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return urljoin(self.server(), path)

    def _page(self, path: str) -> BeautifulSoup:
        response = self.http.get(self._url(path), timeout=REQUEST_TIMEOUT)
        if response.status_code != 200:
            raise PageError(f"GET {path} → {response.status_code}")
        return BeautifulSoup(response.text, "html.parser")

    def login(self) -> None:
        """The real login form: its CSRF token, e-mail and password; the cookie is kept."""
        form = self._page("/auth/login").select_one("main form[method=post]")
        if form is None:
            raise PageError("no login form")
        response = self.http.post(
            self._url("/auth/login"),
            data={
                "csrf_token": form.select_one("input[name=csrf_token]")["value"],
                "email": self.email,
                "password": PASSWORD,
            },
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        )
        if response.status_code != 302 or response.headers.get("Location") != "/":
            raise PageError(f"login of {self.email} → {response.status_code}")

    def load(self) -> None:
        """Open the section page: the form's token, autosave URL and shown revisions."""
        page = self._page(f"/assessments/{self.assessment_id}/sections/{SECTION}")
        form = page.select_one("form#answers")
        if form is None or not form.get("data-autosave-url"):
            raise PageError("no answer form with autosave on the section page")
        self._token = form.select_one("input[name=csrf_token]")["value"]
        self._autosave_url = form["data-autosave-url"]
        for key in self.questions:
            self._revisions[key] = form.select_one(f'input[name="r:{key}"]')["value"]
        self.reloads += 1
        if self.uploads and self._upload_form is None:
            evidence_page = self._page(
                f"/assessments/{self.assessment_id}/sections/{EVIDENCE_SECTION}"
            )
            fid = "q-" + EVIDENCE_QUESTION.replace(".", "-")
            upload_form = evidence_page.select_one(f"form#upload-{fid}")
            if upload_form is None or upload_form.get("enctype") != "multipart/form-data":
                raise PageError("no upload form for the certificate question")
            self._upload_form = (
                upload_form["action"],
                upload_form.select_one("input[name=next]")["value"],
            )

    # Saving --------------------------------------------------------------------------------

    def value(self) -> str:
        self._count += 1
        return f"{self.name} の回答 第{self._count:05d}版"

    def save(self, key: str) -> bool:
        """One autosave as ``autosave.js`` sends it. True when the server acknowledged it."""
        value, phase = self.value(), self.phase.value
        data = {
            "csrf_token": self._token,
            "question": key,
            f"r:{key}": self._revisions[key],
            f"a:{key}": value,
        }
        try:
            response = self.http.post(
                self._url(self._autosave_url),
                data=data,
                headers={"X-Requested-With": "fetch"},
                allow_redirects=False,
                timeout=REQUEST_TIMEOUT,
            )
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            self.lost.append(
                Attempt(
                    self.name,
                    key,
                    value,
                    type(exc).__name__,
                    phase,
                    isinstance(exc, requests.ConnectionError),
                )
            )
            time.sleep(RETRY_PAUSE)
            return False
        body = body if isinstance(body, dict) else {"reply": body}
        revision = body.get("revision")
        if response.status_code == 200 and body.get("status") == "saved" and type(revision) is int:
            self._revisions[key] = str(revision)
            self.acks.append(Ack(self.name, key, value, revision, phase))
            return True
        self.refused.append(
            Attempt(self.name, key, value, f"{response.status_code} {body}", phase, False)
        )
        if response.status_code != 409:  # stops the client: the run fails, naming it
            raise PageError(f"autosave refused: {response.status_code} {body}")
        # The page is stale (a save whose reply was lost went through): reload, as the
        # message asks.
        self._reload()
        return False

    def upload(self) -> None:
        """Attach one new certificate through the evidence form; acknowledged when the page
        after the redirect shows the success message."""
        assert self._upload_form is not None
        action, next_path = self._upload_form
        phase = self.phase.value
        name = f"登録証_{self.name}_{len(self.uploaded) + len(self.uploads_lost) + 1}.pdf"
        content = certificate_pdf(name)
        digest = hashlib.sha256(content).hexdigest()
        try:
            response = self.http.post(
                self._url(action),
                data={"csrf_token": self._token, "next": next_path},
                files={"file": (name, content, "application/pdf")},
                timeout=REQUEST_TIMEOUT,
            )
        except requests.RequestException as exc:
            self.uploads_lost.append(
                Attempt(self.name, EVIDENCE_QUESTION, digest, type(exc).__name__, phase, True)
            )
            time.sleep(RETRY_PAUSE)
            return
        page = BeautifulSoup(response.text, "html.parser")
        successes = [p.get_text(strip=True) for p in page.select(".flash--success")]
        if response.status_code == 200 and any(s.startswith(UPLOADED) for s in successes):
            self.uploaded.append(Upload(self.name, name, digest, phase))
        else:
            self.uploads_lost.append(
                Attempt(
                    self.name,
                    EVIDENCE_QUESTION,
                    digest,
                    f"{response.status_code} {[p.get_text(strip=True) for p in page.select('.flash')]}",
                    phase,
                    False,
                )
            )

    def _reload(self) -> None:
        while not self.abandon.is_set():
            try:
                self.load()
                return
            except (requests.RequestException, PageError):
                time.sleep(RETRY_PAUSE)

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.acks)} acknowledged, {len(self.lost)} lost "
            f"(last: {self.lost[-1:]}), {len(self.refused)} refused (last: {self.refused[-1:]}), "
            f"uploads {len(self.uploaded)} acknowledged, {len(self.uploads_lost)} lost "
            f"(last: {self.uploads_lost[-1:]}), error {self.error!r}"
        )

    # The thread ----------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.login()
            self.load()
            turn = 0
            while not self.stop.is_set() and not self.abandon.is_set():
                turn += 1
                wants_upload = len(self.uploaded) + len(self.uploads_lost) < MAX_UPLOADS
                if self.uploads and turn % UPLOAD_EVERY == 0 and wants_upload:
                    self.upload()
                else:
                    self.save(self.questions[turn % len(self.questions)])
            # Last round: each question once more until acknowledged, so the last save sent
            # for every question is an acknowledged one.
            for key in self.questions:
                while not self.abandon.is_set() and not self.save(key):
                    pass
        except BaseException as exc:  # reported by the run, never lost in the thread
            self.error = exc
        finally:
            self.http.close()


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    port: int
    pgid: int  # the first server's process group (its master's pid)
    clients: list[VendorClient]
    workers_before_kill: list[int]
    orphans: list[int]  # workers alive right after the master's SIGKILL
    port_free_while_orphaned: bool  # could the port be bound right after the master's kill?
    orphans_after_probe: list[int]  # orphans still alive after that probe
    orphans_at_group_kill: list[int]  # still alive when the group was killed
    acks_while_orphaned: int
    port_free_after_kill: bool
    integrity_after_crash: list[str] | None  # PRAGMA integrity_check (SQLite), None otherwise
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def acks(self) -> list[Ack]:
        return [ack for client in self.clients for ack in client.acks]

    @property
    def lost(self) -> list[Attempt]:
        return [attempt for client in self.clients for attempt in client.lost]

    @property
    def refused(self) -> list[Attempt]:
        return [attempt for client in self.clients for attempt in client.refused]

    @property
    def uploaded(self) -> list[Upload]:
        return [upload for client in self.clients for upload in client.uploaded]

    @property
    def uploads_lost(self) -> list[Attempt]:
        return [attempt for client in self.clients for attempt in client.uploads_lost]

    def sent_while_down(self) -> list[Attempt]:
        """Saves refused a connection while no server process existed: never received."""
        return [a for a in self.lost if a.phase == DOWN and a.connection_error]

    def cut_off(self) -> list[Attempt]:
        """The other saves without a reply: they may have gone through before the kill."""
        down = set(self.sent_while_down())
        return [a for a in self.lost if a not in down]

    def last_acked(self) -> dict[str, Ack]:
        """question → the last acknowledged save (each client has questions of its own)."""
        last: dict[str, Ack] = {}
        for ack in self.acks:
            last[ack.question] = ack
        return last


def _wait_for(condition: Callable[[], bool], what: str, clients, limit: float = WAIT_LIMIT):
    deadline = time.monotonic() + limit
    while not condition():
        broken = [c for c in clients if c.error is not None]
        if broken:
            raise CrashRunError(f"client failed: {broken[0].describe()}")
        if time.monotonic() > deadline:
            states = "; ".join(c.describe() for c in clients)
            raise CrashRunError(f"gave up waiting for {what} after {limit} s: {states}")
        time.sleep(0.02)


def questions_for(clients: int) -> list[list[str]]:
    """Each client its own free-text questions of the section (two each when there are
    enough), never shared: the last acknowledged value of a question is one client's."""
    bank = loader.latest("assessment")
    pool = [
        q.key
        for q in bank.section(SECTION).questions
        if q.when is None
        and q.type in ("text", "long_text")
        and (q.max_length or 200) >= 100  # the values sent are about 30 characters
        and not q.prefill
    ]
    per = max(1, min(2, len(pool) // clients))
    if per * clients > len(pool):
        raise CrashRunError(f"{clients} clients need {per * clients} questions; {len(pool)} exist")
    return [pool[n * per : (n + 1) * per] for n in range(clients)]


def run(app, scene: Scene, work: Path, *, warm_up: int = 5, after: int = 5) -> Outcome:
    """Clients autosave; SIGKILL to the master; orphans killed; restart; clients finish."""
    env = server_env(app, work / "instance")
    first = Gunicorn(env, work / "gunicorn-1.log")
    second: Gunicorn | None = None
    phase, stop = Phase(), threading.Event()
    current = {"server": first}
    clients: list[VendorClient] = []
    started = time.monotonic()
    seconds: dict[str, float] = {}
    try:
        port = first.start()
        seconds["first start"] = time.monotonic() - started
        for n, ((user_id, email), questions) in enumerate(
            zip(scene.vendors, questions_for(len(scene.vendors)), strict=True)
        ):
            clients.append(
                VendorClient(
                    f"client{n + 1}",
                    user_id,
                    email,
                    lambda: current["server"].url,
                    scene.assessment_id,
                    questions,
                    phase,
                    stop,
                    uploads=n == 0,
                )
            )
        for client in clients:
            client.start()
        _wait_for(
            lambda: (
                all(len(c.acks) >= warm_up for c in clients)
                and all(c.uploaded for c in clients if c.uploads)
            ),
            "the first acknowledged saves",
            clients,
        )

        # SIGKILL to the master while the clients save.
        workers = first.workers()
        phase.value = ORPHANED
        killed_at = time.monotonic()
        orphans = first.kill_master()
        acks_at_kill = sum(len(c.acks) for c in clients)
        # Could a new server take the port now? Not while an orphan keeps the socket open.
        port_free_while_orphaned = port_is_free(port)
        orphans_after_probe = [pid for pid in orphans if pid in first.workers()]
        # A short window in which orphaned workers may go on serving (or leave by themselves).
        with contextlib.suppress(CrashRunError):
            _wait_for(
                lambda: (
                    not first.workers()
                    or sum(len(c.acks) for c in clients) >= acks_at_kill + 2 * len(clients)
                ),
                "orphaned workers",
                clients,
                limit=2,
            )
        orphans_at_group_kill = first.workers()
        first.kill_group()
        phase.value = DOWN
        acks_while_orphaned = sum(1 for c in clients for a in c.acks if a.phase == ORPHANED)
        port_free = port_is_free(port)
        integrity = sqlite_integrity(app.config["DATABASE_URL"])
        seconds["kill to all dead"] = time.monotonic() - killed_at

        # Restart on the same port; the clients carry on.
        restarting = time.monotonic()
        second = Gunicorn(env, work / "gunicorn-2.log", port=port)
        current["server"] = second
        second.start()
        phase.value = RESTARTED
        seconds["restart"] = time.monotonic() - restarting
        _wait_for(
            lambda: all(sum(a.phase == RESTARTED for a in c.acks) >= after for c in clients),
            "acknowledged saves after the restart",
            clients,
        )
        stop.set()
        for client in clients:
            client.join(timeout=WAIT_LIMIT)
            if client.is_alive() or client.error is not None:
                raise CrashRunError(f"client did not finish: {client.describe()}")
        seconds["total"] = time.monotonic() - started
        return Outcome(
            port=port,
            pgid=first.pgid,
            clients=clients,
            workers_before_kill=workers,
            orphans=orphans,
            port_free_while_orphaned=port_free_while_orphaned,
            orphans_after_probe=orphans_after_probe,
            orphans_at_group_kill=orphans_at_group_kill,
            acks_while_orphaned=acks_while_orphaned,
            port_free_after_kill=port_free,
            integrity_after_crash=integrity,
            seconds=seconds,
        )
    finally:
        stop.set()
        for client in clients:
            client.abandon.set()
        for server in (first, second):
            if server is not None:
                server.stop()
        for client in clients:
            client.join(timeout=REQUEST_TIMEOUT + 5)


# ---------------------------------------------------------------------------------------------
# What the database holds
# ---------------------------------------------------------------------------------------------


def sqlite_path(database_url: str) -> Path | None:
    url = make_url(database_url)
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


def sqlite_integrity(database_url: str) -> list[str] | None:
    """``PRAGMA integrity_check`` rows (["ok"] when sound) and any ``foreign_key_check`` rows
    (SQLite only; None for another database)."""
    path = sqlite_path(database_url)
    if path is None:
        return None
    connection = sqlite3.connect(path)
    try:
        rows = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        rows += [repr(row) for row in connection.execute("PRAGMA foreign_key_check")]
        return rows
    finally:
        connection.close()


@dataclass
class Stored:
    answers: dict[str, tuple[str, int]]  # question → (value, revision)
    revisions: dict[tuple[str, int], tuple[str, int]]  # (question, revision) → (value, saved by)
    saved_events: dict[str, int]  # question → "assessment.saved" audit events
    chain_ok: bool
    chain_checked: int
    chain_reason: str
    evidence: list[EvidenceFile]
    files_by_name: dict[str, Path]  # stored name → path, every file of the store
    incoming: list[Path]  # temporary files left in the store's incoming folder


def stored(app, assessment_id: int) -> Stored:
    session = app.extensions["db_sessionmaker"]()
    try:
        answers = {
            key: (json.loads(value), revision)
            for key, value, revision in session.execute(
                sa.select(Answer.question_key, Answer.value, Answer.revision).where(
                    Answer.assessment_id == assessment_id
                )
            )
        }
        revisions = {
            (key, revision): (json.loads(value), saved_by)
            for key, revision, value, saved_by in session.execute(
                sa.select(
                    Answer.question_key,
                    AnswerRevision.revision,
                    AnswerRevision.value,
                    AnswerRevision.saved_by_id,
                )
                .join(Answer, Answer.id == AnswerRevision.answer_id)
                .where(Answer.assessment_id == assessment_id)
            )
        }
        saved_events: dict[str, int] = {}
        for details in session.scalars(
            sa.select(AuditEvent.details).where(
                AuditEvent.action == "assessment.saved",
                AuditEvent.object_type == "assessment",
                AuditEvent.object_id == str(assessment_id),
            )
        ):
            key = json.loads(details).get("question")
            saved_events[key] = saved_events.get(key, 0) + 1
        result = audit.verify(session)
        evidence = list(
            session.scalars(
                sa.select(EvidenceFile).where(EvidenceFile.assessment_id == assessment_id)
            )
        )
    finally:
        session.close()
    store = Path(app.config["EVIDENCE_DIR"])
    files = {
        path.name: path
        for path in store.rglob("*")
        if path.is_file() and storage.STORED_NAME.match(path.name)
    }
    incoming = sorted((store / storage.INCOMING).glob("*")) if store.exists() else []
    return Stored(
        answers,
        revisions,
        saved_events,
        result.ok,
        result.checked,
        result.reason,
        evidence,
        files,
        incoming,
    )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_hashes(folder: Path) -> dict[str, str]:
    """Every file of an evidence store: relative path → SHA-256."""
    return {
        path.relative_to(folder).as_posix(): sha256_of(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def table_rows(app, skip: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    """Every row of every table (ordered), for comparing two databases."""
    with engine_for(app).connect() as conn:
        return {
            table.name: sorted((tuple(row) for row in conn.execute(sa.select(table))), key=repr)
            for table in Base.metadata.sorted_tables
            if table.name not in skip
        }


# ---------------------------------------------------------------------------------------------
# Backup and restore into a fresh location
# ---------------------------------------------------------------------------------------------


@dataclass
class RoundTrip:
    create_output: str
    restore_output: str
    archive: Path
    rows_before: dict[str, list[tuple]]
    rows_restored: dict[str, list[tuple]]
    events_restored: list[str]  # actions of the restored audit trail, in order
    files_before: dict[str, str]
    files_restored: dict[str, str]
    restored_chain_ok: bool
    restored_unverified: list[str]  # evidence rows whose restored file is missing or changed

    def table_differences(self) -> list[str]:
        """Tables whose rows differ between the backed-up and the restored database beyond
        what the restore itself adds: one audit event (``backup.restored``) and so a new
        chain head (the chain is verified on its own)."""
        differ = []
        for name, rows in self.rows_before.items():
            restored = self.rows_restored.get(name, [])
            if name == "audit_chain":
                continue
            if name == "audit_event":
                if not set(rows) <= set(restored) or len(set(restored) - set(rows)) != 1:
                    differ.append(name)
            elif rows != restored:
                differ.append(name)
        return differ


@contextlib.contextmanager
def fresh_database(database_url: str, work: Path):
    """A new, empty database of the same kind: a new SQLite file, or a new PostgreSQL
    database on the same server (dropped afterwards)."""
    if sqlite_path(database_url) is not None:
        yield f"sqlite:///{work / 'restored' / 'portal.db'}"
        return
    url = make_url(database_url)
    name = f"{url.database}_restored_{os.getpid()}"
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def backup_round_trip(app, work: Path) -> RoundTrip:
    """``flask backup create`` on the crashed-and-restarted portal, then ``flask backup restore``
    into a fresh database and evidence folder; both sides read back for comparison."""
    backups = work / "backups"
    created = app.test_cli_runner().invoke(args=["backup", "create", "--to", str(backups)])
    if created.exit_code != 0:
        raise CrashRunError(f"backup create failed: {created.output}")
    (archive,) = backups.glob("portal-backup-*.tar.gz")
    rows_before = table_rows(app)
    files_before = store_hashes(Path(app.config["EVIDENCE_DIR"]))
    with fresh_database(app.config["DATABASE_URL"], work) as fresh_url:
        fresh = create_app(
            {
                "DATABASE_URL": fresh_url,
                "EVIDENCE_DIR": str(work / "restored" / "evidence"),
                "MAIL_OUTBOX": str(work / "restored" / "outbox"),
                "BASE_URL": "http://localhost",
                **CHEAP_ARGON2,
            }
        )
        try:
            restored = fresh.test_cli_runner().invoke(
                args=["backup", "restore", str(archive), "--yes"]
            )
            if restored.exit_code != 0:
                raise CrashRunError(f"backup restore failed: {restored.output}")
            rows_restored = table_rows(fresh)
            session = fresh.extensions["db_sessionmaker"]()
            try:
                chain = audit.verify(session)
                events = list(
                    session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.seq))
                )
                unverified = []
                for row in session.scalars(sa.select(EvidenceFile)):
                    try:
                        storage.verified_path(
                            Path(fresh.config["EVIDENCE_DIR"]), row.stored_name, row.sha256
                        )
                    except storage.EvidenceIntegrityError:
                        unverified.append(row.stored_name)
            finally:
                session.close()
            files_restored = store_hashes(Path(fresh.config["EVIDENCE_DIR"]))
        finally:
            engine_for(fresh).dispose()
    return RoundTrip(
        create_output=created.output,
        restore_output=restored.output,
        archive=archive,
        rows_before=rows_before,
        rows_restored=rows_restored,
        events_restored=events,
        files_before=files_before,
        files_restored=files_restored,
        restored_chain_ok=chain.ok,
        restored_unverified=unverified,
    )


# ---------------------------------------------------------------------------------------------
# The checks, for the script (the tests make the same ones, one by one)
# ---------------------------------------------------------------------------------------------


def problems(outcome: Outcome, now: Stored, trip: RoundTrip | None) -> list[str]:
    found = []
    users = {client.name: client.user_id for client in outcome.clients}
    for ack in outcome.acks:
        kept = now.revisions.get((ack.question, ack.revision))
        if kept != (ack.value, users[ack.client]):
            found.append(f"acknowledged save missing or different: {ack} → {kept}")
    for key, ack in outcome.last_acked().items():
        if now.answers.get(key) != (ack.value, ack.revision):
            found.append(f"{key}: answer {now.answers.get(key)} ≠ last acknowledged {ack}")
    values = {value for value, _by in now.revisions.values()}
    for attempt in outcome.sent_while_down():
        if attempt.value in values:
            found.append(f"a save sent while no server ran is stored: {attempt}")
    unexplained = values - {a.value for a in outcome.acks} - {a.value for a in outcome.cut_off()}
    if unexplained:
        found.append(f"stored values nobody saw acknowledged or cut off: {sorted(unexplained)}")
    for key in now.answers:
        count = sum(1 for (k, _r) in now.revisions if k == key)
        if now.saved_events.get(key, 0) != count:
            found.append(
                f"{key}: {count} revisions but {now.saved_events.get(key, 0)} audit events"
            )
    went_through = {a.question for a in outcome.cut_off() if a.value in values}
    for attempt in outcome.refused:  # 409 only: the client stops at any other refusal
        if attempt.question not in went_through:
            found.append(f"refused as stale with no save cut off before: {attempt}")
    if outcome.integrity_after_crash not in (None, ["ok"]):
        found.append(f"integrity check after the crash: {outcome.integrity_after_crash}")
    if not now.chain_ok:
        found.append(f"audit chain broken: {now.chain_reason}")
    if not outcome.port_free_after_kill:
        found.append("the port was still taken after the process group was killed")
    rows = {row.sha256: row for row in now.evidence}
    for upload in outcome.uploaded:
        if upload.sha256 not in rows:
            found.append(f"acknowledged upload missing: {upload}")
    for row in now.evidence:
        path = now.files_by_name.get(row.stored_name)
        if path is None or sha256_of(path) != row.sha256:
            found.append(f"evidence row {row.id} has no intact file")
    if trip is not None:
        for name in trip.table_differences():
            found.append(f"restored table {name} differs")
        if trip.events_restored[-1:] != ["backup.restored"]:
            found.append("the restore is not the last event of the restored audit trail")
        if trip.files_before != trip.files_restored:
            found.append("restored evidence store differs")
        if not trip.restored_chain_ok or trip.restored_unverified:
            found.append("restored audit chain or evidence files do not verify")
    return found


def summary(outcome: Outcome, now: Stored, trip: RoundTrip | None) -> str:
    by_phase = {name: 0 for name in PHASE_NAMES.values()}
    for ack in outcome.acks:
        by_phase[PHASE_NAMES[ack.phase]] += 1
    lines = [
        f"clients: {len(outcome.clients)}, port {outcome.port}",
        "acknowledged saves: "
        + ", ".join(f"{n} {name}" for name, n in by_phase.items())
        + f" (total {len(outcome.acks)})",
        f"saves without acknowledgement: {len(outcome.lost)} "
        f"({len(outcome.sent_while_down())} refused a connection while no server ran, "
        f"{sum(a.value in {v for v, _ in now.revisions.values()} for a in outcome.cut_off())}"
        f" cut off by the kill yet stored); stale-page refusals: {len(outcome.refused)}",
        f"uploads acknowledged: {len(outcome.uploaded)}, lost: {len(outcome.uploads_lost)}; "
        f"evidence rows: {len(now.evidence)}, files in the store: {len(now.files_by_name)}, "
        f"left in incoming: {len(now.incoming)}",
        f"workers before the kill: {outcome.workers_before_kill}; orphaned by the master's "
        f"SIGKILL: {outcome.orphans}; still alive when the group was killed: "
        f"{outcome.orphans_at_group_kill}; saves they acknowledged: {outcome.acks_while_orphaned}",
        f"port free while orphans lived: {outcome.port_free_while_orphaned}; "
        f"once the group was dead: {outcome.port_free_after_kill}",
        f"SQLite integrity after the crash: {outcome.integrity_after_crash}",
        f"audit chain: {'ok' if now.chain_ok else now.chain_reason} ({now.chain_checked} events)",
        "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in outcome.seconds.items()),
    ]
    if trip is not None:
        lines.append(
            f"backup {trip.archive.name}: restored into a fresh location, "
            f"{sum(len(v) for v in trip.rows_restored.values())} rows, "
            f"{len(trip.files_restored)} files, chain {'ok' if trip.restored_chain_ok else 'BROKEN'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from portal.cli import upgrade

    parser = argparse.ArgumentParser(
        prog="python -m tests.crash", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="portal-crash-"))
    url = args.database_url or f"sqlite:///{work / 'portal.db'}"
    # This process builds the same app as the servers, keeping everything in the work folder.
    os.environ.update(
        {
            "PORTAL_ENV": "testing",
            "PORTAL_SECRET_KEY": SECRET_KEY,
            "PORTAL_INSTANCE_PATH": str(work / "instance"),
        }
    )
    try:
        upgrade(url)
        app = create_app(
            {
                "DATABASE_URL": url,
                "EVIDENCE_DIR": str(work / "evidence"),
                "MAIL_OUTBOX": str(work / "outbox"),
                "BASE_URL": "http://localhost",
                **CHEAP_ARGON2,
            }
        )
        scene = arrange(app, args.clients)
        outcome = run(app, scene, work)
        now = stored(app, scene.assessment_id)
        trip = backup_round_trip(app, work)
        engine_for(app).dispose()
        print(summary(outcome, now, trip))
        found = problems(outcome, now, trip)
        for problem in found:
            print(f"PROBLEM: {problem}", file=sys.stderr)
        print("all checks hold" if not found else f"{len(found)} problem(s)")
        return 1 if found else 0
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Run the repository's commands (``python train.py ...``, ``python -m demo ...``) as real child processes, fast.

Every command is a separate process with its own exit status, stdout, stderr, working directory and environment,
running the script exactly as ``python <script> <args>`` does (``runpy`` with ``__name__ == "__main__"``). To
save the ~3 s of importing torch per command, the children are forked from one *zygote* interpreter that has
imported the project's modules and done nothing else (no torch thread pool exists yet, so forking is safe).
``PROMPTKD_FRESH_PROCESSES=1`` starts a fresh ``python`` for every command instead (same results, slower).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FRESH_ENV = "PROMPTKD_FRESH_PROCESSES"

_ZYGOTE = r"""
import json, os, runpy, sys, traceback
sys.path.insert(0, os.getcwd())
import torch, train, reporting.cli, demo.__main__  # noqa: F401  (imports only: no thread pool before fork)

def child(req):
    for name in ("stdout", "stderr"):
        fd = os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1 if name == "stdout" else 2)
        os.close(fd)
    os.chdir(req["cwd"])
    for key, value in req["env"].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    sys.argv = list(req["argv"])
    code = 0
    try:
        if req["module"]:
            runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
        else:
            sys.path[0] = os.path.dirname(os.path.abspath(req["argv"][0]))
            runpy.run_path(req["argv"][0], run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)

reply = sys.stdout
for line in sys.stdin:
    req = json.loads(line)
    reply.flush()
    pid = os.fork()
    if pid == 0:
        child(req)
    reply.write(json.dumps({"pid": pid}) + "\n")
    reply.flush()
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    reply.write(json.dumps({"rc": rc}) + "\n")
    reply.flush()
"""


@dataclass
class Completed:
    """Outcome of one command."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


class CommandRunner:
    """``run(argv)`` executes ``python *argv`` (``argv[0]`` a script path, or ``["-m", module, ...]``); an
    ``argv`` starting with ``bash`` runs that shell command as a fresh process."""

    def __init__(self, base_env: dict[str, str] | None = None) -> None:
        self.base_env = {**os.environ, **(base_env or {})}
        self.fresh = os.environ.get(FRESH_ENV, "") not in ("", "0") or not hasattr(os, "fork")
        self._tmp = tempfile.TemporaryDirectory(prefix="cli-runner-")
        self._count = 0
        self._zygote: subprocess.Popen | None = None
        self._buffer = b""

    def _start(self) -> subprocess.Popen:
        if self._zygote is None or self._zygote.poll() is not None:
            self._zygote = subprocess.Popen(
                [sys.executable, "-c", _ZYGOTE],
                cwd=REPO,
                env=self.base_env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            self._buffer = b""
        return self._zygote

    def run(
        self, argv: list[str], cwd: Path | str = REPO, env: dict[str, str | None] | None = None, timeout: float = 120
    ) -> Completed:
        env = env or {}
        module = argv[1] if argv[0] == "-m" else None
        script_argv = [module, *argv[2:]] if module else [str(argv[0]), *argv[1:]]
        if self.fresh or argv[0] == "bash":
            full_env = {**self.base_env, **{k: v for k, v in env.items() if v is not None}}
            for key in [k for k, v in env.items() if v is None]:
                full_env.pop(key, None)
            done = subprocess.run(
                argv if argv[0] == "bash" else [sys.executable, *argv],
                cwd=cwd,
                env=full_env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            return Completed(list(argv), done.returncode, done.stdout, done.stderr)

        self._count += 1
        out = Path(self._tmp.name) / f"{self._count}.out"
        err = Path(self._tmp.name) / f"{self._count}.err"
        request = {"argv": script_argv, "module": module, "cwd": str(cwd), "env": env, "stdout": str(out)}
        request["stderr"] = str(err)
        zygote = self._start()
        zygote.stdin.write((json.dumps(request) + "\n").encode())
        zygote.stdin.flush()
        pid = json.loads(self._read_line(zygote, 60))["pid"]
        try:
            rc = json.loads(self._read_line(zygote, timeout))["rc"]
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            self._read_line(zygote, 30)
            raise
        return Completed(list(argv), rc, out.read_text(errors="replace"), err.read_text(errors="replace"))

    def _read_line(self, proc: subprocess.Popen, timeout: float) -> str:
        """One reply line, read from the raw pipe (a buffered reader could hide a second line from select)."""
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise TimeoutError(f"no answer from the command runner within {timeout:.0f} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the command runner exited (status {proc.poll()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def close(self) -> None:
        if self._zygote is not None:
            self._zygote.stdin.close()
            self._zygote.wait(timeout=30)
            self._zygote = None
        self._tmp.cleanup()

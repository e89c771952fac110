"""Soak the shared sweep: several sweep commands on one study while their workers are killed,
frozen past the grace period, and the database restarts.

    python benchmarks/sweep_soak.py [--backend postgresql|sqlite|both] [--configs 60] [--seed 0]

Each *command* is a process running ``sigprop.sweep.run_study`` on the same study (what
``sigprop sweep`` runs, with a stand-in evaluation: 1.5 s per batch of 2, deterministic losses,
every evaluation logged) with one worker process, heartbeat 1 s and grace period 3 s (instead of
10 s / 60 s, to keep the soak short). Three commands share a PostgreSQL study (pgserver starts
the server), two share a SQLite file. While they work, a seeded supervisor, every 1.5–3.5 s:

* SIGKILLs a command's whole process group (the command and its worker) and starts it again;
* or SIGSTOPs one worker for 5 s (past the grace period: its trials are taken back and given to
  another worker) and SIGCONTs it, so that it comes back holding trials that are no longer its;
* and once, at a third of the sweep, restarts the PostgreSQL server (``pg_ctl restart -m
  fast``), which drops every connection: the commands stop with one line, and are started again.

A command that ends while configurations remain is started again. At the end it checks what a
sweep promises: every configuration has exactly one COMPLETE trial, ``trials_frame`` (what
``sigprop analyze`` reads) has one row per configuration, and every COMPLETE trial seen during
the soak is still COMPLETE with the same value (no finished result lost or overwritten). It
prints the kills, freezes, restarts, the evaluations done twice (the batches of killed or frozen
workers, expected), retried trials and duplicate COMPLETE trials (must be 0).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEARTBEAT, GRACE = 1, 3
BATCH, BATCH_SECONDS = 2, 1.5
FREEZE_SECONDS = GRACE + 2
STUDY = "soak"


# --- the stand-in evaluation (imported by the worker processes as "sweep_soak:make_evaluate")

def make_evaluate(log: str):
    """An ``Evaluate`` that sleeps BATCH_SECONDS per batch, returns deterministic losses and
    appends every configuration it evaluated to ``log`` (one line per batch)."""

    def evaluate(configs: list[dict]) -> list[dict]:
        time.sleep(BATCH_SECONDS)
        with open(log, "a") as out:
            out.write(json.dumps({"pid": os.getpid(), "configs": configs}) + "\n")
        return [{"status": "complete", "test_loss": 1.0 + config["alpha"] + config["seed"] / 10,
                 "train_loss": 1.0, "last_finite_loss": 1.0} for config in configs]

    return evaluate


# --- the soak ----------------------------------------------------------------------------------

def spec(configs: int):
    from sigprop.sweep import SweepSpec

    alphas = [round(0.05 + 0.9 * i / (configs // 2 - 1), 6) for i in range(configs // 2)]
    return SweepSpec(grid={"alpha": alphas, "seed": [0, 1]}, fixed={"steps": 1})


COMMAND = """
import sys
from sigprop.sweep import run_study
from sigprop.sweep.faults import StorageError
import sweep_soak
try:
    run_study({url!r}, {study!r}, sweep_soak.spec({configs}), "sweep_soak:make_evaluate",
              workers=1, batch_size={batch}, progress=False, factory_kwargs={{"log": {log!r}}},
              heartbeat_interval={heartbeat}, grace_period={grace})
except StorageError as fault:
    print("error:", fault, file=sys.stderr)
    sys.exit(2)
"""


class Soak:
    """Commands on one study, and the chaos the supervisor brings to them."""

    def __init__(self, url: str, commands: int, configs: int, folder: Path, seed: int,
                 restart_database=None):
        self.url, self.configs, self.folder = url, configs, folder
        self.rng = random.Random(seed)
        self.log = str(folder / "evaluations.jsonl")
        self.restart_database = restart_database
        self.processes: list[subprocess.Popen | None] = [None] * commands
        self.frozen: list[tuple[float, int]] = []
        self.counts = collections.Counter()
        self.seen: dict[int, float] = {}
        self.lines: list[str] = []

    def start(self, slot: int) -> None:
        code = COMMAND.format(url=self.url, study=STUDY, configs=self.configs, batch=BATCH,
                              log=self.log, heartbeat=HEARTBEAT, grace=GRACE)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        stderr = open(self.folder / f"command{slot}.err", "a")
        self.processes[slot] = subprocess.Popen([sys.executable, "-c", code], env=env,
                                                stderr=stderr, start_new_session=True)
        self.counts["commands started"] += 1

    def run(self, timeout: float) -> None:
        from sigprop.sweep import open_study
        for slot in range(len(self.processes)):
            self.start(slot)
        started = time.monotonic()
        next_event = started + self.rng.uniform(1.5, 3.5)
        restarted = self.restart_database is None
        while time.monotonic() - started < timeout:
            time.sleep(0.2)
            self._thaw()
            complete = self._observe(open_study)
            if complete is not None and complete >= self.configs:
                break
            for slot, process in enumerate(self.processes):
                if process.poll() is not None:
                    self.counts[f"commands ended (exit {process.returncode})"] += 1
                    self.start(slot)
            if not restarted and complete is not None and complete >= self.configs // 3:
                self.restart_database()
                self.counts["database restarts"] += 1
                restarted = True
            if time.monotonic() >= next_event:
                self._chaos()
                next_event = time.monotonic() + self.rng.uniform(1.5, 3.5)
        else:
            raise RuntimeError(f"the sweep did not finish within {timeout} s")
        for _, pid in self.frozen:
            _signal(pid, signal.SIGCONT)  # a frozen worker may have been killed with its command
        for process in self.processes:
            process.wait(timeout=60)

    def _observe(self, open_study) -> int | None:
        """Record every COMPLETE trial's value; None while the database is away."""
        from optuna.trial import TrialState
        try:
            trials = open_study(self.url, STUDY, None).get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - restarting: look again next time
            return None
        for trial in trials:
            if trial.state == TrialState.COMPLETE:
                if trial.number in self.seen and self.seen[trial.number] != trial.value:
                    self.counts["results overwritten"] += 1
                self.seen.setdefault(trial.number, trial.value)
        return len({json.dumps(t.params, sort_keys=True) for t in trials
                    if t.state == TrialState.COMPLETE})

    def _chaos(self) -> None:
        running = [p for p in self.processes if p.poll() is None]
        if not running:
            return
        process = self.rng.choice(running)
        workers = _children(process.pid)
        if self.rng.random() < 0.6 or not workers:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended meanwhile
                pass
            process.wait()
            self.counts["commands killed (SIGKILL)"] += 1
            self.start(self.processes.index(process))
        else:
            pid = self.rng.choice(workers)
            if not _signal(pid, signal.SIGSTOP):
                return
            self.frozen.append((time.monotonic() + FREEZE_SECONDS, pid))
            self.counts["workers frozen past the grace period"] += 1

    def _thaw(self) -> None:
        now = time.monotonic()
        for due, pid in [f for f in self.frozen if f[0] <= now]:
            _signal(pid, signal.SIGCONT)
            self.frozen.remove((due, pid))

    def verify(self) -> dict[str, int]:
        """What a sweep promises, and the figures of the soak."""
        from optuna.trial import TrialState
        from sigprop.sweep import config_key, open_study, trials_frame

        trials = open_study(self.url, STUDY, None).trials
        complete = collections.Counter(config_key(t.params) for t in trials
                                       if t.state == TrialState.COMPLETE)
        wanted = {config_key(c) for c in spec(self.configs).configurations()}
        evaluated = collections.Counter(
            config_key({k: c[k] for k in ("alpha", "seed")})
            for line in Path(self.log).read_text().splitlines()
            for c in json.loads(line)["configs"])
        final = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
        figures = {
            "configurations": self.configs,
            "configurations with exactly one COMPLETE trial": sum(
                complete[k] == 1 for k in wanted),
            "duplicate COMPLETE trials": sum(max(0, n - 1) for n in complete.values()),
            "rows of trials_frame (what analyze reads)": len(trials_frame(self.url, STUDY)),
            "finished results lost": sum(n not in final or final[n] != v
                                         for n, v in self.seen.items()),
            "trials retried (FAIL, then a new attempt)": sum(
                t.state == TrialState.FAIL and "superseded_by" not in t.user_attrs
                for t in trials),
            "configurations evaluated more than once": sum(n > 1 for n in evaluated.values()),
            **self.counts,
        }
        ok = (figures["configurations with exactly one COMPLETE trial"] == self.configs
              and figures["duplicate COMPLETE trials"] == 0
              and figures["rows of trials_frame (what analyze reads)"] == self.configs
              and figures["finished results lost"] == 0
              and self.counts["results overwritten"] == 0)
        figures["promises kept"] = int(ok)
        return figures


def _signal(pid: int, signum: int) -> bool:
    """Send ``signum`` to ``pid``; False if the process has ended."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def _children(pid: int) -> list[int]:
    try:
        import psutil
    except ImportError:
        return []
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)
                if "resource_tracker" not in " ".join(c.cmdline())]
    except psutil.Error:
        return []


def soak_postgresql(configs: int, seed: int, timeout: float, out: Path) -> dict[str, int]:
    import pgserver

    data = Path(tempfile.mkdtemp(prefix="sigprop-soak-pg-"))
    server = pgserver.get_server(data, cleanup_mode="delete")

    def restart() -> None:
        pgserver.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata,
                        user=server.system_user)

    try:
        soak = Soak(server.get_uri(), 3, configs, out, seed, restart)
        soak.run(timeout)
        return soak.verify()
    finally:
        server.cleanup()


def soak_sqlite(configs: int, seed: int, timeout: float, out: Path) -> dict[str, int]:
    soak = Soak(f"sqlite:///{out}/soak.sqlite", 2, configs, out, seed)
    soak.run(timeout)
    return soak.verify()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--configs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the evaluation log and the commands' stderr here")
    args = parser.parse_args()
    runs = {"postgresql": soak_postgresql, "sqlite": soak_sqlite}
    backends = list(runs) if args.backend == "both" else [args.backend]
    results = {}
    for backend in backends:
        started = time.monotonic()
        out = Path(tempfile.mkdtemp(prefix="sigprop-soak-")) if args.out is None else args.out
        out = out / backend
        out.mkdir(parents=True, exist_ok=True)
        results[backend] = runs[backend](args.configs, args.seed, args.timeout, out)
        results[backend]["seconds"] = round(time.monotonic() - started)
    names = list(dict.fromkeys(name for figures in results.values() for name in figures))
    print(f"{'':52s}" + "".join(f"{b:>12s}" for b in backends))
    for name in names:
        print(f"{name:52s}" + "".join(f"{results[b].get(name, 0):>12}" for b in backends))
    if not all(figures["promises kept"] for figures in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()

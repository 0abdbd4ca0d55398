"""trial_timeout_s ends an attempt wherever it hangs (issue "A sweep folder is untrusted input", item 5).

The finding: the limit was checked between steps only, so a first optimiser step that slept 90 s ran to its end and
was then reported as "timed out after 10 s" (the limit, not the time), and a step that truly hangs never timed
out. The watchdog (sweep/trial.py) is tested on its own (a thread, then a process it ends), and in a tiny sweep
whose trial 1 sleeps in its second optimiser step (tests/slow_step.py, loaded into the module's Ray workers).
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from slow_step import SLEEP_S  # noqa: E402
from sweep_world import tiny_sweep, world_fixture  # noqa: E402,F401  (fixtures)

from tune_distill.sweep.driver import run_sweep  # noqa: E402
from tune_distill.sweep.trial import (  # noqa: E402
    TRIAL_ERROR_FILE,
    Deadline,
    TrialHung,
    TrialTimeout,
    Watchdog,
    end_hung_attempt,
    hard_stop_grace,
)

TESTS = Path(__file__).resolve().parent


# --- the watchdog on its own ---------------------------------------------------------------------------------


def _watch(deadline: Deadline, seconds: float, grace_s: float = 0.1) -> list[tuple[TrialTimeout, threading.Thread]]:
    """Run a block of `seconds` (a step that sleeps) under a watchdog that records what it would end."""
    fired: list[tuple[TrialTimeout, threading.Thread]] = []
    with Watchdog(deadline, lambda timeout, thread: fired.append((timeout, thread)), grace_s=grace_s):
        deadline(2)
        time.sleep(seconds)
    time.sleep(0.3)  # a watchdog that should not fire has had its chance
    return fired


def test_the_watchdog_fires_for_a_step_that_sleeps_past_the_limit_with_the_true_time_and_the_step():
    began = time.monotonic()
    fired = _watch(Deadline(0.2, 7), seconds=1.0)
    assert len(fired) == 1
    timeout, thread = fired[0]
    assert thread is threading.current_thread()
    elapsed = float(re.fullmatch(r"trial 0007 timed out after ([\d.]+) s at step 2 \(trial_timeout_s = 0.2\)",
                                 str(timeout)).group(1))
    assert 0.25 <= elapsed < 0.9, timeout  # the time it fired (limit + grace), not the limit
    assert time.monotonic() - began < 2


def test_the_watchdog_stays_quiet_for_an_attempt_that_ends_in_time_or_stops_at_the_check():
    assert _watch(Deadline(0.5, 7), seconds=0.05) == []
    assert _watch(Deadline(0, 7), seconds=0.3) == []  # no limit: no watchdog
    deadline = Deadline(0.1, 7)
    time.sleep(0.15)
    with pytest.raises(TrialTimeout):
        deadline(3)  # the clean path raised: the attempt is ending, the watchdog leaves it alone
    with Watchdog(deadline, lambda *_: pytest.fail("fired after the clean path"), grace_s=0.05):
        time.sleep(0.4)


def test_a_hung_attempt_is_ended_in_the_thread_tune_waits_in_then_its_process(tmp_path):
    """As in a Ray actor: the attempt hangs in a thread of its own, the main thread polls for its results."""
    deadline, exits = Deadline(0.2, 7), []
    end = functools.partial(end_hung_attempt, run_dir=tmp_path, identity={"number": 7}, grace_s=0.3,
                            exit_process=exits.append)

    def attempt() -> None:
        with Watchdog(deadline, end, grace_s=0.1):
            deadline(4)
            time.sleep(1.5)  # a step that hangs (in C: the watchdog's exception cannot reach this thread)

    hung = threading.Thread(target=attempt)
    began = time.monotonic()
    hung.start()
    with pytest.raises(TrialHung, match=r"trial 0007 timed out after 0\.\d s at step 4 \(trial_timeout_s = 0.2\)"):
        while time.monotonic() - began < 5:
            time.sleep(0.02)  # Tune's main thread, waiting for a result
    assert time.monotonic() - began < 1.0
    hung.join()
    assert exits == [1]  # still alive after the grace: the process would be ended
    details = json.loads((tmp_path / TRIAL_ERROR_FILE).read_text())
    assert details["error"].startswith("TrialTimeout: trial 0007 timed out after") and "time.sleep(1.5)" in \
        details["traceback"]


def test_hard_stop_grace_is_a_tenth_of_the_limit_between_1_and_30_s():
    assert [hard_stop_grace(s) for s in (2, 50, 3600)] == [1.0, 5.0, 30.0]


def test_a_process_hung_in_a_step_is_ended_and_leaves_the_timeout_in_trial_error_json(tmp_path):
    script = textwrap.dedent(f"""
        import functools, time
        from pathlib import Path
        from tune_distill.sweep.trial import Deadline, Watchdog, end_hung_attempt
        deadline = Deadline(0.5, 7)
        run_dir = Path({str(tmp_path)!r})
        with Watchdog(deadline, functools.partial(end_hung_attempt, run_dir=run_dir, identity={{"number": 7}},
                                                 grace_s=30)):
            deadline(3)
            time.sleep(120)  # a step that hangs
        print("not ended")
    """)
    (tmp_path / "hang.py").write_text(script)
    began = time.monotonic()
    done = subprocess.run([sys.executable, str(tmp_path / "hang.py")], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - began
    assert done.returncode == 1 and "not ended" not in done.stdout, done.stderr
    details = json.loads((tmp_path / TRIAL_ERROR_FILE).read_text())
    assert re.fullmatch(r"TrialTimeout: trial 0007 timed out after 1\.\d s at step 3 \(trial_timeout_s = 0.5\)",
                        details["error"]), details["error"]
    assert "time.sleep(120)" in details["traceback"]  # where it hung
    assert took < 30, took  # imports included; the sleep would take 120 s


# --- in a sweep --------------------------------------------------------------------------------------------------

LIMIT_S = 10.0  # a tiny trial's whole attempt (model, 2 steps, evaluations) takes about 4 s on 2 busy cores


@pytest.fixture(scope="module", name="slow_ray")
def slow_ray_fixture():
    """One local Ray whose workers load tests/slow_step.py: trial 1's second optimiser step sleeps."""
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False,
                       log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)},
                                                         "worker_process_setup_hook": "slow_step.install"})
    yield context.address_info["address"]
    ray.shutdown()


def test_a_trial_hung_in_a_step_is_ended_at_its_limit_and_the_other_trial_completes(world, slow_ray, tmp_path):
    began = time.monotonic()
    records = run_sweep(tiny_sweep(world, num_samples=2, trial_timeout_s=LIMIT_S), tmp_path / "sweep")
    took = time.monotonic() - began
    by_number = {record["number"]: record for record in records}
    assert by_number[0]["status"] == "complete", by_number[0]["error"]
    hung = by_number[1]
    assert hung["status"] == "failed" and hung["attempts"] == 1
    found = re.fullmatch(r"TrialTimeout: trial 0001 timed out after ([\d.]+) s at step 1 \(trial_timeout_s = 10\)",
                         hung["error"] or "")
    assert found, hung["error"]
    assert LIMIT_S < float(found.group(1)) < LIMIT_S + hard_stop_grace(LIMIT_S) + 5
    assert hung["metrics"]["step"] == 1  # what it reported before it hung is kept
    details = json.loads((Path(hung["run_dir"]) / TRIAL_ERROR_FILE).read_text())
    assert "slow_step" in details["traceback"]  # where it hung
    assert took < SLEEP_S / 2, took

"""A platform Check vs running the checker by hand, and one Submit, in one run.

    ./kernellab bench grading [--runs 5]

On one running hello-module lab with the reference solution in it:

1. By hand: what a person with the guest agent would do: copy check.py and
   the checker library into the guest, run ``python3 check.py``, read its
   report (one guest-agent exec with the files on stdin, as tight as it gets).
2. Platform: POST Check as the student, poll the attempt's JSON until it is
   finished (the page does the same): click to result, through the view, the
   Celery worker on its host queue, the runner and the report parser.
3. Submit: POST Submit, click to result: the artifacts collected, a clean
   guest from the warm pool, the checker with the hidden tests, the clean
   guest destroyed.

Prints both medians and their ratio, and the Submit's wall time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.support import configure, destroy_all, start_lab

WORK = Path("/var/lib/kernellab/bench-grading")
SLUG = "hello-module"


def click_to_result(client: Any, action: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    response = client.post(f"/exercises/{SLUG}/{action}", HTTP_ACCEPT="application/json")
    if response.status_code != 202:
        raise RuntimeError(f"{action} refused: {response.content!r}")
    status_url = response.json()["status_url"]
    while True:
        payload = client.get(status_url).json()
        if payload["is_finished"]:
            return time.monotonic() - started, payload
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    configure(WORK)
    from django.test import Client

    from exercises.grading.bundles import checker_payload, with_nonce
    from exercises.models import Exercise
    from exercises.trial import apply_variant
    from labplatform.accounts.models import User
    from tests.support.processes import host_worker
    from vms import lifecycle
    from vms.hypervisor.agent import GuestAgent
    from vms.images import ensure_image
    from vms.models import VMState

    ensure_image(progress=print)
    client = Client()
    client.force_login(User.objects.get(username="alice"))  # axes wants a request for login()
    version = Exercise.objects.get(slug=SLUG).current_version
    assert version is not None
    env = {"VM_POOL_SIZE": "1", "VIRT_TYPE": "qemu", "VM_DIR": str(WORK / "vms")}
    by_hand: list[float] = []
    platform: list[float] = []
    try:
        with host_worker(WORK, "local", **env):
            vm = start_lab(client, SLUG)
            deadline = time.monotonic() + 300
            while vm.state != VMState.RUNNING:
                if vm.state == VMState.FAILED or time.monotonic() > deadline:
                    raise RuntimeError(f"lab did not start: {vm.error_message}")
                time.sleep(0.2)
                vm.refresh_from_db()
            agent = GuestAgent(lifecycle.hypervisor(vm.host.uri).lookup(vm.domain_name))
            apply_variant(
                agent, Path(__file__).parents[1] / "exercises/catalogue" / SLUG / "solution"
            )
            payload = with_nonce(checker_payload(version, mode="check"), "by-hand")
            script = (
                'd=$(mktemp -d) && cd "$d" && tar -xzf - && python3 check.py; '
                'status=$?; rm -rf "$d"; exit $status'
            )
            env_vars = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "KERNELLAB_MODE=check"]
            for run in range(args.runs):
                started = time.monotonic()
                result = agent.exec(["sh", "-c", script], stdin=payload, env=env_vars, timeout=300)
                by_hand.append(time.monotonic() - started)
                assert b'"nonce": "by-hand"' in result.stdout or b"by-hand" in result.stdout, result
                seconds, outcome = click_to_result(client, "check")
                assert outcome["status"] == "graded", outcome
                platform.append(seconds)
                print(f"run {run + 1}: by hand {by_hand[-1]:.2f}s, platform Check {seconds:.2f}s")
            submit_seconds, outcome = click_to_result(client, "submit")
            print(f"Submit: {submit_seconds:.2f}s, {outcome['score']}/{outcome['max_score']}")
    finally:
        destroy_all(WORK)

    hand, plat = statistics.median(by_hand), statistics.median(platform)
    print(f"\n{'path':<34}{'median s':>10}")
    print(f"{'checker by hand (guest agent)':<34}{hand:>10.2f}")
    print(f"{'platform Check, click to result':<34}{plat:>10.2f}")
    print(f"{'ratio':<34}{plat / hand:>10.2f}")
    print(f"{'Submit, click to result':<34}{submit_seconds:>10.2f}")


if __name__ == "__main__":
    main()

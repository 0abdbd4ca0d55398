"""Connecting the sweep's driver to Ray: join a cluster (token authentication, what its workers are sent) or start
a local Ray with its dashboard on 127.0.0.1.

What it does: `connect_ray` joins the cluster at an address (or RAY_ADDRESS) passing the workers PROPAGATED_ENV
and, only where the sweep asks, the AWS credentials; else it starts a local Ray whose workers inherit this
process's environment less the sweep folders' signing key. Two private Ray settings it touches are reached
through private_api (each change a WARNING, never a failed sweep).

Must not know: trials, searchers, schedulers, sweep folders.

Example (CPU, seconds: a local Ray and its dashboard URL):
    python -c "from tune_distill.sweep.connect import connect_ray; print(connect_ray(num_cpus=1))"
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

from tune_distill import remote
from tune_distill.private_api import PrivateApiChanged, ray_token_auth_enabled, set_tune_env_propagation
from tune_distill.signing import hidden_key_env

log = logging.getLogger(__name__)

# Environment variables a joined cluster's workers need to behave like the driver (offline hub, quiet tokenizers).
PROPAGATED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM")


def connect_ray(address: str | None = None, num_cpus: int | None = None,
                extra_env: Sequence[str] = (), num_gpus: int | None = None) -> tuple[bool, str | None]:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray with its dashboard on 127.0.0.1.

    A joined cluster's workers get PROPAGATED_ENV and `extra_env` (those set here) through the job's
    runtime_env, which Ray logs in plain text on every node: nothing secret belongs there unless the user
    asked for it (remote.CREDENTIAL_ENV); a local Ray's workers inherit this process's environment, less the
    sweep folders' signing key (signing.hidden_key_env: trials never need it).
    Returns (whether we started Ray here and must shut it down, the dashboard URL if any). An already
    initialised Ray (e.g. in tests) is used as it is.
    """
    import ray

    forward_credentials = bool(set(remote.CREDENTIAL_ENV) & set(extra_env))
    _tune_forwards_credentials(forward_credentials)
    if ray.is_initialized():
        return False, None
    address = address or os.environ.get("RAY_ADDRESS") or None
    env_vars = {name: os.environ[name] for name in (*PROPAGATED_ENV, *extra_env) if name in os.environ}
    runtime_env = {"env_vars": env_vars} if env_vars else None
    if address:
        try:
            context = ray.init(address=address, runtime_env=runtime_env)
        except ConnectionError as error:
            raise ConnectionError(
                f"{error}. If the cluster requires token authentication (a `ray start` with RAY_AUTH_MODE=token, "
                "as cluster/gpu.yaml and cluster/kuberay.yaml do), set RAY_AUTH_MODE=token here and provide the "
                "cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token (make cluster-up writes it there)"
            ) from error
        log.info("joined the Ray cluster at %s", address)
        if any(name in os.environ for name in remote.CREDENTIAL_ENV) and not forward_credentials:
            log.info("the AWS credentials set here are not passed to the cluster's workers: each node uses its own "
                     "(instance role, IRSA, ~/.aws); sweep option forward_aws_credentials passes them")
    else:
        # address="local": a new instance here, never a cluster someone else `ray start`ed on this machine
        try:
            with hidden_key_env():
                context = ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=True,
                                   dashboard_host="127.0.0.1")
        except Exception as error:  # missing dashboard packages, port trouble, ...
            log.warning("the Ray dashboard could not start (%s: %s); running without it", type(error).__name__, error)
            ray.shutdown()
            with hidden_key_env():
                context = ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False)
    url = getattr(context, "dashboard_url", None) or None
    if url:
        url = url if "://" in url else f"http://{url}"
        log.info("Ray dashboard: %s", url)
        print(f"Ray dashboard: {url}", file=sys.stderr, flush=True)
        if _token_auth_enabled():
            # how to get in, never the token itself: logs outlive the session
            hint = ("  it asks for Ray's authentication token: `ray get-auth-token` prints it (it is kept in "
                    "~/.ray/auth_token, or RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH when set); paste it there")
            log.info(hint.strip())
            print(hint, file=sys.stderr, flush=True)
    return not address, url


def _token_auth_enabled() -> bool:
    """Whether this Ray process uses token authentication (a private Ray check: private_api).

    When that check has changed, a WARNING says so and the answer is True: going on is safe, the answer only
    decides whether a hint about the dashboard's token is shown."""
    try:
        return ray_token_auth_enabled()
    except PrivateApiChanged as changed:
        log.warning("%s", changed)
        return True


def _tune_forwards_credentials(enabled: bool) -> None:
    """Ray Tune itself copies the driver's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN into
    every trial actor's runtime_env, which Ray logs on the node that runs it: keep them out of it unless the
    sweep asks for forwarding (a private Ray setting: private_api.set_tune_env_propagation).

    When that setting has changed, a WARNING says what may happen to the credentials and the sweep goes on:
    its trials and results do not depend on it (each node has credentials of its own, or the sweep forwards them
    through the job's runtime_env), only where the driver's credentials may be logged does."""
    try:
        set_tune_env_propagation(remote.CREDENTIAL_ENV, enabled)
    except PrivateApiChanged as changed:
        log.warning("%s", changed)

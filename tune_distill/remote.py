"""Remote storage for sweeps: an S3-compatible bucket (or any pyarrow URI) as a pyarrow filesystem.

What it does:
  * `check_location`: syntax of a sweep's `storage_path` / `storage_endpoint` (no network).
  * `resolve_endpoint` / `open_location`: the endpoint (the setting, else AWS_ENDPOINT_URL_S3, else
    AWS_ENDPOINT_URL, else AWS itself) and a `pyarrow.fs.S3FileSystem` for `s3://bucket/prefix`, with
    the path on it (`bucket/prefix`), the form Ray Tune takes with `RunConfig(storage_filesystem=...)`.
    Credentials are never part of the filesystem object (it is pickled to Ray workers and into the
    experiment's tuner.pkl): the AWS SDK's usual chain finds them on each node (AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE and ~/.aws files, an instance role, IRSA);
    the region comes from AWS_REGION / AWS_DEFAULT_REGION. The driver passes joined workers only the
    endpoint and region (WORKER_ENV); its credentials (CREDENTIAL_ENV) only when asked to, see there.
  * `probe`: the bucket exists and a marker object can be written and deleted under the prefix;
    errors say which (missing bucket, refused or missing credentials, unreachable endpoint).
  * `upload_files` / `download_file` / `exists`: copies of a sweep's own files (sweep.json,
    trials.jsonl, results files) next to the Tune experiment.

Must not know: Ray, trials, searchers, the report's contents. The sweep package (sweep/storage.py: where a
sweep keeps its experiment), report.py and confirm.py call it.

Example (a MinIO or moto server on 127.0.0.1:9000 with a bucket `sweeps`):
    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... python -c "from tune_distill import remote; \
        fs, path = remote.open_location('s3://sweeps/smoke', 'http://127.0.0.1:9000'); \
        remote.probe(fs, path, 's3://sweeps/smoke')"
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

from tune_distill.config import ConfigError
from tune_distill.files import write_atomically

ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")
# Non-secret settings Ray workers of a joined cluster get from the driver (when set there) through the job's
# runtime_env, so that they reach the same endpoint in the same region. Credentials never travel by default:
# each node finds its own through the AWS SDK's chain (instance role, IRSA / Pod Identity, ~/.aws).
WORKER_ENV = (*ENDPOINT_ENV, *REGION_ENV)
# Static credentials, forwarded only on explicit request (sweep option forward_aws_credentials): Ray writes a
# job's runtime_env in plain text into the logs of every node (session_*/logs/runtime_env_agent.log) and its
# job API returns it, so whoever reads a node's logs or reaches the dashboard gets the keys.
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_CREDENTIAL_ERRORS = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "EXPIRED_TOKEN",
                      "INVALID_TOKEN", "UNRECOGNIZED_CLIENT", "MISSING_AUTHENTICATION_TOKEN", "INVALID_CLIENT_TOKEN_ID",
                      "AccessDenied", "Forbidden", "Unauthorized")
_NETWORK_ERRORS = ("NETWORK_CONNECTION", "curlCode", "Couldn't connect", "Connection refused", "resolve host",
                   "Timeout was reached")


def is_remote(uri: str) -> bool:
    """True for a URI with a scheme other than file:// (s3://, gs://, ...); False for a local folder."""
    return "://" in uri and not uri.startswith("file://")


def resolve_endpoint(endpoint: str = "") -> str:
    """The S3 endpoint: the given one, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else '' (AWS)."""
    if endpoint:
        return endpoint
    return next((os.environ[name] for name in ENDPOINT_ENV if os.environ.get(name)), "")


def check_location(uri: str, endpoint: str, error: type[Exception] = ConfigError, where: str = "") -> None:
    """Syntax of storage_path and storage_endpoint; `error` names the field and what was expected."""
    prefix = f"{where}: " if where else ""
    if endpoint and not uri.startswith("s3://"):
        raise error(f"{prefix}storage_endpoint: only used with an s3:// storage_path, got storage_path {uri!r}")
    if endpoint:
        _split_endpoint(endpoint, error, prefix)
    if not uri.startswith("s3://"):
        return
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise error(f"{prefix}storage_path: expected s3://bucket/prefix, got {uri!r}")
    if parsed.query or parsed.fragment:
        raise error(f"{prefix}storage_path: expected s3://bucket/prefix without '?...' options, got {uri!r} "
                    "(the endpoint goes in storage_endpoint or AWS_ENDPOINT_URL)")


def _split_endpoint(endpoint: str, error: type[Exception], prefix: str = "") -> tuple[str, str]:
    """('http' or 'https', 'host:port') from 'http://host:port' (or a bare 'host:port', https)."""
    text = endpoint if "://" in endpoint else f"https://{endpoint}"
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path not in ("", "/") \
            or parsed.query or parsed.params:
        raise error(f"{prefix}storage_endpoint: expected http(s)://host[:port], got {endpoint!r}")
    return parsed.scheme, parsed.netloc


def s3_filesystem(endpoint: str = "", error: type[Exception] = ConfigError):
    """A pyarrow S3FileSystem for `endpoint` (resolved as in `resolve_endpoint`), credentials from the AWS chain."""
    from pyarrow import fs as pafs

    endpoint = resolve_endpoint(endpoint)
    options: dict[str, Any] = {
        # Objects smaller than a part (Tune's JSON files, small checkpoints) go up in one PutObject instead of
        # a multipart upload (3 requests). Some S3 emulators (moto 5.2.1, getmoto/moto#10055) also answer a
        # completed multipart upload with a body pyarrow rejects; single-request uploads avoid it.
        "allow_delayed_open": True,
    }
    if endpoint:
        options["scheme"], options["endpoint_override"] = _split_endpoint(endpoint, error, "")
    region = next((os.environ[name] for name in REGION_ENV if os.environ.get(name)), None)
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options)


def open_location(uri: str, endpoint: str = "", error: type[Exception] = ConfigError) -> tuple[Any, str]:
    """(pyarrow filesystem, path on it) of a remote storage_path: s3://bucket/p -> (S3FileSystem, bucket/p)."""
    check_location(uri, endpoint, error)
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        path = "/".join(part for part in (parsed.netloc, parsed.path.strip("/")) if part)
        return s3_filesystem(endpoint, error), path
    from pyarrow import fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as failure:  # ArrowInvalid (unknown scheme), OSError (no such filesystem here)
        raise error(f"storage_path: pyarrow cannot open {uri!r}: {failure}") from None


def _credentials_found() -> bool:
    """Credentials visible from here (environment, profile, config files); an instance role is not."""
    files = [Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials").expanduser(),
             Path(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config").expanduser()]
    return bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")
                or any(path.is_file() for path in files))


def credentials_hint() -> str:
    """Where the AWS SDK found credentials here (names only, never secrets), or that it found none."""
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        key = os.environ["AWS_ACCESS_KEY_ID"]
        return (f"AWS_ACCESS_KEY_ID ({key[:4]}...) and AWS_SECRET_ACCESS_KEY from the environment were used; check "
                "them (and AWS_SESSION_TOKEN for temporary credentials)")
    if _credentials_found():
        return (f"profile {os.environ.get('AWS_PROFILE', 'default')!r} of the AWS config files (~/.aws or "
                "AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE) was used; check it")
    return ("no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with "
            "~/.aws/credentials, or give the machine an instance role)")


def explain(failure: BaseException, uri: str, endpoint: str) -> str:
    """A storage error in words: a missing bucket, an unreachable endpoint, refused or missing credentials."""
    text = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
    at = f" at {endpoint}" if endpoint else ""
    if "NO_SUCH_BUCKET" in text or "NoSuchBucket" in text:
        return f"storage_path {uri}: the bucket does not exist{at} ({text})"
    if any(code in text for code in _NETWORK_ERRORS):
        return (f"storage_path {uri}: cannot reach the storage endpoint {endpoint or '(AWS)'} ({text}); check "
                "storage_endpoint / AWS_ENDPOINT_URL")
    if any(code in text for code in _CREDENTIAL_ERRORS):
        return f"storage_path {uri}: access refused{at} ({text}); {credentials_hint()}"
    if not _credentials_found():  # an anonymous request can fail in other ways (some servers answer 500)
        return f"storage_path {uri}: request failed{at} ({text}); {credentials_hint()}"
    return f"storage_path {uri}: request failed{at} ({text})"


def probe(filesystem: Any, path: str, uri: str, endpoint: str = "", error: type[Exception] = ConfigError) -> None:
    """Check that the bucket exists and that `path` is writable: a marker object is written, read back, deleted."""
    from pyarrow import fs as pafs

    endpoint = resolve_endpoint(endpoint) if uri.startswith("s3://") else endpoint
    bucket = path.split("/", 1)[0]
    try:
        info = filesystem.get_file_info(bucket)
    except OSError as failure:
        raise error(explain(failure, uri, endpoint)) from None
    if info.type == pafs.FileType.NotFound:
        at = f" at {endpoint}" if endpoint else ""
        raise error(f"storage_path {uri}: bucket {bucket!r} does not exist{at} (create it first, or fix the "
                    f"bucket name / storage_endpoint)")
    marker = f"{path.rstrip('/')}/.tune_distill_write_test_{uuid.uuid4().hex}"
    try:
        with filesystem.open_output_stream(marker) as stream:
            stream.write(b"tune_distill storage probe\n")
        with filesystem.open_input_stream(marker) as stream:
            stream.read()
        filesystem.delete_file(marker)
    except OSError as failure:
        raise error(explain(failure, uri, endpoint)) from None


def exists(filesystem: Any, path: str) -> bool:
    from pyarrow import fs as pafs

    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def upload_files(local_dir: str | Path, names: Sequence[str], filesystem: Any, path: str) -> list[str]:
    """Copy the files `names` of `local_dir` that exist to `path/<name>`; returns the paths written."""
    written = []
    for name in names:
        source = Path(local_dir) / name
        if not source.is_file():
            continue
        target = f"{path.rstrip('/')}/{name}"
        with filesystem.open_output_stream(target) as stream:
            stream.write(source.read_bytes())
        written.append(target)
    return written


def download_file(filesystem: Any, path: str, target: str | Path) -> bool:
    """Copy one object to a local file (written atomically); False if there is no such object."""
    if not exists(filesystem, path):
        return False
    with filesystem.open_input_stream(path) as stream:
        write_atomically(target, stream.read())
    return True

"""boto3 clients from one injected session and endpoint, and the translation of AWS errors into ours.

boto3 is imported lazily (it is the optional ``aws`` extra). Credentials always come from the
standard chain (environment, ``~/.aws``, instance or job role); nothing here reads or stores them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from capacity_forecaster.errors import AwsError, ConfigError

log = logging.getLogger(__name__)

# Error codes that mean "this already exists" / "this does not exist" across the services we call.
EXISTS_CODES = frozenset({"AlreadyExistsException", "ResourceExistsException", "ResourceInUse",
                          "ResourceConflictException", "ResourceAlreadyExistsException"})
MISSING_CODES = frozenset({"EntityNotFoundException", "ResourceNotFoundException", "ResourceNotFound",
                           "NoSuchEntity"})


@dataclass(frozen=True)
class AwsClients:
    """Builds boto3 clients for one region and endpoint.

    Attributes:
        region: AWS region; None uses the standard chain (``AWS_REGION``, ``AWS_DEFAULT_REGION``, profile).
        endpoint_url: API endpoint for every service (a moto server or LocalStack); None uses
            ``AWS_ENDPOINT_URL`` or the real AWS endpoints.
        session: a boto3 session to use (e.g. one with a named profile); None creates a default one.
    """

    region: str | None = None
    endpoint_url: str | None = None
    session: Any = None
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def client(self, service: str) -> Any:
        """A (cached) boto3 client for ``service``."""
        if service not in self._cache:
            session = self.session
            if session is None:
                try:
                    import boto3
                except ImportError as err:
                    raise AwsError("AWS commands need the 'aws' extra: pip install 'aws-capacity-forecaster[aws]'") \
                        from err
                session = boto3.session.Session()
            kwargs: dict[str, Any] = {}
            region = self.region or session.region_name or os.environ.get("AWS_REGION")
            if region:
                kwargs["region_name"] = region
            if self.endpoint_url:
                kwargs["endpoint_url"] = self.endpoint_url
            try:
                self._cache[service] = session.client(service, **kwargs)
            except Exception as err:  # botocore's NoRegionError (helper-62: a traceback, exit 1)
                if type(err).__name__ != "NoRegionError":
                    raise
                raise ConfigError(f"no AWS region for {service}: set aws.region in the config, --region, "
                                  "or AWS_REGION") from err
        return self._cache[service]


def error_code(err: BaseException) -> str:
    """The AWS error code of an AwsError or a botocore ``ClientError`` (empty for other exceptions)."""
    if isinstance(err, AwsError):
        return err.code
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def is_exists(err: BaseException) -> bool:
    """Whether ``err`` says the resource already exists."""
    return error_code(err) in EXISTS_CODES


def is_missing(err: BaseException) -> bool:
    """Whether ``err`` says the resource does not exist."""
    code = error_code(err)
    # SageMaker says "Could not find ..." for processing jobs, "Requested resource not found" for training jobs.
    return code in MISSING_CODES or (code == "ValidationException"
                                     and ("Could not find" in str(err) or "Requested resource not found" in str(err)))


def _hint(code: str, name: str) -> str:
    if "Credential" in name or code in ("UnrecognizedClientException", "InvalidClientTokenId"):
        return "; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (never in the config file)"
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        return "; the caller's IAM policy does not allow it (see deploy/cloudformation.yaml for what each role needs)"
    if "Endpoint" in name or "Connect" in name:
        return "; check the network, aws.region and aws.endpoint_url"
    return ""


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn any botocore/boto3 failure inside the block into one AwsError naming ``action``.

    Args:
        action: what was attempted, e.g. "glue CreateTable capfc.metrics".
    """
    try:
        yield
    except AwsError:
        raise
    except Exception as err:  # botocore raises many unrelated types; translate them all here
        module = type(err).__module__
        if not module.startswith(("botocore", "boto3", "urllib3")):
            raise
        code = error_code(err)
        name = type(err).__name__
        detail = " ".join(str(err).split())
        raise AwsError(f"{action} failed: {code or name}: {detail}{_hint(code, name)}", code) from err

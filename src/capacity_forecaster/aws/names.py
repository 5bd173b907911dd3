"""Naming rules of the AWS resources we create, checked before any call so errors name the broken rule.

Pure standard library (no pydantic, no boto3): the Lambda bundle imports this module. Every name
that reaches an API call, a DDL statement or an IAM policy is checked here first; names are never
built from user input that skipped these checks.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from capacity_forecaster.errors import ConfigError


@dataclass(frozen=True)
class NameRule:
    """One naming rule.

    Attributes:
        what: what the name is, for messages ("Glue database name").
        pattern: the whole value must match it.
        max_length: longest allowed value.
        rule: the rule in words, for messages.
    """

    what: str
    pattern: re.Pattern[str]
    max_length: int
    rule: str


def _rule(what: str, pattern: str, max_length: int, rule: str, flags: int = re.ASCII) -> NameRule:
    # ASCII by default: in Python, \\d and \\w also match other scripts' digits, which AWS refuses.
    return NameRule(what, re.compile(pattern, flags), max_length, rule)


RULES: dict[str, NameRule] = {
    # Glue allows more, but Athena DDL wants lowercase names with underscores only; a leading digit
    # or underscore would need quoting in every query, so it is refused here.
    "glue_name": _rule("Glue/Athena name", r"[a-z][a-z0-9_]*", 255,
                       "1-255 characters: lowercase letters, digits and underscores, starting with a letter"),
    "athena_workgroup": _rule("Athena workgroup", r"[A-Za-z0-9._-]+", 128,
                              "1-128 characters: letters, digits, '.', '_' and '-'"),
    "job_prefix": _rule("SageMaker job name prefix", r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", 24,
                        "1-24 characters: lowercase letters, digits and '-', not starting or ending with '-'"),
    "job_name": _rule("SageMaker job name", r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", 63,
                      "1-63 characters: letters, digits and '-', starting and ending with a letter or digit"),
    # EventBridge also allows '.', but the rule name becomes part of the Lambda permission's
    # StatementId ("<rule>-invoke"), whose pattern is [a-zA-Z0-9-_]+; 58 leaves room for "-chain".
    "rule_name": _rule("EventBridge rule name", r"[\-_A-Za-z0-9]+", 58,
                       "1-58 characters: letters, digits, '-' and '_' (no '.': the name is also part of the "
                       "Lambda permission id; the '-chain' rule name must fit in 64)"),
    "resource_id": _rule("QuickSight id", r"[A-Za-z0-9_-]+", 128,
                         "1-128 characters: letters, digits, '-' and '_'"),
    "account_id": _rule("AWS account id", r"\d{12}", 12, "exactly 12 digits"),
    "region": _rule("AWS region", r"[a-z]{2}(-[a-z]+)+-\d{1,2}", 32, "a region code such as us-east-1"),
    "role_arn": _rule("IAM role ARN", r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]+", 2048,
                      "arn:aws:iam::<12-digit account>:role/<name>"),
    "lambda_arn": _rule("Lambda function ARN",
                        r"arn:aws[a-z-]*:lambda:[a-z]{2}(-gov)?-[a-z]+-\d:\d{12}:function:[A-Za-z0-9_-]{1,64}"
                        r"(:(\$LATEST|[A-Za-z0-9_-]{1,128}))?", 256,
                        "arn:aws:lambda:<region>:<account>:function:<name>[:<alias>]"),
    "sqs_arn": _rule("SQS queue ARN", r"arn:aws[a-z-]*:sqs:[a-z]{2}(-gov)?-[a-z]+-\d:\d{12}:[A-Za-z0-9_-]{1,80}", 256,
                     "arn:aws:sqs:<region>:<account>:<queue name>"),
    "principal_arn": _rule("QuickSight principal ARN",
                           r"arn:aws[a-z-]*:quicksight:[a-z0-9-]+:\d{12}:(user|group|namespace)/[A-Za-z0-9_.@+=/-]+",
                           256, "arn:aws:quicksight:<region>:<account>:user/<namespace>/<name> (or group/...)"),
    "instance_type": _rule("SageMaker instance type", r"ml\.[a-z0-9-]+\.[a-z0-9]+", 64,
                           "a SageMaker instance type such as ml.m5.xlarge"),
    "image_uri": _rule("container image URI",
                       r"[a-z0-9][a-z0-9.-]*(:\d+)?/[a-z0-9][a-z0-9._/-]*"
                       r"(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[a-f0-9]{64})?", 255,
                       "<registry>/<repository>[:tag|@sha256:digest], e.g. "
                       "123456789012.dkr.ecr.us-east-1.amazonaws.com/capfc:1.0"),
    # VPC ids as EC2 issues them ("subnet-"/"sg-" and 8 or 17 hex digits): stricter than SageMaker's
    # [-0-9a-zA-Z]+ (<= 32), so a name ("Name=private-a") or an ARN is refused before any call.
    "subnet_id": _rule("VPC subnet id", r"subnet-[0-9a-f]{8}(?:[0-9a-f]{9})?", 24,
                       "subnet-<8 or 17 hex digits>, e.g. subnet-0123456789abcdef0"),
    "security_group_id": _rule("VPC security group id", r"sg-[0-9a-f]{8}(?:[0-9a-f]{9})?", 20,
                               "sg-<8 or 17 hex digits>, e.g. sg-0123456789abcdef0"),
    # EventBridge: cron() with six fields, or rate() with a singular unit for 1 and plural otherwise.
    "schedule": _rule("EventBridge schedule expression",
                      r"cron\([^\s()]+( [^\s()]+){5}\)"
                      r"|rate\((1 (minute|hour|day)|([2-9]|[1-9]\d+) (minutes|hours|days))\)",
                      256, "cron(<min> <hour> <day-of-month> <month> <day-of-week> <year>), e.g. "
                      "cron(0 3 * * ? *), or rate(<n> <unit>), e.g. rate(1 day)"),
    # S3 URIs end up quoted in DDL, IAM-scoped and passed to containers: "safe" key characters only
    # (no quotes, spaces or backslashes).
    "s3_uri": _rule("S3 URI", r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9!_.*()=/-]*)?", 1024,
                    "s3://<bucket>/<prefix> with letters, digits and !_.*()=/- in the prefix"),
    "endpoint_url": _rule("endpoint URL", r"https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[^\s]*)?", 512,
                          "http(s)://host[:port][/path]"),
    # SageMaker's KmsKeyId/VolumeKmsKeyId: a key id, key ARN, alias name or alias ARN.
    "kms_key_id": _rule("KMS key id", r"[a-zA-Z0-9:/_-]+", 2048,
                        "a KMS key id, key ARN, alias/<name> or alias ARN (letters, digits and :/_-)"),
    # Amazon Forecast resource names (dataset groups, datasets, predictors, forecasts, jobs).
    "forecast_name": _rule("Amazon Forecast name", r"[a-zA-Z][a-zA-Z0-9_]*", 63,
                           "1-63 characters: letters, digits and '_', starting with a letter"),
    "tag_key": _rule("tag key", r"(?!aws:)[\w .:/=+@-]+", 128,
                     "1-128 letters, digits, spaces and _.:/=+-@, not starting with 'aws:'", re.UNICODE),
    # Some services allow empty values, QuickSight does not: 1-256 everywhere.
    "tag_value": _rule("tag value", r"[\w .:/=+@-]+", 256, "1-256 letters, digits, spaces and _.:/=+-@", re.UNICODE),
}


@functools.lru_cache(maxsize=1)
def _instance_type_enums() -> tuple[frozenset[str], frozenset[str]] | None:
    try:
        from botocore.loaders import Loader
    except ImportError:
        return None
    shapes = Loader().load_service_model("sagemaker", "service-2")["shapes"]
    return frozenset(shapes["ProcessingInstanceType"]["enum"]), frozenset(shapes["TrainingInstanceType"]["enum"])


def sagemaker_instance_types(training_only: bool = False) -> frozenset[str] | None:
    """The instance types SageMaker processing and training jobs accept, from botocore's service model.

    Args:
        training_only: only the types training jobs accept (``TrainingInstanceType``).

    None when botocore is not installed (the ``aws`` extra), in which case only the pattern is checked.
    The model is loaded once (about 0.5 s) by a private loader, so it is not kept in memory.
    """
    enums = _instance_type_enums()
    if enums is None:
        return None
    return enums[1] if training_only else enums[0] | enums[1]


def instance_type_problem(value: str, training_only: bool = False) -> str | None:
    """What is wrong with ``value`` as a SageMaker job instance type (pattern, then botocore's list), or None.

    Args:
        value: the instance type.
        training_only: check against the training job types only (a spot training job).
    """
    message = problem("instance_type", value)
    if message is not None:
        return message
    known = sagemaker_instance_types(training_only)
    if known is not None and value not in known:
        close = sorted(t for t in known if t.split(".")[1] == value.split(".")[1])[:8]
        hint = f"; {value.split('.')[1]} sizes: {', '.join(close)}" if close else ""
        jobs = "training jobs" if training_only else "SageMaker jobs"
        return f"SageMaker instance type '{value}' is not one {jobs} accept (botocore's list){hint}"
    return None


def problem(kind: str, value: str) -> str | None:
    """What is wrong with ``value`` as a name of kind ``kind`` (a key of ``RULES``), or None if it is valid."""
    rule = RULES[kind]
    if not isinstance(value, str):
        return f"{rule.what} must be text, got {type(value).__name__}"
    if len(value) <= rule.max_length and rule.pattern.fullmatch(value):
        return _cron_problem(value) if kind == "schedule" and value.startswith("cron(") else None
    return f"{rule.what} '{value}' is not valid: {rule.rule}"


# EventBridge cron fields: (name, lowest, highest, names allowed for values, special characters allowed).
_CRON_FIELDS = (("minutes", 0, 59, (), ""), ("hours", 0, 23, (), ""), ("day-of-month", 1, 31, (), "?LW"),
                ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                                  "DEC"), ""),
                ("day-of-week", 1, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), "?L#"),
                ("year", 1970, 2199, (), ""))


def _cron_problem(value: str) -> str | None:
    """What EventBridge would refuse in a six-field ``cron(...)`` (helper-62: moto accepted ``cron(0 3 * * * *)``,
    both day fields set, and ``cron(61 25 * * ? *)``), or None."""
    fields = value[len("cron("):-1].split(" ")
    if (fields[2] == "?") == (fields[4] == "?"):
        return (f"schedule expression '{value}' is not valid: exactly one of day-of-month and day-of-week must be "
                "'?' (e.g. cron(0 3 * * ? *) daily, cron(0 3 ? * MON-FRI *) on weekdays)")
    for text, (name, low, high, labels, special) in zip(fields, _CRON_FIELDS, strict=True):
        if text in ("*", "?") and (text == "*" or "?" in special):
            continue
        for part in text.split(","):
            base, _, step = part.partition("/")
            base, _, nth = base.partition("#")
            if nth and ("#" not in special or not re.fullmatch(r"[1-5]", nth)):
                return (f"schedule expression '{value}' is not valid: {name} '{part}': '#' takes the week of the "
                        "month, 1-5 (e.g. MON#1, the first Monday)")
            tokens = [t for t in base.upper().split("-") if t not in ("*", "")]
            if step and not re.fullmatch(r"[0-9]+", step):
                tokens.append(step)
            for token in tokens:
                if token in labels or (token in ("L", "W", "LW") and set(token) <= set(special)):
                    continue
                number = token.rstrip("LW")
                if not re.fullmatch(r"[0-9]+", number) or not low <= int(number) <= high or (
                        number != token and not set(token[len(number):]) <= set(special)):
                    return (f"schedule expression '{value}' is not valid: {name} '{part}' is outside "
                            f"{low}-{high}{f' (or {labels[0]}-{labels[-1]})' if labels else ''}")
    return None


def check(kind: str, value: str, where: str | None = None) -> str:
    """Return ``value`` if it is a valid name of kind ``kind``.

    Args:
        kind: a key of ``RULES``.
        value: the name.
        where: where the value came from (a config key or option), for the message.

    Raises:
        ConfigError: naming the value, the rule it breaks and where it came from.
    """
    message = problem(kind, value)
    if message is not None:
        raise ConfigError(f"{where}: {message}" if where else message)
    return value


def image_pinning(uri: str) -> str:
    """How a checked image URI names its image: "digest" (``@sha256:...``, immutable), "tag", or "latest"
    (``:latest`` or no tag at all, which Docker reads as latest: whatever was pushed last runs)."""
    check("image_uri", uri, "image_uri")
    if "@sha256:" in uri:
        return "digest"
    last = uri.rsplit("/", 1)[1]
    return "tag" if ":" in last and last.rsplit(":", 1)[1] != "latest" else "latest"


def check_vpc(subnet_ids: tuple[str, ...] | list[str], security_group_ids: tuple[str, ...] | list[str],
              where: str = "aws") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return the subnet and security group ids if they form a valid SageMaker ``VpcConfig``, or none at all.

    Raises:
        ConfigError: a malformed id, too many (16 subnets, 5 security groups), duplicates, or only one
            of the two lists given (SageMaker needs both).
    """
    subnets, groups = tuple(subnet_ids), tuple(security_group_ids)
    if bool(subnets) != bool(groups):
        raise ConfigError(f"{where}.subnet_ids and {where}.security_group_ids: give both (jobs in a VPC need "
                          "subnets and security groups) or neither (jobs run in SageMaker's network)")
    for key, values, kind, most in (("subnet_ids", subnets, "subnet_id", 16),
                                    ("security_group_ids", groups, "security_group_id", 5)):
        if len(values) > most:
            raise ConfigError(f"{where}.{key}: {len(values)} given; SageMaker accepts at most {most}")
        if len(set(values)) != len(values):
            raise ConfigError(f"{where}.{key}: {list(values)} repeats an id")
        for value in values:
            check(kind, value, f"{where}.{key}")
    return subnets, groups


# Tag keys capfc sets itself (capfc:chain, capfc:stage): a user tag of the same key would be sent twice (helper-62).
RESERVED_TAG_PREFIX = "capfc:"


def check_tags(tags: dict[str, str], where: str = "aws.tags") -> dict[str, str]:
    """Return ``tags`` if every key and value follows the AWS tagging rules (at most 40, leaving room for ours)."""
    if len(tags) > 40:
        raise ConfigError(f"{where}: {len(tags)} tags given; at most 40 (AWS allows 50 and capfc adds its own)")
    for key, value in tags.items():
        check("tag_key", key, where)
        if key.startswith(RESERVED_TAG_PREFIX):
            raise ConfigError(f"{where}: tag key '{key}' is capfc's own (keys starting with '{RESERVED_TAG_PREFIX}' "
                              "are set by capfc on its jobs and rules); choose another key")
        check("tag_value", value, f"{where}.{key}")
    return tags


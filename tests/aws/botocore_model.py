"""Validate requests against botocore's service models, including what botocore itself skips.

botocore's ``ParamValidator`` checks required members and types but not ``pattern``, ``enum`` or
string lengths, and moto accepts most values, so a request AWS rejects can pass every moto test.
``model_problems`` walks the operation's input shape and reports all of them.
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.session
import regex
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape
from botocore.validate import ParamValidator

# Where the model's pattern is wrong, the rule AWS documents instead: Amazon Forecast's ``Arn`` shape
# (arn:...:forecast:...) is reused for ``RoleArn``, which its documentation says is an IAM role ARN.
PATTERN_ERRATA = {("forecast", "RoleArn"): r"arn:aws[a-z-]*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@\-_/]+"}


@functools.cache
def operation(service: str, name: str) -> OperationModel:
    """The botocore model of ``service``'s operation ``name`` (e.g. "quicksight", "CreateDataSet")."""
    return botocore.session.get_session().get_service_model(service).operation_model(name)


@functools.cache
def compiled(pattern: str) -> regex.Pattern[str]:
    """An AWS (Java) pattern as a regex: the ``regex`` module knows ``\\p{L}`` and friends; Java's
    surrogate-pair range and ``\\z`` are spelled the Python way."""
    python = pattern.replace("\\uD800\\uDC00-\\uDBFF\\uDFFF", "\\U00010000-\\U0010FFFF").replace("\\z", "\\Z")
    return regex.compile(python, regex.DOTALL | regex.V0)


def _walk(shape: Shape, value: Any, path: str, out: list[str], service: str = "") -> None:
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                _walk(shape.members[key], item, f"{path}.{key}", out, service)
        return
    if isinstance(shape, ListShape) and isinstance(value, list):
        _size(shape, len(value), path, out, "items")
        for i, item in enumerate(value):
            _walk(shape.member, item, f"{path}[{i}]", out, service)
        return
    if isinstance(shape, MapShape) and isinstance(value, dict):
        _size(shape, len(value), path, out, "entries")
        for key, item in value.items():
            _walk(shape.key, key, f"{path} key {key!r}", out, service)
            _walk(shape.value, item, f"{path}[{key!r}]", out, service)
        return
    if shape.type_name == "string" and isinstance(value, str):
        _size(shape, len(value), path, out, "characters")
        pattern = PATTERN_ERRATA.get((service, path.rsplit(".", 1)[-1]), shape.metadata.get("pattern"))
        if pattern is not None and not compiled(pattern).fullmatch(value):
            out.append(f"{path} = {value!r} does not match the pattern {pattern!r}")
        if shape.enum and value not in shape.enum:
            out.append(f"{path} = {value!r} is not one of the {len(shape.enum)} allowed values")
    elif shape.type_name in ("integer", "long") and isinstance(value, int):
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            out.append(f"{path} = {value} is outside [{low}, {high}]")


def _size(shape: Shape, size: int, path: str, out: list[str], unit: str) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        out.append(f"{path}: {size} {unit}, at least {low} required")
    if high is not None and size > high:
        out.append(f"{path}: {size} {unit}, at most {high} allowed")


def model_problems(service: str, name: str, params: dict[str, Any]) -> list[str]:
    """Everything AWS would reject in ``params`` of ``service.name``: botocore's own checks plus pattern/enum/length."""
    model = operation(service, name)
    report = ParamValidator().validate(params, model.input_shape)
    out = [report.generate_report()] if report.has_errors() else []
    _walk(model.input_shape, params, name, out, service)
    return out


def member(service: str, name: str, path: str) -> Shape:
    """The shape at a dotted member path of an operation's input, e.g. ("events", "PutRule", "Name")."""
    shape: Shape = operation(service, name).input_shape
    for part in path.split("."):
        if isinstance(shape, ListShape):
            shape = shape.member
        if isinstance(shape, MapShape):
            shape = shape.key if part == "<key>" else shape.value
            continue
        assert isinstance(shape, StructureShape), (service, name, path, part)
        shape = shape.members[part]
    return shape


def validating_session(region: str = "us-east-1") -> Any:
    """A boto3 session whose clients check every request against the model before sending it.

    A request AWS would reject fails the test with an AssertionError naming the member and the rule.
    """
    import boto3

    session = boto3.session.Session(region_name=region)

    def check(params: dict[str, Any], model: OperationModel, **_kwargs: Any) -> None:
        problems = model_problems(model.service_model.service_name, model.name, params)
        assert not problems, "\n".join(problems)

    session.events.register("provide-client-params", check)
    return session


def value_problems(service: str, name: str, path: str, value: Any) -> list[str]:
    """What AWS would reject in ``value`` as the member at ``path`` of an operation (see ``member``)."""
    out: list[str] = []
    _walk(member(service, name, path), value, f"{name}.{path}", out, service)
    return out

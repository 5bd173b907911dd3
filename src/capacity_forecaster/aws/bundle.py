"""Build the Lambda deployment zip: the handler and the few modules it imports (standard library + boto3).

The Lambda Python runtime provides boto3, so the bundle is a few kilobytes of our own source:
no pandas, pyarrow or pydantic. Upload it to S3 and point the CloudFormation stack at it
(``LambdaCodeBucket``/``LambdaCodeKey``). Entries have fixed timestamps, so the same source
always gives the same bytes (and the same S3 ETag).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import capacity_forecaster

HANDLER = "capacity_forecaster.aws.lambda_handler.handler"
# Everything lambda_handler imports, transitively (tests/aws check the list is complete).
MODULES = (
    "__init__.py",
    "errors.py",
    "messages.py",
    "aws/__init__.py",
    "aws/names.py",
    "aws/clients.py",
    "aws/sagemaker.py",
    "aws/training.py",
    "aws/lambda_handler.py",
)
_EPOCH = (2020, 1, 1, 0, 0, 0)


def build_lambda_zip(target: Path) -> Path:
    """Write the Lambda bundle to ``target`` (a .zip path) and return it."""
    package = Path(capacity_forecaster.__file__).resolve().parent
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in MODULES:
            info = zipfile.ZipInfo(f"capacity_forecaster/{relative}", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (package / relative).read_bytes())
    return target

"""AWS fixtures: every service through the one moto server of tests/conftest.py, and a small S3 lake."""

from __future__ import annotations

import pytest
from aws_helpers import write_small_lake
from botocore_model import validating_session

from capacity_forecaster.aws.clients import AwsClients
from capacity_forecaster.config import LakeConfig
from capacity_forecaster.storage import Lake


@pytest.fixture()
def clients(s3_endpoint: str) -> AwsClients:
    """boto3 clients pointed explicitly at the moto server (dummy credentials from tests/conftest.py).

    Every request they send is first checked against botocore's model, patterns and enums included
    (moto accepts much that AWS rejects).
    """
    return AwsClients(region="us-east-1", endpoint_url=s3_endpoint, session=validating_session())


@pytest.fixture()
def s3_lake(s3_bucket: str) -> Lake:
    """A small lake on the moto S3 server."""
    lake = Lake.open(f"s3://{s3_bucket}/capfc", LakeConfig(), for_writing=True)
    write_small_lake(lake)
    return lake

"""Click plumbing every AWS command shares: --region/--endpoint-url, clients, progress lines and error conversion."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import click

from .aws_clients import AwsClients
from .aws_transaction import Progress
from .errors import DeployConfigError, DeployError

__all__ = ["aws_options", "click_failure", "clients_for", "progress_printer", "resolve_region",
           "usage_error"]

REGION_ENV = ["AWS_DEFAULT_REGION", "AWS_REGION"]
Command = TypeVar("Command", bound=Callable)


def aws_options(function: Command) -> Command:
    """Decorator: the ``--region`` and ``--endpoint-url`` options (with their env fallbacks) of an AWS command."""
    function = click.option(
        "--endpoint-url", default=None,
        help="Send every AWS call to this URL (e.g. a moto server). Default: env AWS_ENDPOINT_URL "
             "(or AWS_ENDPOINT_URL_<SERVICE>, read by boto3), else real AWS.",
    )(function)
    function = click.option(
        "--region", show_envvar=True, envvar=REGION_ENV, default=None,
        help="AWS region. Default: env AWS_DEFAULT_REGION, then AWS_REGION, then ~/.aws/config.",
    )(function)
    return function


def resolve_region(region: str | None) -> str:
    """``--region``, else AWS_DEFAULT_REGION / AWS_REGION (click), else the AWS config file; else a usage error."""
    if region:
        return region
    import boto3  # slow to import (botocore loads its models): only AWS commands pay

    region = boto3.Session().region_name
    if not region:
        raise click.BadParameter(
            "no region: give --region or set AWS_DEFAULT_REGION / AWS_REGION",
            param_hint="'--region'",
        )
    return region


def clients_for(ctx: click.Context, region: str, endpoint_url: str | None) -> AwsClients:
    """The AWS clients of a command; built on the boto3 session in ``ctx.obj`` when a caller injected one (tests)."""
    import boto3  # see resolve_region

    try:
        return AwsClients.create(region, endpoint_url, boto_session=ctx.find_object(boto3.Session))
    except ValueError as error:  # boto3 refuses an endpoint URL it cannot use when it makes the clients
        raise click.UsageError(f"{error}: check --region and the AWS endpoint URL (--endpoint-url, "
                               "AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>, ~/.aws/config)") from None


def progress_printer(started: float) -> Progress:
    """A progress callback printing ``[  12.3s] message`` (seconds since ``started``, monotonic) on stderr."""
    def echo(message: str) -> None:
        click.echo(f"[{time.monotonic() - started:6.1f}s] {message}", err=True)

    return echo


def usage_error(error: DeployConfigError) -> click.BadParameter:
    """A bad setting as click's usage error (exit 2) against its option, e.g. ``'--instance-type'``."""
    return click.BadParameter(f"{error.value!r}: {error.allowed}", param_hint=f"'{error.option}'")


def click_failure(error: DeployError) -> click.ClickException:
    """A failed AWS command as click's one-line error (exit 1)."""
    return click.ClickException(" ".join(str(error).split()))

"""Run the AWS commands as a user types them: `deploy sagemaker ...`, and `clearsight` for the job commands."""

from click.testing import CliRunner

from clearsight.cli import main as clearsight
from deploy.sagemaker_cli import sagemaker


def invoke_aws_command(args, session, **options):
    """Run ``deploy sagemaker ARGS`` or, for the job commands, ``clearsight ARGS`` with CliRunner."""
    args = list(args)
    group = clearsight if args and args[0] in ("explain-job", "explain-merge") else sagemaker
    return CliRunner().invoke(group, args, obj=session, **options)

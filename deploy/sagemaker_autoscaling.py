"""Target-tracking autoscaling of an endpoint's variant: read it, register it, suspend it for an update, remove it."""

from __future__ import annotations

from .aws_clients import AwsClients, aws_step, ignore_missing
from .aws_transaction import TAG_RUN, Progress, Transaction
from .config import Autoscale
from .sagemaker_names import TAG_ENDPOINT, TAG_TOOL, TOOL, VARIANT

__all__ = [
    "SCALABLE_DIMENSION",
    "delete_scaling_policy",
    "deregister_autoscaling",
    "register_autoscaling",
    "register_autoscaling_of_run",
    "scaling_policy_name",
    "scaling_resource_id",
    "scaling_state",
    "suspend_autoscaling_of_run",
]

NAMESPACE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALING_METRIC = "SageMakerVariantInvocationsPerInstance"
SCALE_IN_COOLDOWN_SECONDS = 300
SCALE_OUT_COOLDOWN_SECONDS = 60


def scaling_resource_id(endpoint_name: str) -> str:
    """Application Auto Scaling's ``ResourceId`` of the endpoint's variant."""
    return f"endpoint/{endpoint_name}/variant/{VARIANT}"


def scaling_policy_name(endpoint_name: str) -> str:
    """The name of clearsight's target-tracking policy on endpoint ``endpoint_name``."""
    return f"clearsight-{endpoint_name}-invocations"


def _target_of(endpoint_name: str) -> dict[str, str]:
    """The parameters naming the variant's scalable target in every autoscaling call."""
    return {"ServiceNamespace": NAMESPACE, "ResourceId": scaling_resource_id(endpoint_name),
            "ScalableDimension": SCALABLE_DIMENSION}


def _scalable_targets(clients: AwsClients, endpoint_name: str) -> list[dict]:
    target = _target_of(endpoint_name)
    return clients.autoscaling.describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=[target["ResourceId"]],
        ScalableDimension=SCALABLE_DIMENSION,
    )["ScalableTargets"]


def _scaling_policies(clients: AwsClients, endpoint_name: str, only_ours: bool = False) -> list[dict]:
    names = {"PolicyNames": [scaling_policy_name(endpoint_name)]} if only_ours else {}
    return clients.autoscaling.describe_scaling_policies(
        **_target_of(endpoint_name), **names)["ScalingPolicies"]


def scaling_state(clients: AwsClients, endpoint_name: str) -> dict | None:
    """JSON-ready ``resource_id``, ``min_capacity``, ``max_capacity``, ``policies`` (names); None when not registered."""
    targets = _scalable_targets(clients, endpoint_name)
    if not targets:
        return None
    policies = _scaling_policies(clients, endpoint_name)
    return {
        "resource_id": scaling_resource_id(endpoint_name),
        "min_capacity": targets[0]["MinCapacity"],
        "max_capacity": targets[0]["MaxCapacity"],
        "policies": [policy["PolicyName"] for policy in policies],
    }


def register_autoscaling(clients: AwsClients, endpoint_name: str, autoscale: Autoscale,
                         run_id: str) -> None:
    """RegisterScalableTarget (tagged with run ``run_id``) and PutScalingPolicy (target tracking)."""
    target = _target_of(endpoint_name)
    clients.autoscaling.register_scalable_target(
        **target, MinCapacity=autoscale.min_capacity, MaxCapacity=autoscale.max_capacity,
        Tags={TAG_TOOL: TOOL, TAG_ENDPOINT: endpoint_name, TAG_RUN: run_id},
    )
    clients.autoscaling.put_scaling_policy(
        PolicyName=scaling_policy_name(endpoint_name), **target,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(autoscale.target_invocations),
            "PredefinedMetricSpecification": {"PredefinedMetricType": SCALING_METRIC},
            "ScaleInCooldown": SCALE_IN_COOLDOWN_SECONDS,
            "ScaleOutCooldown": SCALE_OUT_COOLDOWN_SECONDS,
        },
    )


def deregister_autoscaling(clients: AwsClients, endpoint_name: str) -> bool:
    """Delete every scaling policy and the scalable target of ``endpoint_name``; False if there were none."""
    target = _target_of(endpoint_name)
    policies = _scaling_policies(clients, endpoint_name)
    for policy in policies:
        ignore_missing(lambda policy=policy: clients.autoscaling.delete_scaling_policy(
            PolicyName=policy["PolicyName"], **target))
    if not _scalable_targets(clients, endpoint_name):
        return bool(policies)
    clients.autoscaling.deregister_scalable_target(**target)
    return True


def delete_scaling_policy(clients: AwsClients, endpoint_name: str) -> bool:
    """Delete clearsight's scaling policy of ``endpoint_name`` (and so its alarms); False if there is none."""
    if not _scaling_policies(clients, endpoint_name, only_ours=True):
        return False
    return ignore_missing(lambda: clients.autoscaling.delete_scaling_policy(
        PolicyName=scaling_policy_name(endpoint_name), **_target_of(endpoint_name)))


def _restore_autoscaling(clients: AwsClients, endpoint_name: str, previous: Autoscale,
                         run_id: str) -> bool:
    """Undo of a suspension: register ``previous`` again unless the endpoint has autoscaling."""
    if scaling_state(clients, endpoint_name) is not None:
        return False
    register_autoscaling(clients, endpoint_name, previous, run_id)
    return True


def register_autoscaling_of_run(transaction: Transaction, clients: AwsClients, endpoint_name: str,
                                autoscale: Autoscale, say: Progress) -> None:
    """Step ``register-autoscaling`` of a run on an endpoint it created or updated: undo registered first.

    Refuses an endpoint that already has a scalable target (this run suspended any it had).
    """
    resource_id = scaling_resource_id(endpoint_name)
    policy = scaling_policy_name(endpoint_name)
    scaling = (f"--service-namespace {NAMESPACE} --resource-id {resource_id} "
               f"--scalable-dimension {SCALABLE_DIMENSION}")
    with aws_step("register-autoscaling"):
        if scaling_state(clients, endpoint_name) is not None:
            raise ValueError(f"endpoint {endpoint_name} already has a scalable target that this "
                             "run did not register; not touching it")
        # The endpoint is this run's (created, or its autoscaling suspended for the update):
        # the undo removes whatever autoscaling the endpoint has.
        transaction.will_create(
            f"scalable target {resource_id}",
            lambda: deregister_autoscaling(clients, endpoint_name),
            clients.cli_command(f"application-autoscaling deregister-scalable-target {scaling}"),
        )
        transaction.will_create(
            f"scaling policy {policy}",
            lambda: delete_scaling_policy(clients, endpoint_name),
            clients.cli_command(f"application-autoscaling delete-scaling-policy --policy-name "
                                f"{policy} {scaling}"),
        )
        register_autoscaling(clients, endpoint_name, autoscale, transaction.run_id)
    say(f"autoscaling {autoscale.min_capacity}..{autoscale.max_capacity} instances at "
        f"{autoscale.target_invocations:g} invocations/instance/minute")


def suspend_autoscaling_of_run(transaction: Transaction, clients: AwsClients, endpoint_name: str,
                               say: Progress) -> Autoscale | None:
    """Step ``suspend-autoscaling``: deregister autoscaling before an update (needed when the instance type changes).

    Returns the previous settings (re-registered after the update, or by the roll-back),
    or None when none was registered or it was registered without clearsight's policy.
    """
    with aws_step("suspend-autoscaling"):
        targets = _scalable_targets(clients, endpoint_name)
        if not targets:
            return None
        policy = scaling_policy_name(endpoint_name)
        target_value = next(
            (item["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
             for item in _scaling_policies(clients, endpoint_name) if item["PolicyName"] == policy),
            None,
        )
        previous = None if target_value is None else Autoscale(
            targets[0]["MinCapacity"], targets[0]["MaxCapacity"], target_value)
        if previous is not None:
            transaction.will_create(
                "suspension of autoscaling",
                lambda: _restore_autoscaling(clients, endpoint_name, previous, transaction.run_id),
                f"clearsight deploy sagemaker up --name {endpoint_name} ... --autoscale {previous.text}",
            )
        deregister_autoscaling(clients, endpoint_name)
    if previous is None:
        say("autoscaling was registered without clearsight's policy; not re-registering it")
        return None
    say(f"autoscaling suspended for the update (was {previous.text})")
    return previous

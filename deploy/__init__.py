"""Package GluonCV models as model.tar.gz, serve them locally on the real SageMaker stack, deploy to SageMaker."""
from .client import EndpointClient, decode_predictions, encode_images
from .errors import DeployError, EndpointError, PackageError, ServeError
from .local_endpoint import LocalEndpoint
from .package import check_archive, package_exported, package_model_dir, package_zoo

__all__ = [
    "DeployError",
    "EndpointClient",
    "EndpointError",
    "LocalEndpoint",
    "PackageError",
    "ServeError",
    "check_archive",
    "decode_predictions",
    "encode_images",
    "package_exported",
    "package_model_dir",
    "package_zoo",
]

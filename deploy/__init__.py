"""Package GluonCV models as model.tar.gz, serve them locally on the real SageMaker stack, deploy to SageMaker."""

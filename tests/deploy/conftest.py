"""Fixtures of the deploy tests: a GluonCV Faster R-CNN packaged once (its export takes about 25 s)."""
import pytest

from deploy.package import package_zoo


@pytest.fixture(scope="session")
def faster_rcnn_package(tmp_path_factory):
    """``package_zoo`` of an untrained ``faster_rcnn_resnet50_v1b_voc`` without the check: (result, archive path)."""
    archive = tmp_path_factory.mktemp("faster-rcnn") / "frcnn.tar.gz"
    return package_zoo("faster_rcnn_resnet50_v1b_voc", archive, pretrained=False, check=False), archive

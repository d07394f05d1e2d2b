"""s3:// images: a prefix is a folder (never a longer name that starts the same), a full key is one image."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from explain.errors import ExplainError
from explain.manifest import is_output_mark
from explain.sources import collect_sources
from tests.explain.test_explainer import red_square_scene

pytest_plugins = ["tests.conftest_moto"]  # fixtures: moto_url (per module), aws (per test)


def png():
    buffer = io.BytesIO()
    Image.fromarray(red_square_scene()).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture()
def photos(aws):
    for key in ("photos/cat.jpg", "photos/sub/dog.png", "photos/notes.txt", "photos2/bird.jpg",
                "photos.jpg"):
        aws.clients.s3.put_object(Bucket=aws.bucket, Key=key, Body=png())
    return f"s3://{aws.bucket}"


def test_a_single_object_is_one_image_known_by_its_name(photos):
    (source,) = collect_sources([f"{photos}/photos/cat.jpg"])
    assert (source.key, source.location, source.stem) == ("cat.jpg", f"{photos}/photos/cat.jpg", "cat")
    assert source.read() == png() and source.fingerprint().startswith("etag:")
    (top,) = collect_sources([f"{photos}/photos.jpg"])
    assert top.key == "photos.jpg"


@pytest.mark.parametrize("prefix", ["photos", "photos/"])
def test_a_prefix_is_a_folder(photos, prefix):
    sources = collect_sources([f"{photos}/{prefix}"])
    assert [source.key for source in sources] == ["cat.jpg", "sub/dog.png"]


def test_a_missing_object_says_so(photos):
    with pytest.raises(ExplainError, match="no .jpg/.jpeg/.png objects under 's3://.*/photos/cow.jpg'"):
        collect_sources([f"{photos}/photos/cow.jpg"])


def test_the_s3_client_follows_the_environment(photos, monkeypatch):
    """A client made for one AWS_ENDPOINT_URL is not reused once it points elsewhere (a notebook, a test)."""
    assert [source.key for source in collect_sources([f"{photos}/photos/"])] == ["cat.jpg", "sub/dog.png"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(ExplainError, match=r"cannot list s3://.*: Could not connect to the endpoint URL: "
                                           r"\"http://127\.0\.0\.1:9/"):
        collect_sources([f"{photos}/photos/"])


def test_an_output_prefix_under_the_images_is_not_listed(photos, aws, caplog):
    # review 18: a Processing job whose output prefix lies under its image prefix uploads its
    # manifests and figures there; a later listing of the images leaves them out, with a warning
    for key, body in (("photos/out/manifest-run@host.jsonl", b"{}\n"),
                      ("photos/out/shap_cat.jpg_box1_object.jpeg", png())):
        aws.clients.s3.put_object(Bucket=aws.bucket, Key=key, Body=body)
    with caplog.at_level("WARNING", logger="explain.sources"):
        sources = collect_sources([f"{photos}/photos/"], output_mark=is_output_mark)
    assert [source.key for source in sources] == ["cat.jpg", "sub/dog.png"]
    assert f"{photos}/photos/out holds clearsight outputs (a run's manifest" in caplog.text
    assert [source.key for source in collect_sources([f"{photos}/photos/out"], output_mark=is_output_mark)] == [
        "shap_cat.jpg_box1_object.jpeg"]  # named itself: listed


@pytest.mark.parametrize("variable, value, reason", [
    ("AWS_ENDPOINT_URL", "notaurl", "Invalid endpoint: notaurl"),
    ("AWS_DEFAULT_REGION", "us east", "Provided region_name 'us east' doesn't match a supported format."),
])
def test_unusable_s3_settings_are_one_line_naming_the_prefix(photos, monkeypatch, variable, value, reason):
    # an endpoint URL or a region boto3 cannot make a client for raised ValueError: a traceback
    monkeypatch.setenv(variable, value)
    with pytest.raises(ExplainError) as error:
        collect_sources([f"{photos}/photos/"])
    assert str(error.value) == f"cannot list {photos}/photos/: {reason}"


@pytest.mark.parametrize("first_from_s3", [True, False])
def test_the_same_bytes_from_s3_and_from_a_local_copy_share_an_out(photos, aws, tmp_path, tiny_detector_dir,
                                                                   first_from_s3):
    # an S3 image's fingerprint is its ETag, a file's its sha256: a synced copy of the same bytes was
    # refused as "another image with the same name" that "would replace" the earlier explanation
    from click.testing import CliRunner

    from explain.cli import main

    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "cat.jpg").write_bytes(png())
    locations = [f"{photos}/photos/cat.jpg", str(tmp_path / "copy" / "cat.jpg")]
    if not first_from_s3:
        locations.reverse()
    for location in locations:
        result = CliRunner().invoke(main, ["--endpoint", str(tiny_detector_dir), "--task", "detection", "--quiet",
                                           "--num-samples", "16", "--num-segments", "4", "--out",
                                           str(tmp_path / "out"), location], prog_name="python -m explain")
        assert result.exit_code == 0, result.output
    assert "explained 1 image(s)" in result.output


def test_s3_it_cannot_reach_is_a_failure_and_a_bucket_that_does_not_exist_a_usage_error(photos, monkeypatch,
                                                                                         tmp_path):
    # a listing that failed for want of a connection exited 2 ("Invalid value for IMAGES"), as a bad
    # argument does; scripts retry exit 1, not 2
    from click.testing import CliRunner

    from explain.cli import main

    def explain(location):
        return CliRunner().invoke(main, ["--endpoint", "http://127.0.0.1:9", "--task", "detection", "--quiet",
                                         "--out", str(tmp_path / "out"), location], prog_name="python -m explain")

    missing = explain("s3://no-such-bucket-here/photos/")
    assert missing.exit_code == 2 and "Invalid value for '[IMAGES]...': cannot list s3://no-such-bucket-here/photos/: " \
        "An error occurred (NoSuchBucket)" in " ".join(missing.stderr.split())
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    unreachable = explain(f"{photos}/photos/")
    assert unreachable.exit_code == 1
    assert unreachable.stderr.startswith(f"Error: cannot list {photos}/photos/: Could not connect to the endpoint URL")


def test_an_s3_object_too_large_to_be_an_image_is_refused_from_its_content_length(photos, monkeypatch):
    from explain import sources
    from explain.sources import OversizedImageError

    (source,) = collect_sources([f"{photos}/photos/cat.jpg"])
    monkeypatch.setattr(sources, "MAX_IMAGE_FILE_BYTES", len(png()) - 1)
    with pytest.raises(OversizedImageError) as refused:
        source.read()
    assert str(refused.value) == (f"cannot read image '{photos}/photos/cat.jpg': a file of {len(png()):,} bytes, "
                                  f"more than the {len(png()) - 1:,} explain reads (an image of 40,000,000 pixels "
                                  "needs less); downscale it first")
    monkeypatch.setattr(sources, "MAX_IMAGE_FILE_BYTES", len(png()))
    assert source.read() == png()

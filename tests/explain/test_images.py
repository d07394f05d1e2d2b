"""explain's decoder gives the pixels the endpoint's decoder gives, for every JPEG and PNG mode."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from explain.baselines import make_baseline
from explain.images import decode_image, load_image
from serving.codecs import decode_images

RAMP = np.arange(0, 65536, 64, dtype=np.uint16).reshape(32, 32)  # 0..65472: every high byte 0..255
RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(samples: np.ndarray, color_type: int, extra_chunks: bytes = b"") -> bytes:
    """A 16-bit PNG written by hand (Pillow writes only 16-bit grey): samples (H, W) or (H, W, C) uint16."""
    height, width = samples.shape[:2]
    rows = samples.astype(">u2").reshape(height, -1)
    data = b"".join(b"\0" + row.tobytes() for row in rows)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + extra_chunks + _chunk(b"IDAT", zlib.compress(data))
            + _chunk(b"IEND", b""))


def saved(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def bodies_in_every_mode() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, the Pillow mode they open in)."""
    grey = Image.fromarray(RGB[:, :, 0])
    planes = np.dstack([RAMP, RAMP[::-1], RAMP[:, ::-1], RAMP.T])
    return {
        "16-bit grey PNG (Pillow)": (saved(Image.fromarray(RAMP), "PNG"), "I;16"),
        "16-bit grey PNG with tRNS": (raw_png(RAMP, 0, _chunk(b"tRNS", struct.pack(">H", 4096))), "I;16"),
        "16-bit RGB PNG": (raw_png(planes[:, :, :3], 2), "RGB"),
        "16-bit RGBA PNG": (raw_png(planes, 6), "RGBA"),
        "16-bit grey+alpha PNG": (raw_png(planes[:, :, :2], 4), "RGBA"),
        "RGB PNG": (saved(Image.fromarray(RGB), "PNG"), "RGB"),
        "RGBA PNG": (saved(Image.fromarray(np.dstack([RGB, RGB[:, :, :1]])), "PNG"), "RGBA"),
        "grey PNG": (saved(grey, "PNG"), "L"),
        "grey+alpha PNG": (saved(Image.merge("LA", [grey, grey.point(lambda v: 255 - v)]), "PNG"), "LA"),
        "palette PNG": (saved(Image.fromarray(RGB).quantize(16), "PNG"), "P"),
        "palette PNG with transparency": (saved(Image.fromarray(RGB).quantize(16), "PNG", transparency=3), "P"),
        "1-bit PNG": (saved(Image.fromarray(RGB[:, :, 0] > 128), "PNG"), "1"),
        "RGB JPEG": (saved(Image.fromarray(RGB), "JPEG", quality=95), "RGB"),
        "grey JPEG": (saved(grey, "JPEG", quality=95), "L"),
        "CMYK JPEG": (saved(Image.fromarray(RGB).convert("CMYK"), "JPEG", quality=95), "CMYK"),
    }


@pytest.mark.parametrize("name", sorted(bodies_in_every_mode()))
def test_explain_decodes_every_mode_as_the_endpoint_does(name):
    body, mode = bodies_in_every_mode()[name]
    assert Image.open(io.BytesIO(body)).mode == mode  # the table covers the mode it names
    ours = decode_image(body, name)
    endpoint = decode_images(body, "image/png", 10 ** 7, 10 ** 8)[0]
    assert ours.dtype == np.uint8 and ours.shape == endpoint.shape and ours.shape[2] == 3
    np.testing.assert_array_equal(ours, endpoint)
    assert ours.flags.writeable


def test_a_16_bit_grey_png_keeps_its_high_byte_not_white(tmp_path):
    """The review's case: Pillow's convert("RGB") clipped every value above 255 to white."""
    path = tmp_path / "grey16.png"
    Image.fromarray(RAMP).save(path)
    pixels = load_image(path)
    expected = (RAMP >> 8).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[:, :, channel], expected)
    assert (pixels == 255).mean() == pytest.approx(1 / 256)  # only the ramp's top row of values


def test_a_16_bit_baseline_file_keeps_its_high_byte(tmp_path):
    path = tmp_path / "baseline16.png"
    Image.fromarray(RAMP).save(path)
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    baseline = make_baseline(image, str(path), np.random.default_rng(0))
    np.testing.assert_array_equal(baseline[:, :, 1], (RAMP >> 8).astype(np.uint8))


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_an_exif_orientation_is_not_applied_and_is_named(image_format, caplog):
    """Review 6: a phone photo stored sideways (Orientation 6) is explained as stored, as the endpoint
    (mxnet) decodes it, and a warning names the image (decoded once per run)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 32, 3), dtype=np.uint8))
    sideways = saved(stored, image_format, exif=exif)
    with caplog.at_level("WARNING", logger="explain.images"):
        pixels = decode_image(sideways, "phone.jpg")
        decode_image(saved(stored, image_format), "plain.jpg")
    assert pixels.shape == (20, 32, 3)
    assert pixels.shape == decode_images(sideways, "image/png" if image_format == "PNG" else "image/jpeg",
                                       10 ** 7, 10 ** 8)[0].shape
    (record,) = caplog.records
    assert record.getMessage().startswith("phone.jpg: carries EXIF Orientation 6 (viewers show it rotated 90 "
                                          "degrees clockwise): it is explained as stored")


def test_an_exif_orientation_warning_is_kept_with_the_image(tmp_path, tiny_detector_dir):
    """Review 17, F7: the warning is the image's, in analysis.json and the report, not only on stderr."""
    import json

    from click.testing import CliRunner

    from explain.cli import main
    from tests.explain.test_explainer import red_square_scene

    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "images").mkdir()
    Image.fromarray(red_square_scene()).save(tmp_path / "images" / "phone.jpg", exif=exif)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["--endpoint", str(tiny_detector_dir), "--task", "detection", "--num-samples",
                                       "16", "--num-segments", "4", "--quiet", "--out", str(out),
                                       str(tmp_path / "images")])
    assert result.exit_code == 0, result.output
    (image,) = json.loads((out / "analysis.json").read_text())["images"]
    (warning,) = image["warnings"]
    assert warning.startswith("carries EXIF Orientation 6 (viewers show it rotated 90 degrees clockwise): it is "
                              "explained as stored")
    assert "carries EXIF Orientation 6" in (out / "report.html").read_text()

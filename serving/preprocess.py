"""Image preprocessing equal to GluonCV's ``transform_test`` presets, written with mxnet alone.

GluonCV (``gluoncv.data.transforms.presets.yolo.transform_test``) resizes each image so its
short side is ``short`` unless the long side would exceed ``max_size`` (then the long side is
``max_size``), with OpenCV bicubic interpolation, scales to [0, 1] and normalises with the
ImageNet mean and std. gluoncv is not in the SageMaker container, so this module repeats it.
"""
import mxnet as mx
import numpy as np

_BICUBIC = 2  # mx.image.imresize interp code, as gluoncv's resize_short_within uses


_BILINEAR = 1  # what mxnet's gluon transforms.Resize (GluonCV's classification preset) uses


def resized_size(height, width, short_side, max_size):
    """Return ``(new_height, new_width)`` for an image of ``(height, width)`` pixels."""
    short, long_ = min(height, width), max(height, width)
    scale = float(short_side) / short
    if np.round(scale * long_) > max_size:
        scale = float(max_size) / long_
    return int(np.round(height * scale)), int(np.round(width * scale))


def preprocess_batch(images, preprocess, ctx=None):
    """Resize and normalise a batch for the network.

    Args:
        images: ``(N, H, W, 3)`` uint8 RGB (or float32 in 0..255, rounded and cast to uint8
            exactly as GluonCV's uint8 pipeline would see them).
        preprocess: a :class:`serving.model_spec.Preprocess`.
        ctx: the mxnet context the result should live on (CPU when None).

    Returns:
        ``(N, 3, h, w)`` float32 NDArray on ``ctx``, where ``(h, w) = resized_size(H, W, ...)``.
    """
    ctx = ctx if ctx is not None else mx.cpu()
    if images.dtype != np.uint8:
        images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    count, height, width = images.shape[:3]
    batch = mx.nd.array(images, dtype=np.uint8)  # one copy into mxnet; rows are views of it
    if getattr(preprocess, "center_crop", None) is not None:
        batch = _resize_and_crop(batch, count, height, width, preprocess.short_side, preprocess.center_crop)
        return _normalise(batch, preprocess, ctx)
    new_height, new_width = resized_size(height, width, preprocess.short_side, preprocess.max_size)
    if (new_height, new_width) != (height, width):
        # Queued without waiting: no numpy round trip per image.
        batch = mx.nd.stack(*[mx.image.imresize(batch[index], new_width, new_height, interp=_BICUBIC)
                              for index in range(count)])
    return _normalise(batch, preprocess, ctx)


def cropped_size(height, width, short_side, crop):
    """``(resized height, resized width)`` before the centre crop, as mxnet's ``transforms.Resize(short_side,
    keep_ratio=True)`` computes them (integer arithmetic, truncated)."""
    if height > width:
        return height * short_side // width, short_side
    return short_side, width * short_side // height


def _resize_and_crop(batch, count, height, width, short_side, crop):
    """GluonCV's classification preset on ``(N, H, W, 3)`` uint8: bilinear resize of the short side, centre crop."""
    new_height, new_width = cropped_size(height, width, short_side, crop)
    if (new_height, new_width) != (height, width):
        batch = mx.nd.stack(*[mx.image.imresize(batch[index], new_width, new_height, interp=_BILINEAR)
                              for index in range(count)])
    top, left = (new_height - crop) // 2, (new_width - crop) // 2  # mx.image.center_crop's int((h - crop) / 2)
    return batch[:, top:top + crop, left:left + crop, :]


def _normalise(batch, preprocess, ctx):
    """``(N, h, w, 3)`` uint8 NDArray -> ``(N, 3, h, w)`` float32 on ``ctx``, scaled to [0, 1] and normalised."""
    batch = batch.as_in_context(ctx).astype(np.float32) / 255.0
    mean = mx.nd.array(preprocess.mean, ctx=ctx).reshape((1, 1, 1, 3))
    std = mx.nd.array(preprocess.std, ctx=ctx).reshape((1, 1, 1, 3))
    batch = mx.nd.broadcast_div(mx.nd.broadcast_sub(batch, mean), std)
    return batch.transpose((0, 3, 1, 2))

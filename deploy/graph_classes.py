"""How many classes an exported detector's graph has, read from its ``-symbol.json`` (no mxnet).

A detector's outputs (class ids, scores, boxes) do not say how many classes it has; some graphs
do, in a node whose shape is fixed by the class count:

- GluonCV's YOLOv3 (``YOLOOutputV3``): ``arange(num_classes)`` in each output layer;
- GluonCV's SSD and Faster R-CNN (``MultiPerClassDecoder``): ``arange(num_classes)``;
- CenterNet (GluonCV's and the shipped ``models/shapes-detector``): the class heatmap, a
  ``sigmoid`` whose peaks are found by a 3x3 max ``Pooling`` compared with it, one channel per
  class: the ``num_filter`` of the convolution before it, or the width of the ``slice_axis`` on
  the channel axis that cuts it from a shared head.

Any other graph (and one whose nodes disagree) gives None: its class count is not known.
"""

__all__ = ["detector_class_count"]

# name parts of the GluonCV blocks whose arange(num_classes) numbers the classes
CLASS_RANGE_BLOCKS = {"yolooutputv3": "YOLOv3 output layers", "multiperclassdecoder": "per-class decoder"}


def detector_class_count(graph):
    """``(count, where)`` for a symbol-file dict (``{"nodes": [...]}``): the number of classes and
    the node kind it was read from (for messages), or None when the graph does not say, or its
    nodes disagree."""
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    if not isinstance(nodes, list):
        return None
    found = {}
    for node in nodes:
        if not isinstance(node, dict):
            return None
        block = next((part for part in CLASS_RANGE_BLOCKS if part in str(node.get("name", ""))), None)
        if node.get("op") == "_arange" and block is not None:
            count = _arange_length(node.get("attrs") or {})
            if count is None:
                return None
            found.setdefault(count, CLASS_RANGE_BLOCKS[block])
    for channels in _heatmap_channels(nodes):
        if channels is None:
            return None
        found.setdefault(channels, "CenterNet class heatmap")
    if len(found) != 1:
        return None
    return next(iter(found.items()))


def _arange_length(attrs):
    """len(range(start, stop, step)) of an ``_arange`` node (``stop`` None: range(start)); None when not whole numbers."""
    try:
        start, step = float(attrs.get("start", "0")), float(attrs.get("step", "1"))
        stop = attrs.get("stop", "None")
        if stop in (None, "None"):
            start, stop = 0.0, start
        stop = float(stop)
    except (TypeError, ValueError):
        return None
    if step != 1 or start != int(start) or stop != int(stop) or attrs.get("repeat", "1") != "1":
        return None
    return max(int(stop) - int(start), 0)


def _heatmap_channels(nodes):
    """The channel count of each CenterNet heatmap (a sigmoid fed to a 3x3 stride-1 max Pooling and
    compared with its pooled self); None for one whose count cannot be read."""
    def source(entry):
        return entry[0] if isinstance(entry, list) and entry and isinstance(entry[0], int) else None

    pooled = {}
    for index, node in enumerate(nodes):
        attrs = node.get("attrs") or {}
        inputs = [source(entry) for entry in node.get("inputs") or []]
        if (node.get("op") == "Pooling" and attrs.get("pool_type") == "max" and attrs.get("kernel") == "(3, 3)"
                and attrs.get("stride") == "(1, 1)" and len(inputs) == 1):
            pooled[index] = inputs[0]
    for node in nodes:
        inputs = [source(entry) for entry in node.get("inputs") or []]
        if node.get("op") not in ("_equal", "broadcast_equal") or len(inputs) != 2:
            continue
        first, second = inputs
        if second is not None and pooled.get(first) == second:
            heatmap = second
        elif first is not None and pooled.get(second) == first:
            heatmap = first
        else:
            continue
        if not 0 <= heatmap < len(nodes) or nodes[heatmap].get("op") != "sigmoid":
            continue
        yield _channels(nodes, source((nodes[heatmap].get("inputs") or [None])[0]))


def _channels(nodes, index):
    """Output channels of node ``index``: a Convolution's num_filter, or a slice_axis on axis 1's width."""
    if index is None or not 0 <= index < len(nodes):
        return None
    node = nodes[index]
    attrs = node.get("attrs") or {}
    try:
        if node.get("op") == "Convolution":
            return int(attrs["num_filter"])
        if node.get("op") == "slice_axis" and attrs.get("axis") == "1" and attrs.get("end") not in (None, "None"):
            return int(attrs["end"]) - int(attrs.get("begin", "0"))
    except (KeyError, ValueError):
        return None
    return None

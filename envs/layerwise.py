"""N copies of a plain stack of layers, one call per layer for all N: the batched primary
training's fast path on the CPU.

``torch.func.vmap`` batches any functional model, but on the CPU its batching rules run a
grouped convolution and the pooling after it in the NCHW layout, where max-pooling is several
times slower than in channels-last (``benchmarks/memory_format.py``). :class:`LayerStack` runs the
same N networks layer by layer on stacked weights, without vmap:

- ``Conv2d``: one grouped convolution (``groups = N * groups``) on activations laid out
  ``(B, N * C, H, W)`` in channels-last format; the first convolution of an input shared by all
  N runs (evaluation) is one dense convolution with ``N * out_channels`` outputs;
- ``Linear``: one batched matmul on activations ``(N, B, F)``;
- ``MaxPool2d`` / ``AvgPool2d``: one call (pooling is per channel, so it does not see the runs);
- ``Flatten`` (of all but the batch dimension), ``Identity`` and the element-wise activations
  (``ReLU``, ``LeakyReLU``, ``ELU``, ``GELU``, ``SiLU``, ``Tanh``, ``Sigmoid``): one call.

Gradients come from one backward pass of the sum of the N runs' losses: the runs share no
weights, so each run's gradient is that of its own loss. A model with anything else (any other
layer, buffers, a layer after ``Flatten`` that needs an image, nested containers other than
``nn.Sequential``) raises :class:`LayerStackUnsupported` and the caller keeps ``vmap``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: parameter-free layers applied element-wise (they do not see the layout)
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity)


class LayerStackUnsupported(ValueError):
    """The model is not a plain stack of the supported layers; the message says which part."""


@dataclass
class _Layer:
    module: nn.Module
    prefix: str  # the module's name in the model ("" for a bare layer), for its parameters' keys

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name


def _leaves(model: nn.Module, prefix: str = "") -> list[_Layer]:
    if isinstance(model, nn.Sequential):
        layers = []
        for name, child in model.named_children():
            layers += _leaves(child, f"{prefix}.{name}" if prefix else name)
        return layers
    if list(model.children()):
        raise LayerStackUnsupported(f"{type(model).__name__} is a container other than nn.Sequential")
    return [_Layer(model, prefix)]


class LayerStack:
    """The batched forward of N copies of ``model`` (a plain ``nn.Sequential``, or one layer).

    Args:
        model: the network whose copies are stacked (its own weights are not used).
        channels_last: keep 4-D activations and convolution weights in ``torch.channels_last``.

    Raises:
        LayerStackUnsupported: a layer or a configuration this path does not implement.
    """

    def __init__(self, model: nn.Module, channels_last: bool) -> None:
        if list(model.buffers()):
            raise LayerStackUnsupported("the model has buffers")
        self.layers = _leaves(model)
        flat = False
        for layer in self.layers:
            m = layer.module
            if isinstance(m, nn.Conv2d):
                if flat or m.padding_mode != "zeros" or isinstance(m.padding, str):
                    raise LayerStackUnsupported(f"{m} (after Flatten, non-zero padding mode or string padding)")
            elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
                if flat or (isinstance(m, nn.MaxPool2d) and m.return_indices):
                    raise LayerStackUnsupported(f"{m} after Flatten or returning indices")
            elif isinstance(m, nn.Flatten):
                if m.start_dim != 1 or m.end_dim != -1:
                    raise LayerStackUnsupported(f"{m}: only Flatten(1, -1)")
                flat = True
            elif isinstance(m, nn.Linear):
                flat = True  # on an image it would act on the last dimension: only after Flatten
            elif not isinstance(m, ELEMENTWISE):
                raise LayerStackUnsupported(f"{type(m).__name__} has no layer-by-layer batched form here")
        self.channels_last = channels_last

    def _format(self, t: Tensor) -> Tensor:
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last and t.dim() == 4 else t

    def forward(self, params: dict[str, Tensor], x: Tensor, shared: bool = False) -> Tensor:
        """Outputs of the N networks, shape ``(N, B, ...)``. ``x``: one batch per run,
        ``(N, B, ...)``, or with ``shared`` one batch ``(B, ...)`` for all N runs."""
        n = next(iter(params.values())).shape[0]
        # h is in one of three layouts: "input" (x as given, shared or per run), "image"
        # (B, N * C, H, W), "rows" (N, B, F); the output is brought back to (N, B, ...)
        layout, h = "input", x
        for layer in self.layers:
            m = layer.module
            if isinstance(m, nn.Conv2d):
                w = params[layer.key("weight")]
                b = params[layer.key("bias")].reshape(-1) if m.bias is not None else None
                weight = self._format(w.reshape(n * w.shape[1], *w.shape[2:]))  # (N * out, in / groups, kh, kw)
                if layout == "input" and shared and m.groups == 1:  # one dense convolution
                    h = F.conv2d(self._format(h), weight, b, m.stride, m.padding, m.dilation, 1)
                else:
                    h = self._image(h, layout, shared, n)
                    h = F.conv2d(h, weight, b, m.stride, m.padding, m.dilation, n * m.groups)
                layout = "image"
            elif isinstance(m, nn.MaxPool2d):
                h = self._image(h, layout, shared, n) if layout == "input" else h
                layout = "image"
                h = F.max_pool2d(h, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
            elif isinstance(m, nn.AvgPool2d):
                h = self._image(h, layout, shared, n) if layout == "input" else h
                layout = "image"
                h = F.avg_pool2d(h, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                 m.divisor_override)
            elif isinstance(m, nn.Flatten):
                h, layout = self._rows(h, layout, shared, n), "rows"
            elif isinstance(m, nn.Linear):
                w = params[layer.key("weight")]
                per_example = h.dim() - (1 if layout == "input" and shared else 2)
                if layout == "image" or per_example != 1:  # nn.Linear would act on the last dimension
                    raise LayerStackUnsupported(f"{m} on {per_example}-D examples (only after Flatten)")
                if layout == "input" and shared:  # (B, F) for all runs: broadcast against (N, F, O)
                    h = torch.matmul(h, w.transpose(1, 2))
                    h = h + params[layer.key("bias")][:, None, :] if m.bias is not None else h
                else:
                    if m.bias is not None:
                        h = torch.baddbmm(params[layer.key("bias")][:, None, :], h, w.transpose(1, 2))
                    else:
                        h = torch.bmm(h, w.transpose(1, 2))
                layout = "rows"
            else:  # element-wise
                h = m(h)
        if layout == "image":
            b, _, *rest = h.shape
            return h.reshape(b, n, -1, *rest).transpose(0, 1)
        if layout == "input" and shared:
            return h.expand(n, *h.shape)
        return h

    def _image(self, h: Tensor, layout: str, shared: bool, n: int) -> Tensor:
        """``h`` as ``(B, N * C, H, W)``."""
        if layout == "image":
            return h
        if shared:
            h = h.expand(n, *h.shape)
        n_, b, c, *hw = h.shape
        return self._format(h.transpose(0, 1).reshape(b, n * c, *hw))

    @staticmethod
    def _rows(h: Tensor, layout: str, shared: bool, n: int) -> Tensor:
        """``h`` flattened per example, as ``(N, B, F)``."""
        if layout == "image":
            b = h.shape[0]
            return h.reshape(b, n, -1).transpose(0, 1)
        if layout == "input" and shared:
            h = h.expand(n, *h.shape)
        return h.flatten(2) if h.dim() > 3 else h

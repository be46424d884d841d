"""Glow (Kingma & Dhariwal 2018) without the multi-scale split: a bijection of R^(H·W·C)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from magajax.flows import invconv
from magajax.flows.actnorm import ActNorm
from magajax.flows.coupling import Coupling
from magajax.flows.squeeze import Squeeze


def output_shape(image_shape: tuple[int, int, int], levels: int) -> tuple[int, int, int]:
    """Per-example shape of Glow's output for an (H, W, C) input: (H/2^L, W/2^L, C·4^L)."""
    h, w, c = image_shape
    f = 2**levels
    if h % f or w % f:
        raise ValueError(f"Glow with {levels} levels needs height and width divisible by {f}, got {h}x{w}")
    return h // f, w // f, c * 4**levels


class Glow(nn.Module):
    """L levels of [Squeeze → K × (ActNorm → InvConv1x1 → Coupling)], with no split.

    Forward:  y = f(x), x of shape (B, H, W, C) → y of shape (B, H/2^L, W/2^L, C·4^L)
              (see `output_shape`); y holds the same H·W·C numbers per example, so f is a
              bijection of R^(H·W·C) and `y.reshape(B, -1)` is its vector form.
    Inverse:  x = f⁻¹(y), the layers' inverses in reverse order.
    Log-det:  Σ over layers of each layer's log|det J| (forward; the inverse's is its negation).

    `init` through `forward` (also from inside an enclosing module) initialises every ActNorm
    on the activations of the batch it is given.

    Attributes:
      levels: L, the number of squeezes (H and W must be divisible by 2^L).
      steps: K, flow steps per level.
      hidden: width of the coupling nets.
      coupling: 'additive' or 'affine'.
      dtype: compute dtype of the coupling nets (parameters, ActNorm, 1×1 convs stay float32).
      invconv: the 1×1 convs: 'lu' (InvConv1x1) or 'plain' (PlainInvConv1x1).
      coupling_net: the coupling nets: 'bias' or 'actnorm' (see Coupling).
      weight_init: the coupling nets' init: 'default' or 'xavier' (see Coupling).
      scan: apply each level's K flow steps as one `lax.scan` over their stacked parameters
        (XLA compiles one step per level, not K) instead of one after the other; the same
        parameters and results either way. `init` always runs them one after the other.
      conv: the couplings' 3×3 convs' form, 'matmul' or 'lax' (`magajax.ops.conv_impl`).
    """

    levels: int = 3
    steps: int = 3
    hidden: int = 128
    coupling: str = "additive"
    dtype: Any = jnp.float32
    invconv: str = "lu"
    coupling_net: str = "bias"
    weight_init: str = "default"
    scan: bool = False
    conv: str = "matmul"

    def setup(self) -> None:
        if self.invconv not in invconv.KINDS:
            raise ValueError(f"unknown invconv {self.invconv!r}; use one of {', '.join(invconv.KINDS)}")
        conv1x1 = invconv.KINDS[self.invconv]
        layers: list[nn.Module] = []
        for level in range(self.levels):
            layers.append(Squeeze())
            for step in range(self.steps):
                layers += [
                    ActNorm(name=f"actnorm_{level}_{step}"),
                    conv1x1(name=f"invconv_{level}_{step}"),
                    Coupling(self.hidden, self.coupling, self.dtype, self.coupling_net, self.weight_init,
                             conv=self.conv, name=f"coupling_{level}_{step}"),
                ]
        self.layers = layers

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Per-example output shape for an (H, W, C) input: (H/2^L, W/2^L, C·4^L)."""
        return output_shape(image_shape, self.levels)

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        self.output_shape(x.shape[1:])  # checks H and W are divisible by 2^L
        logdet = jnp.zeros((x.shape[0],), jnp.float32)
        if self.is_initializing() or not self.scan:  # init: ActNorm's data-dependent init, layer by layer
            for layer in self.layers:
                x, ld = layer.forward(x)
                logdet = logdet + ld
            return x, logdet
        for squeeze, steps in self._levels():
            x, ld = squeeze.forward(x)
            x, logdet = self._scan_steps(steps, x, logdet + ld, "forward")
        return x, logdet

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        logdet = jnp.zeros((y.shape[0],), jnp.float32)
        if self.is_initializing() or not self.scan:
            for layer in reversed(self.layers):
                y, ld = layer.inverse(y)
                logdet = logdet + ld
            return y, logdet
        for squeeze, steps in reversed(self._levels()):
            y, logdet = self._scan_steps(steps, y, logdet, "inverse")
            y, ld = squeeze.inverse(y)
            logdet = logdet + ld
        return y, logdet

    def _levels(self) -> list[tuple[nn.Module, list[list[nn.Module]]]]:
        """Per level, its Squeeze and its K flow steps, each step the list of its layers in forward order
        (the layers named `*_{level}_{step}`)."""
        levels: list[tuple[nn.Module, dict[str, list[nn.Module]]]] = []
        for layer in self.layers:
            if isinstance(layer, Squeeze):
                levels.append((layer, {}))
            else:
                levels[-1][1].setdefault(layer.name.rsplit("_", 1)[1], []).append(layer)
        return [(squeeze, list(steps.values())) for squeeze, steps in levels]

    def _scan_steps(
        self, steps: list[list[nn.Module]], x: jax.Array, logdet: jax.Array, method: str
    ) -> tuple[jax.Array, jax.Array]:
        """One level's K identical flow steps as one `lax.scan` over their parameters stacked on a new axis
        (the inverse: in reverse order, each step's layers reversed), so XLA compiles one step, not K.

        The parameter tree is unchanged: each step's own subtrees are read and stacked here. Returns
        (x after the K steps, logdet plus their log-dets, summed step by step as the unrolled layers do).
        """
        params = self.variables["params"]
        stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves),
                               *[[params.get(layer.name, {}) for layer in step] for step in steps])
        layers = [layer.clone(parent=None) for layer in steps[0]]  # unbound: applied to each step's parameters
        order = list(range(len(layers))) if method == "forward" else list(reversed(range(len(layers))))

        def one_step(carry: tuple[jax.Array, jax.Array], step_params: list[Any]) -> tuple[Any, None]:
            x, logdet = carry
            for i in order:
                x, ld = layers[i].apply({"params": step_params[i]}, x, method=method)
                logdet = logdet + ld
            return (x, logdet), None

        (x, logdet), _ = jax.lax.scan(one_step, (x, logdet), stacked, reverse=method == "inverse")
        return x, logdet

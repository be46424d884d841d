"""dSprites: factor grid, offline renderer, sources, splits and pair sampling."""

from magajax.data.render import render_dsprites
from magajax.data.sources import DSprites, load_dsprites
from magajax.data.splits import SPLITS, Split, make_split

__all__ = ["SPLITS", "DSprites", "Split", "load_dsprites", "make_split", "render_dsprites"]

"""dSprites: factor grid, offline renderer, sources, splits and pair sampling."""
